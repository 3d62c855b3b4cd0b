"""2-D convolution as forward/backward pairs on arrays (numpy or cupy).

Layout (chosen once for the whole library): images are NHWC = (batch, height, width, channels) and
conv weights are HWIO = (kernel_h, kernel_w, in_channels, out_channels). Why channels last: the im2col
matrix is then built from rows whose innermost run (kernel_w x C values) is contiguous in memory, the
GEMM `cols @ W` writes its result directly in NHWC (no transpose of the output), and per-channel
reductions (bias, batch norm) reduce a (rows, C) matrix along its rows.

Math (stride s, zero padding p, cross-correlation like every DL library):
    out[n, i, j, f] = b[f] + sum_{u, v, c} xpad[n, s*i + u, s*j + v, c] * w[u, v, c, f]
Shapes: x (N, H, W, C), w (kh, kw, C, F), b (F,), out (N, Ho, Wo, F) with Ho = (H + 2p - kh) // s + 1.

Two implementations live here:
- `conv2d_forward/backward`: the fast one. Forward = im2col (a strided *view* of every kernel window,
  copied once into a contiguous (N*Ho*Wo, kh*kw*C) matrix) and one GEMM. Backward: dW is one GEMM
  (cols^T @ dout); dx is itself a convolution (of the zero-dilated, padded dout with the kernel rotated
  by 180 degrees and its in/out channels swapped), so it also runs as im2col + one GEMM.
- `conv2d_forward_reference/backward_reference`: loops over the kh*kw kernel offsets (never over
  pixels or images) and accumulates; dx is the classic col2im scatter-add. Slower but obviously right;
  the tests check the fast pair against it and both against PyTorch.
On the CPU the fast pair hands stride-1 3x3 convs with enough channels (forward, dx and dW) to
`winograd.py`, which does 4x fewer multiply-adds; `WINOGRAD = False` keeps everything on im2col.
"""
from __future__ import annotations

from ..backend import get_array_module, on_cpu
from ..parallel import for_each_chunk, sum_chunks
from . import winograd, workspace
from .reductions import channel_sum
from .workspace import output_size, pad_hw, place, scratch, windows


