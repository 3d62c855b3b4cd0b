"""Max, average and global-average pooling on NHWC arrays, as forward/backward pairs.

Max pooling: out[n,i,j,c] = max_{u,v} x[n, s*i+u, s*j+v, c]. Its gradient goes to the one input that
was the maximum. Ties (equal values in a window, common after ReLU zeros) are broken deterministically:
the first maximum in row-major window order wins, as in PyTorch's CPU kernel.

Max pooling works on the k*k "offset views" x[:, u::s, v::s, :] (the (u, v)-th element of every
window, a strided view): forward is a running maximum over them, backward routes dout through them.
The common 2x2 window at stride 2 has its own pair, a knockout in three matches per window:

    top = max(a, b), bottom = max(c, d), out = max(top, bottom)        window  a b
                                                                              c d
with the three winners kept as booleans (b > a, d > c, bottom > top: strict, so ties go to the earlier
element, the row-major first maximum). Backward needs only them: bottom's share of dout is dout * (bottom
won), top's the rest, and each share splits again the same way: 6 passes, every dx entry written once,
and the cache holds 3 bytes per output instead of the input and output (16 and 4 bytes).
The reference pair (a strided window view + argmax) is kept beside both; the tests check they agree.
Average pooling: when stride == kernel and the image tiles exactly, a plain reshape (N, Ho, k, Wo, k, C)
exposes the windows without copying; otherwise each kernel offset adds its share back.
"""
from __future__ import annotations

from ..backend import get_array_module
from ..parallel import map_blocks
from .workspace import output_size, windows


# The 2x2 window at stride 2 takes the knockout pair (module docstring); False sends it through the
# offset loop like every other window (the benchmark compares both).
KNOCKOUT_2X2 = True
# Its blocks of images: about 1 MB of input each, so that the two match winners of a block (temporaries)
# stay in cache instead of being fresh memory the size of half the batch.
KNOCKOUT_BLOCK_BYTES = 1 << 20


def _check_pool(x_shape, kernel, stride, name):
    if len(x_shape) != 4:
        raise ValueError(f"{name}: input must be NHWC (4-D), got shape {tuple(x_shape)}")
    if kernel < 1 or stride < 1:
        raise ValueError(f"{name}: kernel and stride must be >= 1, got kernel={kernel}, stride={stride}")
    if x_shape[1] < kernel or x_shape[2] < kernel:
        raise ValueError(f"{name}: input {tuple(x_shape)} is smaller than the {kernel}x{kernel} window")


def _tiles_exactly(x_shape, kernel, stride):
    return stride == kernel and x_shape[1] % kernel == 0 and x_shape[2] % kernel == 0


def _window_stack(x, kernel, stride):
    """All windows as (N, Ho, Wo, C, k*k), window positions in row-major order along the last axis."""
    n, h, w, c = x.shape
    if _tiles_exactly(x.shape, kernel, stride):
        # Non-overlapping windows: a reshape exposes them without a strided gather.
        ho, wo = h // kernel, w // kernel
        win = x.reshape(n, ho, kernel, wo, kernel, c).transpose(0, 1, 3, 5, 2, 4)
    else:
        win = windows(x, kernel, kernel, stride).transpose(0, 1, 2, 5, 3, 4)
    return win.reshape(win.shape[:4] + (kernel * kernel,))


def _offset_view(a, u: int, v: int, ho: int, wo: int, stride: int):
    """The (u, v)-th element of every window, as a strided view (N, Ho, Wo, C): no copy."""
    return a[:, u:u + stride * (ho - 1) + 1:stride, v:v + stride * (wo - 1) + 1:stride, :]


