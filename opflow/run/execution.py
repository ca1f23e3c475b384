"""Where and in what precision a model runs: decided once, passed down as a value.

Models never ask "am I on a GPU?": the trainer, :func:`opflow.load` and the evaluator resolve
an :class:`Execution` from the config (``training.device``, ``training.precision``) or their
arguments, move the model and every batch to its device and dtype, and run forward passes
inside :meth:`Execution.autocast`.

Precision
---------
``fp32``        float32 weights and activations.
``bf16-mixed``  float32 weights; matrix products and convolutions in bfloat16 under
                ``torch.autocast``. Spectral transforms stay in float32 (a spectral layer turns
                autocast off for its transforms and mixing: a half-precision FFT loses the high
                wavenumbers' accuracy and cuFFT takes half precision on power-of-two sizes only,
                as PhysicsNeMo and makani also do).
``fp16-mixed``  as bf16-mixed with float16, and a gradient scaler against underflow.
``fp64``        float64 end to end (weights, data, losses): for convergence studies.

CPU memory
----------
torch's CPU tensors come from the C library's ``malloc``, which hands freed blocks of more
than a few MB back to the system, so the next tensor of that size starts as fresh pages, each
faulted in and zeroed by the kernel on first touch. A training step allocates and frees the
same large tensors every time; :func:`retain_freed_cpu_memory` keeps them in the process (the
trainer calls it on the CPU): a LocalNO step at 128², batch 16, width 32 runs 1.7x faster
(``benchmarks/RESULTS.md``). The resident set then stays at the step's peak between steps.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import sys
from typing import Literal

import torch

from opflow.errors import BackendError, ConfigError

__all__ = ["Execution", "Precision", "resolve_device", "retain_freed_cpu_memory", "PRECISIONS"]

Precision = Literal["fp32", "bf16-mixed", "fp16-mixed", "fp64"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16-mixed", "fp16-mixed", "fp64")
_AUTOCAST_DTYPE = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises :class:`BackendError` in one line where the device does not exist, instead of
    torch's driver message at the first tensor moved there.
    """
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device {name!r} is not a device name",
            "auto, cpu, cuda or cuda:N",
            "fix training.device (or the --device option)",
        ) from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise BackendError(
            f"device {name!r} is not supported by opflow",
            "auto, cpu, cuda or cuda:N",
            "use a CUDA GPU or the CPU",
        )
    if not torch.cuda.is_available():
        raise BackendError(
            f"device {name!r} was asked for, but this machine has no usable CUDA GPU "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None})",
            "a CUDA GPU visible to torch (nvidia-smi lists it; CUDA_VISIBLE_DEVICES allows it)",
            "use device 'auto' or 'cpu' here, or run on a machine with a GPU",
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise BackendError(
            f"device {name!r} was asked for, but this machine has {count} CUDA GPU(s)",
            f"cuda:0 .. cuda:{count - 1}",
            "pick an existing GPU index",
        )
    return device


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_RETAIN_BYTES = 1 << 30


def retain_freed_cpu_memory() -> bool:
    """Keep freed blocks of up to 1 GiB in this process's heap for the next allocation, instead
    of returning them to the system (glibc's ``mallopt``: the mmap and trim thresholds). See
    the module docstring. Process-wide; returns False where the C library is not glibc (the
    call then does nothing)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no libc.so.6 or no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # both: a high mmap threshold alone still lets free() trim the top of the heap
    return bool(mallopt(_M_MMAP_THRESHOLD, _RETAIN_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _RETAIN_BYTES)
    )


@dataclasses.dataclass(frozen=True)
class Execution:
    """A device and a precision (see the module docstring)."""

    device: torch.device = torch.device("cpu")
    precision: Precision = "fp32"

    @classmethod
    def resolve(cls, device: str | torch.device | None, precision: str = "fp32") -> Execution:
        """From user-facing names; raises opflow errors for unknown or missing devices."""
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision {precision!r} is not known",
                f"one of {list(PRECISIONS)}",
                "fix training.precision",
            )
        device = resolve_device(device)
        if precision == "bf16-mixed" and device.type == "cuda":
            if not torch.cuda.is_bf16_supported():  # pragma: no cover - needs a GPU
                raise BackendError(
                    f"bf16-mixed on {torch.cuda.get_device_name(device)}",
                    "a GPU with bfloat16 (Ampere or newer)",
                    "use precision fp16-mixed or fp32",
                )
        return cls(device, precision)  # type: ignore[arg-type]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of weights, data and losses (autocast lowers products only)."""
        return torch.float64 if self.precision == "fp64" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context forward passes run in: ``torch.autocast`` for the mixed precisions."""
        dtype = _AUTOCAST_DTYPE.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled for fp16-mixed only (bfloat16 has float32's range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16-mixed")

    def to(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on this device, floating point in this dtype."""
        dtype = self.dtype if tensor.is_floating_point() else None
        return tensor.to(self.device, dtype=dtype, non_blocking=True)