def check_conv_shapes(x_shape, w_shape, stride, padding, name="conv2d"):
    """Raise ValueError naming both shapes when x and w cannot be convolved."""
    if len(x_shape) != 4:
        raise ValueError(f"{name}: input must be NHWC (4-D), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"{name}: weight must be HWIO (4-D), got shape {tuple(w_shape)}")
    if x_shape[3] != w_shape[2]:
        raise ValueError(f"{name}: input has {x_shape[3]} channels (shape {tuple(x_shape)} NHWC) but the weight "
                         f"expects {w_shape[2]} (shape {tuple(w_shape)} HWIO)")
    if stride < 1 or padding < 0:
        raise ValueError(f"{name}: stride must be >= 1 and padding >= 0, got stride={stride}, padding={padding}")
    for size, k, axis in ((x_shape[1], w_shape[0], "height"), (x_shape[2], w_shape[1], "width")):
        if output_size(size, k, stride, padding) < 1:
            raise ValueError(f"{name}: input {axis} {size} with padding {padding} is smaller than the kernel "
                             f"{k} (input {tuple(x_shape)}, weight {tuple(w_shape)})")


def im2col(x, kh: int, kw: int, stride: int, padding: int):
    """Every kernel window as one row: (N*Ho*Wo, kh*kw*C), contiguous, in the order the GEMM wants."""
    win = windows(pad_hw(x, padding), kh, kw, stride)
    n, ho, wo = win.shape[:3]
    return win.reshape(n * ho * wo, -1), (n, ho, wo)  # reshape of a strided view = the one copy


# The fast path works on the batch in chunks of images (workspace.image_chunks says why), each built in
# reused buffers and shared out between CPU threads; dW's backward rebuilds a chunk's columns rather than
# keeping them (cheaper than storing the whole batch's). The Winograd path gets the same budget.
CHUNK_BYTES = workspace.CHUNK_BYTES  # bytes of im2col rows per chunk (tests shrink it to force chunking)


def _chunks(xp, n: int, bytes_per_image: int):
    return workspace.image_chunks(xp, n, bytes_per_image, CHUNK_BYTES)


def _padded_cols(src, tag, hb: int, wb: int, top: int, left: int, place_stride: int, kh: int, kw: int, stride: int):
    """im2col of src placed (padded/dilated) into an (n, hb, wb, C) zero frame: (n*Ho*Wo, kh*kw*C), a reused buffer."""
    xp = get_array_module(src)
    n, c = src.shape[0], src.shape[3]
    key = (tag, top, left, place_stride, src.shape[1], src.shape[2])
    if top == 0 and left == 0 and place_stride == 1 and (hb, wb) == src.shape[1:3]:
        frame = src                                          # nothing to pad: window the input itself
    else:
        frame = scratch(xp, key + ("frame",), (n, hb, wb, c), src.dtype)
        place(frame, src, top, left, place_stride)
    win = windows(frame, kh, kw, stride)
    cols = scratch(xp, key + ("cols", kh, kw, stride), win.shape, src.dtype, zeroed=False)
    cols[...] = win                                          # the one copy, into cache-sized reused memory
    ho, wo = win.shape[1:3]
    return cols.reshape(n * ho * wo, kh * kw * c)


# Stride-1 3x3 convs with enough channels go through Winograd's algorithm instead (winograd.py: 4x fewer
# multiply-adds); WINOGRAD = False sends everything through im2col (the benchmark and tests compare both).
WINOGRAD = True


def _winograd_ok(xp, x, w, stride, padding) -> bool:
    return WINOGRAD and x.dtype == w.dtype and winograd.cpu_usable(xp, x.shape, w.shape, stride, padding)


# On a GPU the forward's columns are kept for dW's backward GEMM when they are at most this big: there the
# im2col copy is the costly part. The price is memory until the backward pass, kh*kw times the layer's
# input: lower this to trade speed for memory on a small GPU. On the CPU the columns are rebuilt (see above).
KEEP_COLS_GPU_BYTES = 4 << 30


def conv2d_forward(x, w, b, stride: int = 1, padding: int = 0, keep_for_dw: bool = False):
    """out = conv(x, w) + b via chunked im2col + GEMM.

    Returns (out, cache); cache = (x, w, stride, padding, kept). keep_for_dw (the autograd layer sets it
    when dW will be needed): keep what dW's backward would otherwise rebuild, within a memory cap (else kept
    is None): on a GPU the im2col matrix, on the Winograd path its transformed input tiles V."""
    check_conv_shapes(x.shape, w.shape, stride, padding)
    xp = get_array_module(x)
    if _winograd_ok(xp, x, w, stride, padding):
        out, kept_v = winograd.conv3x3_forward(x, w, b, padding, keep_v=keep_for_dw, chunk_bytes=CHUNK_BYTES)
        return out, (x, w, stride, padding, kept_v)
    kh, kw, c, f = w.shape
    n, h, width, _ = x.shape
    ho, wo = output_size(h, kh, stride, padding), output_size(width, kw, stride, padding)
    wm = w.reshape(kh * kw * c, f)
    out = xp.empty((n * ho * wo, f), dtype=xp.result_type(x.dtype, w.dtype))
    ranges = _chunks(xp, n, ho * wo * kh * kw * c * x.itemsize)
    kept = []

    def chunk(lo, hi, worker):
        cols = _padded_cols(x[lo:hi], "fwd", h + 2 * padding, width + 2 * padding, padding, padding, 1,
                            kh, kw, stride)
        rows = xp.matmul(cols, wm, out=out[lo * ho * wo:hi * ho * wo])  # out= : straight into the output rows
        if b is not None:
            rows += b  # while the rows are still in cache
        if keep_for_dw and not on_cpu(xp) and cols.nbytes <= KEEP_COLS_GPU_BYTES:
            kept.append(cols)  # on the GPU: one chunk, a fresh array (no reused buffers there), safe to keep

    for_each_chunk(xp, ranges, chunk)
    return out.reshape(n, ho, wo, f), (x, w, stride, padding, kept[0] if kept else None)


def conv2d_backward(dout, cache, need_dx: bool = True, need_dw: bool = True, need_db: bool = True):
    """Gradients (dx, dw, db) of conv2d_forward; dx/dw/db are None when not needed (db: a conv without bias).

    dW[u,v,c,f] = sum_{n,i,j} xpad[n, s*i+u, s*j+v, c] * dout[n,i,j,f]    -> sum over chunks of cols^T @ dout
    db[f]       = sum_{n,i,j} dout[n,i,j,f]
    dx          = full correlation of dilate(dout, s) with rot180(w) (in/out channels swapped), cropped
                  to x's extent: written as a stride-1 conv so it reuses im2col + one GEMM per chunk.
    """
    x, w, stride, padding, kept = cache
    xp = get_array_module(dout)
    kh, kw, c, f = w.shape
    n, h, width, _ = x.shape
    ho, wo = dout.shape[1:3]
    dout2 = dout.reshape(-1, f)
    db = channel_sum(dout2) if need_db else None
    dw = None
    if need_dw and _winograd_ok(xp, x, w, stride, padding):
        dw = winograd.conv3x3_weight_grad(x, dout, padding, kept if x.dtype == dout.dtype else None,
                                          chunk_bytes=CHUNK_BYTES)
    elif need_dw:
        def chunk(lo, hi):
            if kept is not None:  # GPU: the forward's columns (then this is the one chunk)
                cols = kept
            else:
                cols = _padded_cols(x[lo:hi], "fwd", h + 2 * padding, width + 2 * padding, padding, padding, 1,
                                    kh, kw, stride)  # CPU: rebuilding cols beats keeping 70+ MB of them
            return dout2[lo * ho * wo:hi * ho * wo].T @ cols  # dW^T chunk; BLAS is faster this way round

        dw_t = sum_chunks(xp, _chunks(xp, n, ho * wo * kh * kw * c * x.itemsize), chunk)  # (F, kh*kw*C)
        dw = xp.ascontiguousarray(dw_t.T, dtype=dout.dtype).reshape(w.shape)
    dx = conv_input_grad(dout, w, x.shape, stride, padding) if need_dx else None
    return dx, dw, db


def conv_input_grad(dout, w, x_shape, stride: int, padding: int):
    """dx of a conv as a stride-1 convolution (a 'transposed convolution').

    With D = dilate(dout, s), dxpad[j] = sum_u D[j - u] w[u] (a full convolution). Writing it as a
    correlation with the flipped kernel: dx[i] = sum_v Dpad[i + v] * w[k-1-v], where D is padded by
    k-1-p at the start (so that output row i lines up with input row i, after removing the forward's
    padding p) and cropped or padded at the end so that exactly H rows come out. `workspace.place` does the
    dilation, padding and cropping in one assignment into a (H + kh - 1, W + kw - 1) zero frame.
    """
    xp = get_array_module(dout)
    kh, kw, c, f = w.shape
    n, h, width, _ = x_shape
    w_rot = xp.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))  # rot 180, swap in/out: (kh, kw, F, C)
    if stride == 1 and _winograd_ok(xp, dout, w_rot, 1, kh - 1 - padding):
        return winograd.conv3x3_forward(dout, w_rot, None, kh - 1 - padding, chunk_bytes=CHUNK_BYTES)[0]
    w_rot = w_rot.reshape(kh * kw * f, c)
    dx = xp.empty((n * h * width, c), dtype=xp.result_type(dout.dtype, w.dtype))

    def chunk(lo, hi, worker):
        cols = _padded_cols(dout[lo:hi], "dx", h + kh - 1, width + kw - 1, kh - 1 - padding, kw - 1 - padding,
                            stride, kh, kw, 1)
        xp.matmul(cols, w_rot, out=dx[lo * h * width:hi * h * width])

    for_each_chunk(xp, _chunks(xp, n, h * width * kh * kw * f * dout.itemsize), chunk)
    return dx.reshape(x_shape)


