"""Batch normalisation over all axes but the last (channels), as a forward/backward pair.

For conv features x (N, H, W, C) the statistics are per channel over M = N*H*W values; the same code
serves (N, C) inputs. Training mode:
    mu = mean(x),  var = mean((x - mu)^2)            (biased, over the M values of each channel)
    xhat = (x - mu) / sqrt(var + eps),  out = gamma * xhat + beta
    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased, as PyTorch)
Eval mode uses the running statistics instead of mu and var (and then xhat does not depend on the batch).

Backward in training mode (every xhat depends on every x of its channel through mu and var):
    dbeta = sum(dout),  dgamma = sum(dout * xhat)
    dx = gamma / (M * sqrt(var + eps)) * (M * dout - dbeta - xhat * dgamma)
The derivation: docs/walkthrough.md, "Batch norm backward".
"""
from __future__ import annotations

from ..backend import GPUKernel, get_array_module, on_cpu
from ..parallel import map_blocks, sum_blocks
from .reductions import BLOCK_BYTES, channel_dot, channel_sum


def channel_matrix(x, gamma, training: bool):
    """x as an (M, C) matrix (a free view: channels are last), after checking gamma and, in training, M >= 2."""
    c = x.shape[-1]
    if gamma.shape != (c,):
        raise ValueError(f"batch_norm: input has {c} channels (shape {tuple(x.shape)}) but gamma has shape "
                         f"{tuple(gamma.shape)}")
    x2 = x.reshape(-1, c)
    if training and x2.shape[0] < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got input {tuple(x.shape)}")
    return x2


def _update_running_stats(running_mean, running_var, mu, var, m: int, momentum: float):
    """In place: r <- (1 - momentum) r + momentum * batch value; the variance unbiased (x M / (M - 1))."""
    running_mean *= 1 - momentum
    running_mean += momentum * mu
    running_var *= 1 - momentum
    running_var += momentum * var * (m / (m - 1))


# --------------------------------------------------------------------------------------------------
# GPU: the same arithmetic in a few fused kernels (backend.GPUKernel). The per-channel sums stay GEMVs;
# everything between them is one kernel per pass: 6 launches forward and 5 backward per layer (the
# generic path took about 34 per layer, counted with bench/gpu_kernels.py).
# --------------------------------------------------------------------------------------------------
_SQUARED_DEVIATION_GPU = GPUKernel("T x, T mu", "T sq", "T d = x - mu; sq = d * d", "scratchnet_bn_sq_dev")
_STATS_GPU = GPUKernel(  # per channel: inv_std, scale and the running statistics (module docstring)
    "T mu, T ssq, T gamma, T m, T eps, T momentum", "T inv_std, T scale, T running_mean, T running_var",
    """T var = ssq / m;
       inv_std = (T)1 / sqrt(var + eps);
       scale = gamma * inv_std;
       running_mean = running_mean * ((T)1 - momentum) + momentum * mu;
       running_var = running_var * ((T)1 - momentum) + momentum * var * (m / (m - (T)1));""",
    "scratchnet_bn_stats")
_APPLY_GPU = GPUKernel("T x, T mu, T scale, T beta", "T out", "out = (x - mu) * scale + beta", "scratchnet_bn_apply")
_DEVIATION_PRODUCT_GPU = GPUKernel("T d, T x, T mu", "T p", "p = d * (x - mu)", "scratchnet_bn_dev_product")
_BACKWARD_COEFFICIENTS_GPU = GPUKernel(
    "T dot, T dbeta, T gamma, T inv_std, T m", "T dgamma, T k, T centred_coef, T shift",
    """dgamma = dot * inv_std;
       k = gamma * inv_std;
       centred_coef = k * inv_std * dgamma / m;
       shift = k * dbeta / m;""",
    "scratchnet_bn_backward_coefficients")
_DX_GPU = GPUKernel("T x, T mu, T d, T k, T centred_coef, T shift", "T dx",
                    "dx = (x - mu) * (-centred_coef) + d * k - shift", "scratchnet_bn_dx")


