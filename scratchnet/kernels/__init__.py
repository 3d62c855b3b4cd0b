"""Array kernels: each op as a forward/backward pair on plain numpy/cupy arrays (CS231n style).

The autograd layer (scratchnet.functional) wraps these; tests check them against PyTorch and finite
differences. Nothing here knows about Tensors. Beneath the ops: `workspace` (window geometry, scratch
buffers, chunks of a batch) and `reductions` (per-channel sums), which they share.
"""
from . import activation, conv, loss, norm, pool, reductions, winograd, workspace  # noqa: F401
