"""Element-wise activations as forward/backward pairs on arrays: ReLU and GELU.

    relu(x) = max(x, 0)                      d/dx = 1 where x > 0, else 0 (0 at x == 0, as PyTorch)
    gelu(x) = 0.5 x (1 + t),  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3)   (the tanh form: numpy has no erf)
              d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)

Speed: on the CPU both work on the flattened array in blocks shared out between threads
(`parallel.map_blocks`). GELU's formula is a chain of ~10 passes, so its blocks are kept small enough
(CACHE_BLOCK_BYTES) that the temporaries of one block stay in cache. The `*_reference` functions are the
formulas above written as whole-array expressions; the tests check the two agree.
"""
from __future__ import annotations

from ..backend import GPUKernel, get_array_module, on_cpu
from ..parallel import map_blocks

GELU_C = 0.7978845608028654  # sqrt(2 / pi)
CACHE_BLOCK_BYTES = 256 << 10

# On the GPU each formula below is one fused kernel (backend.GPUKernel), written in the same order of
# operations as the NumPy code next to it.
_RELU_BACKWARD_GPU = GPUKernel("T g, T y", "T dx", "dx = y > (T)0 ? g : (T)0", "scratchnet_relu_backward")
_GELU_FORWARD_GPU = GPUKernel(
    "T x", "T out, T t",
    f"""t = tanh((T){GELU_C!r} * (x * ((T)0.044715 * (x * x) + (T)1)));
        out = (t + (T)1) * x * (T)0.5;""",
    "scratchnet_gelu_forward")
_GELU_BACKWARD_GPU = GPUKernel(
    "T g, T x, T t", "T dx",
    f"""T slope = (x * x) * (T){3 * 0.044715!r} + (T)1;
        T curve = ((T)1 - t * t) * x * (T){0.5 * GELU_C!r} * slope;
        dx = ((t + (T)1) * (T)0.5 + curve) * g;""",
    "scratchnet_gelu_backward")


def _flat(a):
    return a.reshape(-1)  # a view for the contiguous arrays the layers produce (a copy otherwise: still right)


def _new(xp, like):
    return xp.empty(like.shape, dtype=like.dtype)  # C order, so _flat of it is a view we can write through


def relu_forward(x):
    """out = max(x, 0). The cache is `out` itself: out > 0 exactly where x > 0."""
    xp = get_array_module(x)
    out = _new(xp, x)
    src, dst = _flat(x), _flat(out)
    map_blocks(xp, src.size, src.itemsize, lambda lo, hi: xp.maximum(src[lo:hi], 0, out=dst[lo:hi]))
    return out, out


def relu_backward(dout, out):
    """dx = dout where out > 0, else 0.

    The CPU multiplies by the mask, the GPU kernel selects (as PyTorch does): they differ only where
    out <= 0 and dout is inf or NaN (CPU: NaN, GPU: 0)."""
    xp = get_array_module(dout)
    if not on_cpu(xp) and dout.dtype == out.dtype:  # the fused kernel has one dtype T
        return _RELU_BACKWARD_GPU(dout, out)
    dx = _new(xp, dout)
    g, y, dst = _flat(dout), _flat(out), _flat(dx)
    map_blocks(xp, g.size, g.itemsize, lambda lo, hi: xp.multiply(g[lo:hi], y[lo:hi] > 0, out=dst[lo:hi]))
    return dx


def gelu_forward(x):
    """out = 0.5 x (1 + t); the cache is (x, t), t = tanh(u)."""
    xp = get_array_module(x)
    if not on_cpu(xp) and x.dtype.kind == "f":
        out, t = _GELU_FORWARD_GPU(x)
        return out, (x, t)
    out, t = _new(xp, x), _new(xp, x)
    src, dst, tf = _flat(x), _flat(out), _flat(t)
    map_blocks(xp, src.size, src.itemsize, lambda lo, hi: gelu_block(xp, src[lo:hi], tf[lo:hi], dst[lo:hi]),
               CACHE_BLOCK_BYTES)
    return out, (x, t)


def gelu_block(xp, xb, tb, ob):
    """GELU of one cache-sized block: t = tanh(u) into tb, 0.5 x (1 + t) into ob (ob must not be xb)."""
    xp.multiply(xb, xb, out=tb)          # t <- x^2, then 1 + 0.044715 x^2, then u, then tanh(u): in place
    tb *= 0.044715
    tb += 1
    tb *= xb
    tb *= GELU_C
    xp.tanh(tb, out=tb)
    xp.add(tb, 1, out=ob)
    ob *= xb
    ob *= 0.5


def gelu_backward(dout, cache):
    """dx = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))."""
    x, t = cache
    xp = get_array_module(dout)
    if not on_cpu(xp) and dout.dtype == x.dtype:  # the fused kernel has one dtype T
        return _GELU_BACKWARD_GPU(dout, x, t)
    dx = _new(xp, dout)
    g, xf, tf, dst = _flat(dout), _flat(x), _flat(t), _flat(dx)
    map_blocks(xp, g.size, g.itemsize,
               lambda lo, hi: gelu_grad_block(xp, g[lo:hi], xf[lo:hi], tf[lo:hi], dst[lo:hi]), CACHE_BLOCK_BYTES)
    return dx


def gelu_grad_block(xp, gb, xb, tb, ob):
    """GELU's backward on one cache-sized block: dout * gelu'(x) into ob (which may be gb, not xb or tb)."""
    slope = xp.multiply(xb, xb)          # 1 + 3 * 0.044715 x^2
    slope *= 3 * 0.044715
    slope += 1
    curve = xp.multiply(tb, tb)          # 0.5 sqrt(2/pi) x (1 - t^2)
    xp.subtract(1, curve, out=curve)
    curve *= xb
    curve *= 0.5 * GELU_C
    curve *= slope
    if ob is gb:                         # in place over dout: keep the same order of operations
        gb = gb.copy()
    xp.add(tb, 1, out=ob)                # 0.5 (1 + t) + the above, times dout
    ob *= 0.5
    ob += curve
    ob *= gb


def relu_forward_reference(x):
    return x * (x > 0), x


def relu_backward_reference(dout, x):
    return dout * (x > 0)


def gelu_forward_reference(x):
    xp = get_array_module(x)
    t = xp.tanh(GELU_C * (x + 0.044715 * x * x * x))
    return 0.5 * x * (1 + t), (x, t)


def gelu_backward_reference(dout, cache):
    x, t = cache
    return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x))