# --------------------------------------------------------------------------------------------------
# Reference implementation: a loop over the kh*kw kernel offsets, each step a batched matmul.
# --------------------------------------------------------------------------------------------------

def conv2d_forward_reference(x, w, b, stride: int = 1, padding: int = 0):
    """out = sum over kernel offsets (u, v) of  xpad[:, u::s, v::s, :] @ w[u, v]  (+ b)."""
    check_conv_shapes(x.shape, w.shape, stride, padding)
    xp = get_array_module(x)
    kh, kw, c, f = w.shape
    n, h, width, _ = x.shape
    ho, wo = output_size(h, kh, stride, padding), output_size(width, kw, stride, padding)
    xpad = pad_hw(x, padding)
    out = xp.zeros((n, ho, wo, f), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            patch = xpad[:, u:u + stride * (ho - 1) + 1:stride, v:v + stride * (wo - 1) + 1:stride, :]
            out += patch @ w[u, v]
    if b is not None:
        out += b
    return out, (x, w, stride, padding)


def conv2d_backward_reference(dout, cache):
    """(dx, dw, db) by the same offset loop; dx is col2im: each offset scatters (adds) its share back.

    Why accumulate: an input pixel sits in up to kh*kw windows, and its gradient is the sum over all of them.
    """
    x, w, stride, padding = cache
    xp = get_array_module(x)
    kh, kw, c, f = w.shape
    n, ho, wo, _ = dout.shape
    xpad = pad_hw(x, padding)
    dxpad = xp.zeros_like(xpad)
    dw = xp.zeros_like(w)
    for u in range(kh):
        for v in range(kw):
            rows = slice(u, u + stride * (ho - 1) + 1, stride)
            cols = slice(v, v + stride * (wo - 1) + 1, stride)
            patch = xpad[:, rows, cols, :]
            dw[u, v] = patch.reshape(-1, c).T @ dout.reshape(-1, f)
            dxpad[:, rows, cols, :] += dout @ w[u, v].T
    h, width = x.shape[1:3]
    dx = dxpad[:, padding:padding + h, padding:padding + width, :]
    return dx, dw, dout.reshape(-1, f).sum(axis=0)
