"""The one place that decides which array library runs the math: NumPy on the CPU, CuPy on a GPU.

Every op asks `xp = get_array_module(x)` and then writes `xp.matmul`, `xp.maximum`, ... so the same
code runs on both (the Chainer/DeZero pattern). CuPy is imported lazily, on first use: machines without
it (CI, most laptops) never pay for it, and asking for it where it is missing gives one clear error.
"""
from __future__ import annotations

import numpy as np

_cupy = None          # the imported cupy module once `cupy()` succeeded
_default_dtype = np.float32


class BackendError(RuntimeError):
    """Raised when a backend is unknown or unavailable (e.g. 'cupy' without CuPy or without a GPU)."""


def cupy():
    """Return the cupy module, importing it on first use; raise BackendError if it cannot run here."""
    global _cupy
    if _cupy is None:
        try:
            import cupy as cp  # noqa: PLC0415 - lazy on purpose
        except ImportError as e:
            raise BackendError(
                "backend 'cupy' needs the CuPy package (pip install cupy-cuda12x or cupy-cuda13x, matching "
                "your CUDA) and an NVIDIA GPU; "
                f"CuPy is not installed ({e}). Use backend 'numpy' on this machine.") from None
        try:
            n = cp.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDA driver missing or broken
            raise BackendError(f"backend 'cupy': CuPy is installed but no usable CUDA GPU was found ({e}). "
                               "Use backend 'numpy' on this machine.") from None
        if n < 1:
            raise BackendError("backend 'cupy': CuPy is installed but no CUDA GPU is present. "
                               "Use backend 'numpy' on this machine.")
        _cupy = cp
    return _cupy


def cupy_available() -> bool:
    """True if CuPy imports and sees at least one GPU (never raises)."""
    try:
        cupy()
        return True
    except BackendError:
        return False


BACKENDS = ("numpy", "cupy")


def array_module(backend: str):
    """The array module for a backend name: 'numpy' -> numpy, 'cupy' -> cupy."""
    if backend == "numpy":
        return np
    if backend == "cupy":
        return cupy()
    raise BackendError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def get_array_module(*arrays):
    """numpy or cupy, whichever owns the given arrays (numpy if none is a cupy array)."""
    for a in arrays:
        if _cupy is not None:
            if isinstance(a, _cupy.ndarray):
                return _cupy
        elif type(a).__module__.split(".")[0] == "cupy":  # made by cupy directly, before any scratchnet call
            return cupy()
    return np


def on_cpu(xp) -> bool:
    """True when xp is numpy. CPU-only memory tricks (chunked im2col, reused scratch buffers) ask this
    instead of naming a library; on a GPU, cupy's memory pool and bandwidth make them pointless."""
    return xp is np


def synchronize(xp) -> None:
    """Wait until the GPU has finished all queued work (CuPy runs kernels asynchronously); no-op on numpy.
    Timers call it on both sides of what they time, or they would time only the kernel launches."""
    if not on_cpu(xp):
        xp.cuda.Device().synchronize()


def strided_view(x, shape, strides):
    """A view of x with the given shape and strides (no copy), read-only where the library allows it.

    NumPy's as_strided can mark the view read-only, which guards against writing through overlapping
    windows; CuPy's has no such flag (its arrays are always writeable), so there the view is plain.
    """
    if on_cpu(get_array_module(x)):
        return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)
    return _cupy.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


class GPUKernel:
    """A fused element-wise GPU kernel (CuPy's ElementwiseKernel), compiled on first call.

    Why: every CuPy array operation is one kernel launch, and each costs host time (Python and the CUDA
    driver); a small network's step can spend longer issuing its launches than the GPU spends running
    them. A formula of ten operations is ten launches and ten passes over memory; as one kernel it is one
    of each. Launch-bound ops use these on the GPU; on the CPU they run their NumPy formulation, which
    the tests check these kernels against.

    in_params/out_params/operation as for cupy.ElementwiseKernel: typed names ("T x, T mu"), and a CUDA C
    statement per element that reads the inputs and assigns the outputs (outputs may also be read:
    they are references, which is how an update works in place). Inputs broadcast like NumPy's.
    """

    def __init__(self, in_params: str, out_params: str, operation: str, name: str):
        self.spec = (in_params, out_params, operation, name)
        self._kernel = None

    def __call__(self, *args, **kwargs):
        if self._kernel is None:
            self._kernel = cupy().ElementwiseKernel(*self.spec)
        return self._kernel(*args, **kwargs)


def device_id(array):
    """The GPU number holding a CuPy array; None for a host array (caches key GPU-resident arrays by it)."""
    return None if on_cpu(get_array_module(array)) else array.device.id


def backend_of(array) -> str:
    """'cupy' for a cupy array, 'numpy' otherwise."""
    return "cupy" if get_array_module(array) is not np else "numpy"


def to_backend(array, backend: str):
    """Copy an array to the given backend ('numpy' = host memory, 'cupy' = GPU memory); no copy if already there."""
    xp = array_module(backend)
    if get_array_module(array) is xp:
        return array
    if xp is np:
        return _cupy.asnumpy(array)
    return xp.asarray(array)


def to_numpy(array):
    """A host (numpy) array of any array or array-like (lists, scalars); numpy arrays pass through unchanged."""
    return np.asarray(to_backend(array, "numpy"))


def default_dtype():
    """The floating dtype new parameters and tensors get (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Switch the default float dtype, e.g. to float64 for gradient checks."""
    global _default_dtype
    dtype = np.dtype(dtype).type
    if dtype not in (np.float32, np.float64):
        raise BackendError(f"default dtype must be float32 or float64, got {np.dtype(dtype).name}")
    _default_dtype = dtype


class default_dtype_as:
    """Context manager: `with default_dtype_as(np.float64): ...` restores the previous dtype on exit."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.saved = _default_dtype
        set_default_dtype(self.dtype)
        return self

    def __exit__(self, *exc):
        set_default_dtype(self.saved)
        return False
