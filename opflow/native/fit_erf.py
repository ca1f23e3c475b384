"""Fit the rational approximation of erf used by ``gelu.c`` and print its coefficients.

``erf(s) ~ s P(s^2) / Q(s^2)`` on ``[0, 4]`` (odd, so on ``[-4, 4]``; beyond, erf is 1 to
float32 precision and the kernel clamps ``s``), ``P`` and ``Q`` of degree 5, ``Q(0) = 1``.
The fit is a linearised least-squares iteration (Sanathanan–Koerner: weights ``1/|Q_prev|``)
followed by Lawson reweighting towards the minimax error, on Chebyshev-spaced points. In float64
its maximum error is 2e-8; evaluated in float32 (Horner, as the kernel does) 4e-7.

    python -m opflow.native.fit_erf
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

DEGREE = 5
BOUND = 4.0


def fit(degree: int = DEGREE, bound: float = BOUND, sk_steps: int = 40, lawson_steps: int = 200):
    """Coefficients ``(p, q)`` (ascending powers of ``s^2``) and the float64 max error."""
    s = (np.cos(np.linspace(0.0, np.pi, 6000)) + 1.0) * bound / 2
    t, f = s * s, erf(s)
    powers = np.arange(degree + 1)
    basis = np.hstack([s[:, None] * t[:, None] ** powers, -f[:, None] * t[:, None] ** powers[1:]])
    q_prev = np.ones_like(s)
    lawson = np.ones_like(s)
    for step in range(sk_steps + lawson_steps):
        w = np.sqrt(lawson) / np.abs(q_prev)
        sol, *_ = np.linalg.lstsq(basis * w[:, None], f * w, rcond=None)
        p, q = sol[: degree + 1], np.concatenate([[1.0], sol[degree + 1 :]])
        q_prev = np.polynomial.polynomial.polyval(t, q)
        err = s * np.polynomial.polynomial.polyval(t, p) / q_prev - f
        if step >= sk_steps:
            lawson = lawson * np.sqrt(np.abs(err))
            lawson /= lawson.sum()
    return p, q, float(np.abs(err).max())


def main() -> None:
    p, q, max_err = fit()
    print(f"/* fitted by opflow/native/fit_erf.py: max |error| {max_err:.1e} in float64 */")
    for name, c in (("ERF_P", p), ("ERF_Q", q)):
        print(f"static const float {name}[{len(c)}] = {{{', '.join(f'{v:.9e}f' for v in c)}}};")


if __name__ == "__main__":
    main()