def max_pool2d_forward(x, kernel: int = 2, stride: int | None = None):
    """Max over each kernel x kernel window. x (N,H,W,C) -> (N,Ho,Wo,C). cache keeps x and out.

    Computed as a running np.maximum over the k*k offset views: k*k streaming passes over (N,Ho,Wo,C),
    much faster than reducing a 6-D strided window view (and rows/columns past the last window are skipped,
    PyTorch's floor mode). On the CPU, blocks of images go to different threads.
    """
    stride = kernel if stride is None else stride
    _check_pool(x.shape, kernel, stride, "max_pool2d")
    if kernel == 2 and stride == 2 and KNOCKOUT_2X2:
        return max_pool2x2_forward(x)
    xp = get_array_module(x)
    n = x.shape[0]
    ho, wo = output_size(x.shape[1], kernel, stride, 0), output_size(x.shape[2], kernel, stride, 0)
    out = xp.empty((n, ho, wo, x.shape[3]), dtype=x.dtype)

    def block(lo, hi):
        xb, ob = x[lo:hi], out[lo:hi]
        ob[...] = _offset_view(xb, 0, 0, ho, wo, stride)
        for u in range(kernel):
            for v in range(kernel):
                if u or v:
                    xp.maximum(ob, _offset_view(xb, u, v, ho, wo, stride), out=ob)

    map_blocks(xp, n, x.nbytes // max(n, 1), block)
    return out, ("offsets", x, out, kernel, stride)


def max_pool2d_backward(dout, cache):
    """dx: dout routed to each window's first maximum (row-major window order); zero elsewhere.

    Visit the k*k window offsets in row-major order; at each, the inputs equal to the window's max that
    no earlier offset has claimed take the gradient. A loop over offsets, never over pixels; every step
    works in place on boolean buffers. When windows do not overlap (stride >= kernel) each input
    belongs to one window, so the product is written straight into dx's strided view.
    On the CPU, blocks of images go to different threads.
    """
    if cache[0] == "2x2":
        return max_pool2x2_backward(dout, cache)
    _, x, out, kernel, stride = cache
    xp = get_array_module(dout)
    ho, wo = out.shape[1:3]
    dx = xp.empty(x.shape, dtype=dout.dtype)
    last = (kernel - 1, kernel - 1)

    def block(lo, hi):
        xb, ob, gb, dxb = x[lo:hi], out[lo:hi], dout[lo:hi], dx[lo:hi]
        dxb[...] = 0
        claimed = xp.zeros(ob.shape, dtype=bool)
        take = xp.empty(ob.shape, dtype=bool)
        for u in range(kernel):
            for v in range(kernel):
                xp.equal(_offset_view(xb, u, v, ho, wo, stride), ob, out=take)
                xp.greater(take, claimed, out=take)  # take & ~claimed, for booleans, in one pass
                if (u, v) != last:
                    claimed |= take
                dx_view = _offset_view(dxb, u, v, ho, wo, stride)
                if stride >= kernel:
                    xp.multiply(gb, take, out=dx_view)  # no overlap: write, no read-modify-write
                else:
                    dx_view += gb * take  # overlapping windows: gradients accumulate

    map_blocks(xp, dout.shape[0], x.nbytes // max(x.shape[0], 1), block)
    return dx


def _quarters(a, ho: int, wo: int):
    """The four elements a, b, c, d (row-major) of every 2x2 window at stride 2, as strided views."""
    a = a[:, :2 * ho, :2 * wo]
    return a[:, 0::2, 0::2], a[:, 0::2, 1::2], a[:, 1::2, 0::2], a[:, 1::2, 1::2]


def max_pool2x2_forward(x):
    """max_pool2d_forward for the 2x2 window at stride 2, as the knockout in the module docstring.
    cache = ("2x2", x's shape, b won, d won, bottom won): three boolean arrays shaped like out."""
    _check_pool(x.shape, 2, 2, "max_pool2d")
    xp = get_array_module(x)
    n, h, w, c = x.shape
    ho, wo = h // 2, w // 2
    out = xp.empty((n, ho, wo, c), dtype=x.dtype)
    right_top, right_bottom, bottom = (xp.empty(out.shape, dtype=bool) for _ in range(3))

    def block(lo, hi):
        a, b, cc, d = _quarters(x[lo:hi], ho, wo)
        top = xp.maximum(a, b, out=out[lo:hi])      # the top pair's winner, parked in out
        xp.greater(b, a, out=right_top[lo:hi])
        low = xp.maximum(cc, d)
        xp.greater(d, cc, out=right_bottom[lo:hi])
        xp.greater(low, top, out=bottom[lo:hi])
        xp.maximum(top, low, out=top)

    map_blocks(xp, n, x.nbytes // max(n, 1), block, KNOCKOUT_BLOCK_BYTES)
    return out, ("2x2", x.shape, right_top, right_bottom, bottom)


def max_pool2x2_backward(dout, cache):
    """dx of max_pool2x2_forward: dout split by the three recorded matches (module docstring).

    Exact: a share is dout * 1 or dout * 0, and the rest is dout - share, so the routed values are dout's
    own. Rows and columns past the last window (odd H or W) get zeros."""
    _, x_shape, right_top, right_bottom, bottom = cache
    xp = get_array_module(dout)
    n, h, w, c = x_shape
    ho, wo = dout.shape[1:3]
    dx = xp.empty(x_shape, dtype=dout.dtype)

    def block(lo, hi):
        dxb, g = dx[lo:hi], dout[lo:hi]
        if h > 2 * ho:
            dxb[:, 2 * ho:] = 0
        if w > 2 * wo:
            dxb[:, :, 2 * wo:] = 0
        da, db, dc, dd = _quarters(dxb, ho, wo)
        xp.multiply(g, bottom[lo:hi], out=dc)       # the bottom pair's share, parked in dc
        xp.subtract(g, dc, out=da)                  # the top pair's share, parked in da
        xp.multiply(da, right_top[lo:hi], out=db)
        xp.subtract(da, db, out=da)
        xp.multiply(dc, right_bottom[lo:hi], out=dd)
        xp.subtract(dc, dd, out=dc)

    map_blocks(xp, n, dx.nbytes // max(n, 1), block, KNOCKOUT_BLOCK_BYTES)
    return dx


def max_pool2d_forward_reference(x, kernel: int = 2, stride: int | None = None):
    """Max over the window axes of a strided window view; the same (out, cache) as max_pool2d_forward."""
    stride = kernel if stride is None else stride
    _check_pool(x.shape, kernel, stride, "max_pool2d")
    return windows(x, kernel, kernel, stride).max(axis=(3, 4)), (x, None, kernel, stride)


def max_pool2d_backward_reference(dout, cache):
    """argmax (first maximum in row-major window order) of every window, then a scatter-add per offset."""
    x, _, kernel, stride = cache
    xp = get_array_module(dout)
    n, ho, wo, c = dout.shape
    arg = windows(x, kernel, kernel, stride).reshape(n, ho, wo, kernel * kernel, c).argmax(axis=3)
    dx = xp.zeros(x.shape, dtype=dout.dtype)
    for u in range(kernel):
        for v in range(kernel):
            _offset_view(dx, u, v, ho, wo, stride)[...] += dout * (arg == u * kernel + v)
    return dx


def avg_pool2d_forward(x, kernel: int = 2, stride: int | None = None):
    """Mean over each kernel x kernel window. x (N,H,W,C) -> (N,Ho,Wo,C)."""
    stride = kernel if stride is None else stride
    _check_pool(x.shape, kernel, stride, "avg_pool2d")
    return _window_stack(x, kernel, stride).mean(axis=-1), (x.shape, kernel, stride)


def avg_pool2d_backward(dout, cache):
    """dx: each window's gradient shared equally (1/k^2) by its inputs; overlaps accumulate."""
    x_shape, kernel, stride = cache
    xp = get_array_module(dout)
    share = dout / (kernel * kernel)
    n, ho, wo, c = dout.shape
    if _tiles_exactly(x_shape, kernel, stride):
        return xp.broadcast_to(share[:, :, None, :, None, :], (n, ho, kernel, wo, kernel, c)).reshape(x_shape)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    for u in range(kernel):
        for v in range(kernel):
            dx[:, u:u + stride * (ho - 1) + 1:stride, v:v + stride * (wo - 1) + 1:stride, :] += share
    return dx


def global_avg_pool_forward(x):
    """Mean over the whole feature map: (N,H,W,C) -> (N,C)."""
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool: input must be NHWC (4-D), got shape {tuple(x.shape)}")
    return x.mean(axis=(1, 2)), x.shape


def global_avg_pool_backward(dout, x_shape):
    """dx[n,h,w,c] = dout[n,c] / (H*W)."""
    xp = get_array_module(dout)
    n, h, w, c = x_shape
    return xp.broadcast_to((dout / (h * w))[:, None, None, :], x_shape).copy()


pool_output_size = output_size
