"""Winograd's minimal filtering F(4x4, 3x3): 3x3 stride-1 convolutions with 4x fewer multiplications.

Why: direct convolution (im2col + GEMM) spends 9 multiply-adds per output pixel per (in, out) channel
pair, and the GEMM already runs near the CPU's peak; the only way to go faster is to do less.
Winograd's algorithm (brought to CNNs by Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", 2016) computes a 4x4 block of outputs from a 6x6 input tile d and a 3x3 kernel g with 36
multiplications instead of 144:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise; shapes 4x6 . 6x6 . 6x4)

(`tile_conv` below is this formula, for one tile and one channel pair.) Over many channels the 36
elementwise products become 36 independent GEMMs, one per position (a, b) of the 6x6 tile:

    V = B^T d B   input transform     per tile and input channel   -> V[ab]: (tiles, C)
    U = G g G^T   kernel transform    per channel pair             -> U[ab]: (C, F)
    M[ab] = V[ab] @ U[ab]              the 36 GEMMs: 2.25 multiply-adds per output pixel instead of 9
    Y = A^T M A   output transform    per tile and output channel

The transforms cost O(C + F) per pixel against the GEMMs' O(C F), so they pay off when both channel
counts are large (tens to hundreds); `usable` decides. Each transform is a "sandwich" T a T^T
applied to the two tile axes at once, done as two small matmuls (one per axis).

Tiles: the output is cut into 4x4 blocks, th x tw of them (the last ones may stick out past the edge;
their extra outputs are computed from zeros and cropped). Block (t, s) reads rows 4t..4t+5 and columns
4s..4s+5 of the zero-padded input: neighbouring tiles overlap by the kernel size - 1 = 2.

Backward (both exact adjoints, no new algorithm):
  dx = a stride-1 3x3 convolution of dout with the rotated, channel-swapped kernel (conv.conv_input_grad),
       so it runs through the same forward;
  dW: the forward is linear in U, so dU[ab] = V[ab]^T @ dM[ab] with dM = A dY A^T (the adjoint of the
       output transform), summed over tiles; then dW = G^T dU G (the adjoint of the kernel transform).

Precision: the transform coefficients (up to 8 and down to 1/24) cost float32 about an order of
magnitude of accuracy against im2col, the price oneDNN and cuDNN pay for the same algorithm; in float64
it agrees with direct convolution to rounding error. The tests hold both to their tolerances.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module, on_cpu
from ..parallel import for_each_chunk, sum_chunks
from .workspace import image_chunks, output_size, place, scratch, windows

# Interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray, section 4.2).
BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], dtype=np.float64)          # (6, 6) input transform B^T
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], dtype=np.float64)                      # (6, 3) kernel transform
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], dtype=np.float64)          # (4, 6) output transform A^T
TILE, OUT = 6, 4          # input tile and output block sizes: OUT + 3 - 1 = TILE

# `usable` sends a conv here only when both channel counts reach MIN_CHANNELS (with few channels the GEMMs
# are cheap and the transforms, whose work per pixel grows with C + F, eat the saving) and the 4x4 blocks
# cover at most MAX_OVERHANG times the output's pixels (the overhang's outputs are computed and thrown away:
# a 3x3 map, one block of 16 for 9 outputs, gains nothing over im2col).
MIN_CHANNELS = 16
MAX_OVERHANG = 1.5


def tile_conv(d, g):
    """The textbook formula: the 4x4 valid correlation of one 6x6 tile d with one 3x3 kernel g."""
    return AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T


def usable(x_shape, w_shape, stride: int, padding: int) -> bool:
    """True when conv2d should take this path: 3x3 kernel, stride 1, both channel counts >= MIN_CHANNELS,
    and an output that the 4x4 blocks cover with little overhang (see MAX_OVERHANG)."""
    kh, kw, c, f = w_shape
    if (kh, kw) != (3, 3) or stride != 1 or min(c, f) < MIN_CHANNELS:
        return False
    ho, wo = output_size(x_shape[1], 3, 1, padding), output_size(x_shape[2], 3, 1, padding)
    return ho >= 1 and wo >= 1 and (OUT * _blocks(ho)) * (OUT * _blocks(wo)) <= MAX_OVERHANG * ho * wo


_matrices: dict = {}


def _mats(xp, dtype):
    """BT, AT, G as arrays of the backend and dtype (made once each)."""
    key = (xp.__name__, np.dtype(dtype).str)
    if key not in _matrices:
        _matrices[key] = tuple(xp.asarray(m, dtype=dtype) for m in (BT, AT, G))
    return _matrices[key]


def sandwich(t, a, out=None):
    """T a T^T on the two leading axes: a (k, k, K) -> (r, r, K) for t (r, k); one matmul per axis.

    out[i, j] = sum_{p, q} t[i, p] t[j, q] a[p, q]. First over p: (r, k) @ (k, k*K) -> (r, k, K);
    then over q for each i at once: (r, k) broadcast against (r, k, K) -> (r, r, K).
    """
    xp = get_array_module(a)
    r, k = t.shape
    half = xp.matmul(t, a.reshape(k, -1)).reshape(r, k, -1)
    return xp.matmul(t, half, out=out)


def _tiles(xp, src, key, th: int, tw: int, top: int):
    """The 6x6 input tiles of src (n, H, W, C), zero-padded by `top` rows/cols before (negative: cropped):
    a reused (6, 6, n*th*tw*C) array, tile position first so that the transform is a matmul."""
    n, h, w, c = src.shape
    frame = scratch(xp, ("wino frame",) + key + (top, h, w), (n, OUT * th + 2, OUT * tw + 2, c), src.dtype)
    place(frame, src, top, top, 1)  # zero frame: padding, and zeros under the blocks' overhang
    d = scratch(xp, ("wino tiles",) + key, (TILE, TILE, n, th, tw, c), src.dtype, zeroed=False)
    d[...] = windows(frame, TILE, TILE, OUT).transpose(3, 4, 0, 1, 2, 5)  # the one gather copy
    return d.reshape(TILE, TILE, -1)


def _input_transform(xp, src, key, th, tw, top, fresh: bool = False):
    """V = B^T d B for every tile and channel: (36, n*th*tw, C); in a reused buffer, or a new array if fresh."""
    bt = _mats(xp, src.dtype)[0]
    d = _tiles(xp, src, key, th, tw, top)
    if fresh:
        v = xp.empty(d.shape, dtype=src.dtype)
    else:
        v = scratch(xp, ("wino V",) + key, d.shape, src.dtype, zeroed=False)
    sandwich(bt, d, out=v)
    return v.reshape(TILE * TILE, src.shape[0] * th * tw, src.shape[3])


def _blocks(size: int) -> int:
    """How many 4x4 output blocks cover an output of this size."""
    return -(-size // OUT)


def _chunks(xp, n: int, th: int, tw: int, channels: int, itemsize: int, chunk_bytes: int | None):
    """Image ranges whose transformed tiles (36 x tiles x channels) are about half of chunk_bytes (default
    workspace.CHUNK_BYTES): small chunks keep the four buffers a chunk passes through in cache."""
    per_image = TILE * TILE * th * tw * channels * itemsize * 2
    return image_chunks(xp, n, per_image, chunk_bytes)


def weight_transform(w):
    """U = G g G^T for every channel pair: HWIO (3, 3, C, F) -> (36, C, F)."""
    xp = get_array_module(w)
    c, f = w.shape[2:]
    g = _mats(xp, w.dtype)[2]
    return sandwich(g, w.reshape(3, 3, c * f)).reshape(TILE * TILE, c, f)


# The forward's V (the transformed input tiles) is what dW needs too. Kept for the backward pass (the autograd
# layer asks when dW will be needed), dW skips redoing the tile gather and input transform. A large V gains
# nothing, as writing it out and reading it back through DRAM costs what rebuilding it in cache does, so V is
# kept only up to this size (it is 36/16 = 2.25x the layer's input, plus the blocks' overhang).
KEEP_V_BYTES = 64 << 20


def conv3x3_forward(x, w, b, padding: int, keep_v: bool = False, chunk_bytes: int | None = None):
    """(out, kept): out = conv(x, w) + b for a 3x3 kernel at stride 1, x (N, H, W, C), w (3, 3, C, F) ->
    (N, Ho, Wo, F); kept = {(lo, hi): V of images lo..hi-1} for conv3x3_weight_grad when keep_v and the
    whole batch's V fits KEEP_V_BYTES, else None. chunk_bytes: the chunks' budget (see _chunks).

    Per chunk of images: gather tiles, input transform, 36 GEMMs against U, output transform, and the
    4x4 blocks written (cropped) into the NHWC output."""
    xp = get_array_module(x)
    n, h, width, c = x.shape
    f = w.shape[3]
    ho, wo = h + 2 * padding - 2, width + 2 * padding - 2
    th, tw = _blocks(ho), _blocks(wo)
    u = weight_transform(w)
    at = _mats(xp, x.dtype)[1]
    out = xp.empty((n, ho, wo, f), dtype=x.dtype)
    keep = keep_v and TILE * TILE * n * th * tw * c * x.itemsize <= KEEP_V_BYTES
    kept = {}

    def chunk(lo, hi, worker):
        nc = hi - lo
        key = ("fwd", nc, c, f, th, tw)
        v = _input_transform(xp, x[lo:hi], key, th, tw, padding, fresh=keep)
        if keep:
            kept[lo, hi] = v  # each chunk its own key: the threads never write the same entry
        m = scratch(xp, ("wino M",) + key, (TILE * TILE, nc * th * tw, f), x.dtype, zeroed=False)
        xp.matmul(v, u, out=m)                                             # the 36 GEMMs
        y = sandwich(at, m.reshape(TILE, TILE, -1))                        # (4, 4, nc*th*tw*F)
        blocks = y.reshape(OUT, OUT, nc, th, tw, f).transpose(2, 3, 0, 4, 1, 5).reshape(nc, OUT * th, OUT * tw, f)
        out[lo:hi] = blocks[:, :ho, :wo]
        if b is not None:
            out[lo:hi] += b  # while the chunk is in cache

    for_each_chunk(xp, _chunks(xp, n, th, tw, max(c, f), x.itemsize, chunk_bytes), chunk)
    return out, (kept if keep else None)


def conv3x3_weight_grad(x, dout, padding: int, kept=None, chunk_bytes: int | None = None):
    """dW (3, 3, C, F) of conv3x3_forward: dU[ab] = sum over tiles of V[ab]^T @ dM[ab], dW = G^T dU G.
    kept: the forward's V by image range (then dW uses the same ranges); else V is rebuilt from x, in
    chunks of chunk_bytes as in the forward."""
    xp = get_array_module(dout)
    n, h, width, c = x.shape
    ho, wo, f = dout.shape[1:]
    th, tw = _blocks(ho), _blocks(wo)
    at = _mats(xp, dout.dtype)[1]

    def chunk(lo, hi):
        nc = hi - lo
        key = ("dw", nc, c, f, th, tw)
        if kept is None:
            v = _input_transform(xp, x[lo:hi].astype(dout.dtype, copy=False), key, th, tw, padding)
        else:
            v = kept[lo, hi]
        # dY in 4x4 blocks (zeros where a block overhangs the output), block position first
        frame = scratch(xp, ("wino dY frame",) + key + (ho, wo), (nc, OUT * th, OUT * tw, f), dout.dtype)
        frame[:, :ho, :wo] = dout[lo:hi]
        dy = scratch(xp, ("wino dY",) + key, (OUT, OUT, nc, th, tw, f), dout.dtype, zeroed=False)
        dy[...] = frame.reshape(nc, th, OUT, tw, OUT, f).transpose(2, 4, 0, 1, 3, 5)
        dm = sandwich(at.T, dy.reshape(OUT, OUT, -1)).reshape(TILE * TILE, nc * th * tw, f)  # A dY A^T
        return xp.matmul(v.transpose(0, 2, 1), dm)                        # this chunk's dU: (36, C, F)

    # the forward's ranges, in order (the dict's order is the threads' finishing order): same sums, same bits
    ranges = sorted(kept) if kept is not None else _chunks(xp, n, th, tw, max(c, f), dout.itemsize, chunk_bytes)
    du = sum_chunks(xp, ranges, chunk)
    g = _mats(xp, dout.dtype)[2]
    return sandwich(g.T, du.reshape(TILE, TILE, c * f)).reshape(3, 3, c, f)


def cpu_usable(xp, x_shape, w_shape, stride, padding) -> bool:
    """`usable`, on the CPU only: on a GPU cuBLAS's GEMMs are cheap next to the extra kernel launches the
    transforms take, and this path has not been measured there."""
    return on_cpu(xp) and usable(x_shape, w_shape, stride, padding)
