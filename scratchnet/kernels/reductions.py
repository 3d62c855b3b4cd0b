"""Per-channel reductions of an (M, C) matrix (channels last): what conv's bias gradient and batch norm share.

NHWC arrays reshape to (N*H*W, C) for free, so a per-channel statistic is a reduction along the rows.
"""
from __future__ import annotations

from ..backend import device_id, get_array_module, on_cpu
from ..parallel import sum_blocks

# The sums go over blocks of rows of at most this many bytes, shared between CPU threads: a block's
# temporaries stay in cache and small enough for a worker thread's malloc arena.
BLOCK_BYTES = 4 << 20

_ones_cache: dict = {}


def _ones(like, n: int):
    """A vector of n ones of like's dtype and device; kept on the GPU (making it there is a kernel launch
    each time), made afresh on the CPU."""
    xp = get_array_module(like)
    if on_cpu(xp):
        return xp.ones(n, dtype=like.dtype)
    key = (device_id(like), n, like.dtype.str)
    if key not in _ones_cache:
        if len(_ones_cache) > 64:
            _ones_cache.clear()
        _ones_cache[key] = xp.ones(n, dtype=like.dtype)
    return _ones_cache[key]


def channel_sum(x2):
    """Per-channel sum of an (M, C) matrix: ones @ x2, a GEMV (BLAS beats numpy's axis-0 sum), on CPU
    threads row block by row block."""
    xp = get_array_module(x2)
    m, c = x2.shape
    if m == 0:
        return xp.zeros(c, dtype=x2.dtype)
    ones = _ones(x2, min(m, 1 << 16))

    def block_sum(lo, hi):
        total = None
        for start in range(lo, hi, ones.size):  # the ones vector is reused for long blocks
            stop = min(start + ones.size, hi)
            part = ones[:stop - start] @ x2[start:stop]
            total = part if total is None else total + part
        return total

    return sum_blocks(xp, m, c * x2.itemsize, block_sum, BLOCK_BYTES)


def channel_dot(a2, b2):
    """sum_m a[m, c] * b[m, c] per channel.

    CPU: einsum, which never materialises the (M, C) product. GPU: the product, then channel_sum's GEMV
    (CuPy's einsum is much slower there)."""
    xp = get_array_module(a2)
    if on_cpu(xp):
        return xp.einsum("mc,mc->c", a2, b2)
    return channel_sum(a2 * b2)
