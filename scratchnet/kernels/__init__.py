"""Array kernels: each op as a forward/backward pair on plain numpy/cupy arrays (CS231n style).

The autograd layer (scratchnet.functional) wraps these; tests check them against PyTorch and finite
differences. Nothing here knows about Tensors.
"""
from . import activation, conv, loss, norm, pool  # noqa: F401