def _fused_gpu_ok(xp, *arrays) -> bool:
    """The fused kernels need one dtype throughout (their T); mixed dtypes take the generic path."""
    return not on_cpu(xp) and len({a.dtype for a in arrays}) == 1


def _batchnorm_forward_gpu(x2, gamma, beta, running_mean, running_var, training, momentum, eps):
    xp = get_array_module(x2)
    m = x2.shape[0]
    t = x2.dtype.type
    if training:
        mu = channel_sum(x2) / t(m)
        ssq = channel_sum(_SQUARED_DEVIATION_GPU(x2, mu))  # two-pass variance, as on the CPU
        inv_std, scale = xp.empty_like(mu), xp.empty_like(mu)
        _STATS_GPU(mu, ssq, gamma, t(m), t(eps), t(momentum), inv_std, scale, running_mean, running_var)
    else:
        mu = running_mean
        inv_std = t(1) / xp.sqrt(running_var + t(eps))
        scale = gamma * inv_std
    return _APPLY_GPU(x2, mu, scale, beta), mu, inv_std


def _batchnorm_backward_gpu(d2, x2, mu, gamma, inv_std, training, need_dx):
    m = d2.shape[0]
    t = d2.dtype.type
    dbeta = channel_sum(d2)
    dot = channel_sum(_DEVIATION_PRODUCT_GPU(d2, x2, mu))
    dgamma, k, centred_coef, shift = _BACKWARD_COEFFICIENTS_GPU(dot, dbeta, gamma, inv_std, t(m))
    dx = None
    if need_dx:
        dx = _DX_GPU(x2, mu, d2, k, centred_coef, shift) if training else d2 * k
    return dx, dgamma, dbeta


def centre_and_stats(x2, out, running_mean, running_var, training: bool, momentum: float, eps: float):
    """The CPU forward's first passes: x2 - mu into `out` (an (M, C) buffer); returns (mu, inv_std).
    Training: mu and var from the batch (running statistics updated); eval: the running statistics."""
    xp = get_array_module(x2)
    m, row_bytes = x2.shape[0], x2.shape[1] * x2.itemsize
    if training:
        mu = channel_sum(x2) / m

        def centre(lo, hi):
            ob = xp.subtract(x2[lo:hi], mu, out=out[lo:hi])
            return channel_dot(ob, ob)

        # two-pass variance (centre, then square): no cancellation when |mu| >> std
        var = sum_blocks(xp, m, row_bytes, centre, BLOCK_BYTES) / m
        _update_running_stats(running_mean, running_var, mu, var, m, momentum)
    else:
        mu, var = running_mean, running_var
        map_blocks(xp, m, row_bytes, lambda lo, hi: xp.subtract(x2[lo:hi], mu, out=out[lo:hi]), BLOCK_BYTES)
    return mu, 1.0 / xp.sqrt(var + eps)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training: bool,
                      momentum: float = 0.1, eps: float = 1e-5):
    """Returns (out, cache). In training mode updates running_mean/running_var in place.

    Fast form of the formulas above: out = (x - mu) * (gamma * inv_std) + beta in three passes over the
    data (sum; centre into the output buffer and sum squares; scale and shift in place); xhat is not
    stored (backward rebuilds x - mu). On the CPU each pass splits the rows between threads.
    """
    xp = get_array_module(x)
    x2 = channel_matrix(x, gamma, training)
    if _fused_gpu_ok(xp, x2, gamma, beta, running_mean, running_var):
        out, mu, inv_std = _batchnorm_forward_gpu(x2, gamma, beta, running_mean, running_var, training,
                                                  momentum, eps)
        return out.reshape(x.shape), (x2, mu, gamma, inv_std, training)
    m, row_bytes = x2.shape[0], x2.shape[1] * x2.itemsize
    out = xp.empty(x2.shape, dtype=x2.dtype)
    mu, inv_std = centre_and_stats(x2, out, running_mean, running_var, training, momentum, eps)
    scale = gamma * inv_std

    def scale_shift(lo, hi):  # in place: the centred copy becomes the output
        ob = out[lo:hi]
        ob *= scale
        ob += beta

    map_blocks(xp, m, row_bytes, scale_shift, BLOCK_BYTES)
    return out.reshape(x.shape), (x2, mu, gamma, inv_std, training)


