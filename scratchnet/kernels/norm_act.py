"""Batch norm followed by its activation (ReLU or GELU) as one forward/backward pair: the fused layer.

Why: in NumPy every elementwise layer is its own pass over the activations, and a pass over a big array
costs a trip through memory. Batch norm's last pass (scale and shift) and the activation after it read
and write the same values, so doing both on a cache-sized block while it is in cache saves that trip,
and batch norm's output z is never stored (GELU's backward rebuilds it from x). The maths is unchanged:
    z = (x - mu) * gamma / sqrt(var + eps) + beta,   out = act(z)             (kernels/norm.py, activation.py)
Forward (CPU): the mean, then x - mu and the variance (norm.centre_and_stats), then per block of rows
    z = centred * scale + beta,  out = relu(z) or gelu(z) (GELU also keeps t = tanh(u) for its backward).
Backward (CPU), two passes instead of the unfused pair's three:
    1. per block: dz = act'(z) * dout into dx's buffer, and the block's sums of dz and dz * (x - mu)
    2. dx = k dz - (k inv_std dgamma / M)(x - mu) - k dbeta / M          (norm.batchnorm_backward's formula)
The forward is bit-identical to batch norm then the activation (same operations in the same order); the
backward adds its sums in smaller blocks, so dgamma, dbeta and dx differ from the unfused pair in float32
rounding only (the tests bound it). On the GPU both layers are single fused kernels already: the pair is
chained there. The `_reference` pair chains the two layers' reference functions.
"""
from __future__ import annotations

from ..backend import get_array_module, on_cpu
from ..parallel import map_blocks, sum_blocks
from . import activation as act
from . import norm
from .reductions import channel_dot

ACTIVATIONS = ("relu", "gelu")
# Rows per block of each CPU pass, in bytes of the input. Smaller blocks stay in cache but cost more numpy
# calls per byte; these sizes were the fastest of those tried on the training batches (docs/performance.md).
FORWARD_BLOCK_BYTES = 1 << 20
SUMS_BLOCK_BYTES = 1 << 20
GRAD_BLOCK_BYTES = 4 << 20


def _check(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"batch norm + activation: activation must be one of {ACTIVATIONS}, got {activation!r}")


_FORWARD = {"relu": act.relu_forward, "gelu": act.gelu_forward}
_BACKWARD = {"relu": act.relu_backward, "gelu": act.gelu_backward}


def batchnorm_act_forward(x, gamma, beta, running_mean, running_var, training: bool,
                          momentum: float = 0.1, eps: float = 1e-5, activation: str = "relu"):
    """out = act(batch_norm(x)); returns (out, cache) and, in training, updates the running statistics."""
    _check(activation)
    xp = get_array_module(x)
    if not on_cpu(xp):  # chained: each half is one GPU kernel already
        z, bn_cache = norm.batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)
        out, act_cache = _FORWARD[activation](z)
        return out, ("chained", activation, bn_cache, act_cache)
    x2 = norm.channel_matrix(x, gamma, training)
    m, row_bytes = x2.shape[0], x2.shape[1] * x2.itemsize
    out = xp.empty(x2.shape, dtype=x2.dtype)
    mu, inv_std = norm.centre_and_stats(x2, out, running_mean, running_var, training, momentum, eps)
    scale = gamma * inv_std
    t = xp.empty(x2.shape, dtype=x2.dtype) if activation == "gelu" else None

    def block(lo, hi):  # the centred block becomes z, then the activation, while it is in cache
        ob = out[lo:hi]
        ob *= scale
        ob += beta
        if t is None:
            xp.maximum(ob, 0, out=ob)
        else:
            act.gelu_block(xp, ob.copy(), t[lo:hi], ob)  # a copy of z: gelu_block reads its input to the end

    map_blocks(xp, m, row_bytes, block, FORWARD_BLOCK_BYTES)
    kept = out if t is None else t  # ReLU's backward needs out > 0; GELU's needs t (and z, rebuilt)
    return out.reshape(x.shape), ("fused", activation, x2, mu, gamma, beta, inv_std, training, kept)


def batchnorm_act_backward(dout, cache, need_dx: bool = True):
    """(dx, dgamma, dbeta) of batchnorm_act_forward (module docstring: the two passes)."""
    if cache[0] == "chained":
        _, activation, bn_cache, act_cache = cache
        return norm.batchnorm_backward(_BACKWARD[activation](dout, act_cache), bn_cache, need_dx)
    _, activation, x2, mu, gamma, beta, inv_std, training, kept = cache
    xp = get_array_module(dout)
    d2 = dout.reshape(x2.shape)
    m, row_bytes = x2.shape[0], x2.shape[1] * x2.itemsize
    scale = gamma * inv_std
    dz = xp.empty(x2.shape, dtype=d2.dtype)  # dz, then dx in place

    def sums(lo, hi):  # dz of one block and its (sum dz, sum dz * centred)
        dzb, centred = dz[lo:hi], x2[lo:hi] - mu
        if activation == "relu":
            xp.multiply(d2[lo:hi], kept[lo:hi] > 0, out=dzb)
        else:
            z = centred * scale  # z as the forward made it, bit for bit
            z += beta
            act.gelu_grad_block(xp, d2[lo:hi], z, kept[lo:hi], dzb)
        return xp.stack((xp.ones(hi - lo, dtype=dzb.dtype) @ dzb, channel_dot(dzb, centred)))

    dbeta, dot = sum_blocks(xp, m, row_bytes, sums, SUMS_BLOCK_BYTES)
    dgamma = dot * inv_std
    if not need_dx:
        return None, dgamma, dbeta
    k = gamma * inv_std
    if training:
        centred_coef, shift = k * inv_std * dgamma / m, k * dbeta / m

        def grad(lo, hi):
            dxb = dz[lo:hi]
            dxb *= k
            centred = xp.subtract(x2[lo:hi], mu)
            centred *= -centred_coef
            dxb += centred
            dxb -= shift
    else:  # running statistics are constants: a per-channel affine map
        def grad(lo, hi):
            dz[lo:hi] *= k

    map_blocks(xp, m, row_bytes, grad, GRAD_BLOCK_BYTES)
    return dz.reshape(dout.shape), dgamma, dbeta


# --------------------------------------------------------------------------------------------------
# Reference implementation: batch norm's reference, then the activation's (tests compare).
# --------------------------------------------------------------------------------------------------

_FORWARD_REFERENCE = {"relu": act.relu_forward_reference, "gelu": act.gelu_forward_reference}
_BACKWARD_REFERENCE = {"relu": act.relu_backward_reference, "gelu": act.gelu_backward_reference}


def batchnorm_act_forward_reference(x, gamma, beta, running_mean, running_var, training: bool,
                                    momentum: float = 0.1, eps: float = 1e-5, activation: str = "relu"):
    """act(batchnorm_forward_reference(x)): the two reference layers one after the other."""
    _check(activation)
    z, bn_cache = norm.batchnorm_forward_reference(x, gamma, beta, running_mean, running_var, training,
                                                   momentum, eps)
    out, act_cache = _FORWARD_REFERENCE[activation](z)
    return out, (activation, bn_cache, act_cache)


def batchnorm_act_backward_reference(dout, cache, need_dx: bool = True):
    activation, bn_cache, act_cache = cache
    return norm.batchnorm_backward_reference(_BACKWARD_REFERENCE[activation](dout, act_cache), bn_cache, need_dx)
