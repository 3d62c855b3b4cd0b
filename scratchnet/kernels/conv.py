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
"""
from __future__ import annotations

from ..backend import get_array_module


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Ho = floor((H + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


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


def pad_hw(x, before: int, after: int | None = None):
    """Zero-pad (or, for negative amounts, crop) the H and W axes of an NHWC array."""
    after = before if after is None else after
    if before == 0 and after == 0:
        return x
    xp = get_array_module(x)
    if before >= 0 and after >= 0:
        return xp.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    n, h, w, c = x.shape  # at least one side crops: crop first, then pad what remains positive
    x = x[:, max(-before, 0):h - max(-after, 0), max(-before, 0):w - max(-after, 0), :]
    return pad_hw(x, max(before, 0), max(after, 0))


def windows(x_padded, kh: int, kw: int, stride: int):
    """A strided view (no copy) of every kh x kw window: shape (N, Ho, Wo, kh, kw, C)."""
    xp = get_array_module(x_padded)
    n, hp, wp, c = x_padded.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    sn, sh, sw, sc = x_padded.strides
    return xp.lib.stride_tricks.as_strided(
        x_padded, shape=(n, ho, wo, kh, kw, c), strides=(sn, stride * sh, stride * sw, sh, sw, sc), writeable=False)


def im2col(x, kh: int, kw: int, stride: int, padding: int):
    """Every kernel window as one row: (N*Ho*Wo, kh*kw*C), contiguous, in the order the GEMM wants."""
    win = windows(pad_hw(x, padding), kh, kw, stride)
    n, ho, wo = win.shape[:3]
    return win.reshape(n * ho * wo, -1), (n, ho, wo)  # reshape of a strided view = the one copy


def conv2d_forward(x, w, b, stride: int = 1, padding: int = 0, need_cols: bool = True):
    """out = conv(x, w) + b via im2col + GEMM. Returns (out, cache); cache keeps the im2col matrix for dW."""
    check_conv_shapes(x.shape, w.shape, stride, padding)
    kh, kw, c, f = w.shape
    cols, (n, ho, wo) = im2col(x, kh, kw, stride, padding)
    out = cols @ w.reshape(kh * kw * c, f)
    if b is not None:
        out += b  # in place: no second (N*Ho*Wo, F) buffer
    cache = (cols if need_cols else None, x.shape, w, stride, padding)
    return out.reshape(n, ho, wo, f), cache


def conv2d_backward(dout, cache, need_dx: bool = True, need_dw: bool = True):
    """Gradients (dx, dw, db) of conv2d_forward; dx/dw are None when not needed.

    dW[u,v,c,f] = sum_{n,i,j} xpad[n, s*i+u, s*j+v, c] * dout[n,i,j,f]    -> cols^T @ dout (one GEMM)
    db[f]       = sum_{n,i,j} dout[n,i,j,f]
    dx          = full correlation of dilate(dout, s) with rot180(w) (in/out channels swapped), cropped
                  to x's extent: written as a stride-1 conv so it reuses im2col + one GEMM.
    """
    cols, x_shape, w, stride, padding = cache
    kh, kw, c, f = w.shape
    dout2 = dout.reshape(-1, f)
    db = dout2.sum(axis=0)
    dw = (cols.T @ dout2).reshape(w.shape) if need_dw else None
    dx = conv_input_grad(dout, w, x_shape, stride, padding) if need_dx else None
    return dx, dw, db


def dilate(dout, stride: int):
    """Insert stride-1 zeros between neighbouring pixels of dout (a stride-s conv's gradient spreads that way)."""
    if stride == 1:
        return dout
    xp = get_array_module(dout)
    n, ho, wo, f = dout.shape
    out = xp.zeros((n, (ho - 1) * stride + 1, (wo - 1) * stride + 1, f), dtype=dout.dtype)
    out[:, ::stride, ::stride, :] = dout
    return out


def conv_input_grad(dout, w, x_shape, stride: int, padding: int):
    """dx of a conv as a stride-1 convolution (a 'transposed convolution').

    With D = dilate(dout, s), dxpad[j] = sum_u D[j - u] w[u] (a full convolution). Writing it as a
    correlation with the flipped kernel: dx[i] = sum_v Dpad[i + v] * w[k-1-v], where D is padded by
    k-1-p at the start (so that output row i lines up with input row i, after removing the forward's
    padding p) and at the end so that exactly H rows come out. Negative pads crop.
    """
    kh, kw, c, f = w.shape
    _, h, wd, _ = x_shape
    d = dilate(dout, stride)
    w_rot = w[::-1, ::-1].transpose(0, 1, 3, 2)  # (kh, kw, F, C): rotate 180 degrees, swap in/out
    xp = get_array_module(dout)
    w_rot = xp.ascontiguousarray(w_rot)
    top, left = kh - 1 - padding, kw - 1 - padding
    bottom = h + kh - 1 - d.shape[1] - top
    right = wd + kw - 1 - d.shape[2] - left
    d = _pad_crop_2d(d, top, bottom, left, right)
    cols, (n, ho, wo) = im2col(d, kh, kw, 1, 0)
    return (cols @ w_rot.reshape(kh * kw * f, c)).reshape(n, ho, wo, c)


def _pad_crop_2d(x, top, bottom, left, right):
    """Zero-pad (positive) or crop (negative) each side of the H and W axes independently."""
    xp = get_array_module(x)
    n, h, w, c = x.shape
    x = x[:, max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0), :]
    if top > 0 or bottom > 0 or left > 0 or right > 0:
        x = xp.pad(x, ((0, 0), (max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0)), (0, 0)))
    return x


# --------------------------------------------------------------------------------------------------
# Reference implementation: a loop over the kh*kw kernel offsets, each step a batched matmul.
# --------------------------------------------------------------------------------------------------

def conv2d_forward_reference(x, w, b, stride: int = 1, padding: int = 0):
    """out = sum over kernel offsets (u, v) of  xpad[:, u::s, v::s, :] @ w[u, v]  (+ b)."""
    check_conv_shapes(x.shape, w.shape, stride, padding)
    xp = get_array_module(x)
    kh, kw, c, f = w.shape
    n, h, wd, _ = x.shape
    ho, wo = output_size(h, kh, stride, padding), output_size(wd, kw, stride, padding)
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
    h, wd = x.shape[1:3]
    dx = dxpad[:, padding:padding + h, padding:padding + wd, :]
    return dx, dw, dout.reshape(-1, f).sum(axis=0)
