"""Closed-form functions of the coordinates written as strings, evaluated without ``eval``.

Recipes give manufactured solutions such as ``"sin(6*x)*cos(100*x)"``. The string is parsed
with :mod:`ast` and only a whitelist is accepted: numbers, the coordinate names, ``pi`` and
``e``, ``+ - * / **``, unary minus and the functions in :data:`FUNCTIONS`. Anything else
(attributes, calls to other names, subscripts, lambdas …) is a :class:`ConfigError`. The result
is a function of torch tensors, so derivatives of it come from autograd.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

import torch

from opflow.errors import ConfigError

__all__ = ["FUNCTIONS", "compile_expression"]

FUNCTIONS: dict[str, Callable] = {
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "tanh": torch.tanh,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "abs": torch.abs,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def compile_expression(text: str, variables: tuple[str, ...]) -> Callable[..., torch.Tensor]:
    """``text`` as a function of the tensors named ``variables`` (e.g. ``("x", "y")``).

    >>> f = compile_expression("sin(100*x) * sin(100*y)", ("x", "y"))

    With no ``variables`` the function takes no argument and returns a float (``"2*pi"``).
    """
    try:
        tree = ast.parse(str(text), mode="eval")
    except SyntaxError as err:
        raise ConfigError(
            f"cannot parse expression {text!r}: {err.msg}",
            "an arithmetic expression such as 'sin(100*x)'",
            "fix the expression",
        ) from None

    def build(node: ast.AST) -> Callable[[dict], torch.Tensor | float]:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            value = float(node.value)
            return lambda env: value
        if isinstance(node, ast.Name):
            if node.id in variables:
                return lambda env, name=node.id: env[name]
            if node.id in _CONSTANTS:
                value = _CONSTANTS[node.id]
                return lambda env: value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            op, left, right = _BINARY[type(node.op)], build(node.left), build(node.right)
            return lambda env: op(left(env), right(env))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            op, inner = _UNARY[type(node.op)], build(node.operand)
            return lambda env: op(inner(env))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FUNCTIONS
            and len(node.args) == 1
            and not node.keywords
        ):
            fn, arg = FUNCTIONS[node.func.id], build(node.args[0])
            return lambda env: fn(torch.as_tensor(arg(env)))
        raise ConfigError(
            f"expression {text!r} uses {ast.unparse(node)!r}, which is not allowed",
            f"numbers, {', '.join(variables)}, pi, e, + - * / ** and {', '.join(FUNCTIONS)}",
            "rewrite the expression with those",
        )

    body = build(tree.body)

    def evaluate(*coordinates: torch.Tensor) -> torch.Tensor:
        env = dict(zip(variables, coordinates, strict=True))
        out = body(env)
        if not coordinates:  # a constant such as "2*pi"
            return float(out)
        return torch.as_tensor(out, dtype=coordinates[0].dtype).expand_as(coordinates[0])

    return evaluate
