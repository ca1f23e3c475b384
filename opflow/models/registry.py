"""Models registered by name, so a config can build any of them.

>>> @register("FNO")
... class FNO(nn.Module): ...
>>> build_model("FNO", n_modes=[16, 16], in_channels=1, out_channels=1, hidden_channels=32)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from torch import nn

from opflow.errors import ConfigError

__all__ = ["register", "build_model", "registered_models", "model_name", "model_arguments"]

_REGISTRY: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a model buildable by ``name`` from a config."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_REGISTRY[name]}")
        _REGISTRY[name] = cls
        cls.registered_name = name
        return cls

    return decorate


def registered_models() -> list[str]:
    return sorted(_REGISTRY)


def model_name(model: nn.Module) -> str:
    return type(model).registered_name


def _accepted_arguments(cls: type) -> list[str]:
    """Constructor arguments of ``cls``, following ``**kwargs`` forwarded to base classes
    (``LocalNO(..., **fno_args)`` accepts every ``FNO`` argument)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is nn.Module:
            break
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names += [
            p.name
            for p in params
            if p.name != "self"
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            and p.name not in names
        ]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def model_arguments(name: str) -> list[str]:
    """The arguments the model registered as ``name`` accepts (none for an unknown name)."""
    return _accepted_arguments(_REGISTRY[name]) if name in _REGISTRY else []


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate the model registered as ``name``; unknown names/arguments raise ConfigError."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        raise ConfigError(
            f"Unknown model {name!r}",
            f"one of {registered_models()}",
            f"did you mean {close[0]!r}?" if close else "pick a registered model name",
        )
    cls = _REGISTRY[name]
    params = _accepted_arguments(cls)
    for key in kwargs:
        if key not in params:
            close = difflib.get_close_matches(key, params, n=1)
            raise ConfigError(
                f"Model {name!r} has no argument {key!r}",
                f"arguments of {name}: {params}",
                f"did you mean {close[0]!r}?" if close else f"remove {key!r} from model.args",
            )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"Could not build model {name!r} from {kwargs}: {err}",
            f"valid arguments for {name}",
            "check model.args in the config",
        ) from None
