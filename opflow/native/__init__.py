"""CPU kernels in C, built on first use with the system's C compiler and loaded with ctypes.

A kernel is a plain C file in this package (no Python or torch headers), compiled once into
the user's cache (``$OPFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/opflow``, else
``~/.cache/opflow``) under a name that carries the hash of its source and flags, so an edited
kernel is rebuilt and concurrent first uses do not clash (each compiles to its own temporary
file, moved into place atomically). Anything missing — no x86-64 CPU with AVX2 and FMA, no
compiler, a failed build, ``OPFLOW_NATIVE=0`` — makes :func:`load` return None, and the
caller takes its torch path; :func:`status` says why.

The libraries link OpenMP; torch's wheel ships ``libgomp.so.1`` and has loaded it by the
time a kernel is, so kernels and torch share one thread pool.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

__all__ = ["load", "status"]

_FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC"]
_loaded: dict[str, ctypes.CDLL | None] = {}
_why_not: dict[str, str] = {}


def _cache_dir() -> Path:
    if "OPFLOW_CACHE_DIR" in os.environ:
        return Path(os.environ["OPFLOW_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "opflow"


def _unavailable_reason() -> str | None:
    if os.environ.get("OPFLOW_NATIVE", "1") == "0":
        return "disabled by OPFLOW_NATIVE=0"
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return f"the CPU lacks AVX2/FMA (torch reports {torch.backends.cpu.get_cpu_capability()})"
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return f"no C compiler ({os.environ.get('CC', 'cc')}) on PATH"
    return None


def _build(source: Path) -> Path:
    """The shared library for ``source``, compiled into the cache unless already there."""
    compiler = os.environ.get("CC", "cc")
    digest = hashlib.sha256(source.read_bytes() + " ".join(_FLAGS).encode()).hexdigest()[:16]
    directory = _cache_dir()
    target = directory / f"{source.stem}-{digest}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *_FLAGS, str(source), "-o", tmp],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def load(name: str) -> ctypes.CDLL | None:
    """The kernel library ``<name>.c`` of this package, or None if it cannot be had here."""
    if name in _loaded:
        return _loaded[name]
    library = None
    reason = _unavailable_reason()
    if reason is None:
        try:
            library = ctypes.CDLL(str(_build(Path(__file__).with_name(f"{name}.c"))))
        except subprocess.CalledProcessError as err:
            reason = f"the build failed (exit {err.returncode}): {err.stderr.strip()[-500:]}"
        except (OSError, subprocess.SubprocessError) as err:
            reason = f"the build or load failed: {err}"
        if reason is not None:  # a machine that should have the kernel and does not: say so
            warnings.warn(
                f"opflow: C kernel {name!r} unavailable, using torch ({reason})",
                RuntimeWarning,
                stacklevel=2,
            )
    _loaded[name] = library
    if reason is not None:
        _why_not[name] = reason
    return library


def status(name: str) -> str:
    """``"loaded"`` or why the kernel ``name`` is not used (after :func:`load` was called)."""
    load(name)
    return "loaded" if _loaded[name] is not None else _why_not[name]
