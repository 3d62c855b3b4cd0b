"""scratchnet: a from-scratch deep-learning library in NumPy, with CuPy as a drop-in GPU backend.

Layers of the library, bottom up:
    backend     which array library (numpy / cupy) runs the math; dtype defaults
    kernels     each op as a forward/backward pair on plain arrays (conv, pooling, batch norm, losses)
    autograd    Tensor + Function: the reverse-mode engine
    functional  ops on Tensors (elementwise, matmul, conv2d, pooling, batch_norm, cross_entropy, ...)
    nn          Modules with parameters (Conv2d, BatchNorm2d, Linear, Sequential, ...)
    optim       SGD / Adam / AdamW, learning-rate schedules, gradient clipping
    rnn         the hard-threshold RNN of the binary-adder problem
    parallel    CPU threads for the heavy kernels; cpu_blas: which OpenBLAS kernels numpy uses
"""
from .cpu_blas import choose_openblas_kernels

choose_openblas_kernels()  # before anything imports numpy: OpenBLAS reads it once, when numpy loads it

from . import backend, functional, io, kernels, nn, optim, rnn  # noqa: E402, F401
from .autograd import Function, Tensor, is_grad_enabled, no_grad  # noqa: E402, F401
from .backend import get_array_module, set_default_dtype  # noqa: E402, F401

__version__ = "0.1.0"