def batchnorm_backward(dout, cache, need_dx: bool = True):
    """(dx, dgamma, dbeta); see the module docstring for the formula.

    With centred = x - mu (rebuilt block by block: cheaper than storing xhat) and k = gamma * inv_std:
    dgamma = inv_std * sum(dout * centred),  dx = k * dout - (k * inv_std * dgamma / M) * centred - k * dbeta / M.
    Two passes: the per-channel sums, then dx. On the CPU each pass splits the rows between threads.
    """
    x2, mu, gamma, inv_std, training = cache
    xp = get_array_module(dout)
    c = dout.shape[-1]
    d2 = dout.reshape(-1, c)
    if _fused_gpu_ok(xp, d2, x2, mu, gamma, inv_std):
        dx, dgamma, dbeta = _batchnorm_backward_gpu(d2, x2, mu, gamma, inv_std, training, need_dx)
        return (None if dx is None else dx.reshape(dout.shape)), dgamma, dbeta
    m, row_bytes = d2.shape[0], d2.shape[1] * d2.itemsize

    def sums(lo, hi):  # (sum dout, sum dout * centred) of one block of rows
        db = d2[lo:hi]
        return xp.stack((xp.ones(hi - lo, dtype=db.dtype) @ db, channel_dot(db, x2[lo:hi] - mu)))

    dbeta, dot = sum_blocks(xp, m, row_bytes, sums, BLOCK_BYTES)
    dgamma = dot * inv_std
    dx = None
    if need_dx:
        k = gamma * inv_std
        dx = xp.empty(d2.shape, dtype=d2.dtype)
        if training:
            centred_coef, shift = k * inv_std * dgamma / m, k * dbeta / m

            def grad(lo, hi):
                dxb = xp.subtract(x2[lo:hi], mu, out=dx[lo:hi])
                dxb *= -centred_coef
                dxb += d2[lo:hi] * k
                dxb -= shift
        else:  # running statistics are constants: a per-channel affine map
            def grad(lo, hi):
                xp.multiply(d2[lo:hi], k, out=dx[lo:hi])

        map_blocks(xp, m, row_bytes, grad, BLOCK_BYTES)
        dx = dx.reshape(dout.shape)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------------------------------
# Reference implementation: the module docstring's formulas, one array op per symbol (tests compare).
# --------------------------------------------------------------------------------------------------

def batchnorm_forward_reference(x, gamma, beta, running_mean, running_var, training: bool,
                                momentum: float = 0.1, eps: float = 1e-5):
    """The formulas as written above, one array op per symbol. Returns (out, cache); updates the running stats."""
    xp = get_array_module(x)
    x2 = channel_matrix(x, gamma, training)
    m = x2.shape[0]
    if training:
        mu = x2.mean(axis=0)
        centred = x2 - mu
        var = xp.mean(centred * centred, axis=0)
        _update_running_stats(running_mean, running_var, mu, var, m, momentum)
    else:
        mu, var = running_mean, running_var
        centred = x2 - mu
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = centred * inv_std
    out = xhat * gamma + beta
    cache = (xhat, gamma, inv_std, training)
    return out.reshape(x.shape), cache


def batchnorm_backward_reference(dout, cache, need_dx: bool = True):
    """(dx, dgamma, dbeta) of batchnorm_forward_reference."""
    xhat, gamma, inv_std, training = cache
    c = dout.shape[-1]
    d2 = dout.reshape(-1, c)
    m = d2.shape[0]
    dbeta = d2.sum(axis=0)
    dgamma = (d2 * xhat).sum(axis=0)
    dx = None
    if need_dx:
        if training:
            dx = (gamma * inv_std / m) * (m * d2 - dbeta - xhat * dgamma)
        else:  # running statistics are constants: a per-channel affine map
            dx = d2 * (gamma * inv_std)
        dx = dx.reshape(dout.shape)
    return dx, dgamma, dbeta
