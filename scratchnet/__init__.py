"""scratchnet: a from-scratch deep-learning library in NumPy, with CuPy as a drop-in GPU backend.

Layers of the library, bottom up:
    backend     which array library (numpy / cupy) runs the math; dtype defaults
    kernels     each op as a forward/backward pair on plain arrays (conv, pooling, batch norm, losses)
    autograd    Tensor + Function: the reverse-mode engine
    functional  ops on Tensors (elementwise, matmul, conv2d, pooling, batch_norm, cross_entropy, ...)
    nn          Modules with parameters (Conv2d, BatchNorm2d, Linear, Sequential, ...)
    init        initialisers beyond He normal: per-layer seeds, Dirac convolutions, patch whitening
    optim       SGD / Adam / AdamW (parameter groups), learning-rate schedules, EMA, Lookahead, gradient clipping
    rnn         a recurrent network with hard-threshold (step) units and its surrogate gradients
    parallel    CPU threads for the heavy kernels
    cpu         opt-in process-wide tuning for training programs (OpenBLAS kernels, BLAS threads, malloc)

Importing scratchnet changes nothing outside it, and loads its modules (and numpy) only when first used
(`scratchnet.nn`, `from scratchnet import Tensor`): `from scratchnet import cpu` must be possible before
numpy is imported (scratchnet.cpu says why).
"""
import importlib

__version__ = "0.2.0"

_SUBMODULES = ("autograd", "backend", "cpu", "functional", "init", "io", "kernels", "nn", "optim", "parallel",
               "rnn")
_NAMES = {"Function": "autograd", "Tensor": "autograd", "is_grad_enabled": "autograd", "no_grad": "autograd",
          "get_array_module": "backend", "set_default_dtype": "backend"}
__all__ = [*_SUBMODULES, *_NAMES]


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
