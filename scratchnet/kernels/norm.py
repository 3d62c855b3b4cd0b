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

from ..backend import get_array_module


def _channel_matrix(x, gamma, training: bool):
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


def _channel_sum(x2):
    """Per-channel sum of an (M, C) matrix as ones @ x2: a BLAS GEMV, about 4x faster than x2.sum(axis=0)."""
    xp = get_array_module(x2)
    return xp.ones(x2.shape[0], dtype=x2.dtype) @ x2


def _channel_dot(a2, b2):
    """sum_m a[m, c] * b[m, c] per channel, without materialising the (M, C) product."""
    xp = get_array_module(a2)
    return xp.einsum("mc,mc->c", a2, b2)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training: bool,
                      momentum: float = 0.1, eps: float = 1e-5):
    """Returns (out, cache). In training mode updates running_mean/running_var in place.

    Fast form of the formulas above: out = (x - mu) * (gamma * inv_std) + beta in three passes over the
    data, the centred copy reused as the output buffer; xhat is not stored (backward rebuilds x - mu).
    """
    xp = get_array_module(x)
    x2 = _channel_matrix(x, gamma, training)
    m = x2.shape[0]
    if training:
        mu = _channel_sum(x2) / m
        out = x2 - mu
        var = _channel_dot(out, out) / m  # two-pass variance: no cancellation when |mu| >> std
        _update_running_stats(running_mean, running_var, mu, var, m, momentum)
    else:
        mu, var = running_mean, running_var
        out = x2 - mu
    inv_std = 1.0 / xp.sqrt(var + eps)
    out *= gamma * inv_std  # in place: the centred copy becomes the output
    out += beta
    return out.reshape(x.shape), (x2, mu, gamma, inv_std, training)


def batchnorm_backward(dout, cache, need_dx: bool = True):
    """(dx, dgamma, dbeta); see the module docstring for the formula.

    With centred = x - mu (rebuilt: one pass, cheaper than storing xhat) and k = gamma * inv_std:
    dgamma = inv_std * sum(dout * centred),  dx = k * dout - (k * inv_std * dgamma / M) * centred - k * dbeta / M.
    """
    x2, mu, gamma, inv_std, training = cache
    c = dout.shape[-1]
    d2 = dout.reshape(-1, c)
    m = d2.shape[0]
    dbeta = _channel_sum(d2)
    centred = x2 - mu
    dgamma = _channel_dot(d2, centred) * inv_std
    dx = None
    if need_dx:
        k = gamma * inv_std
        if training:
            centred *= -k * inv_std * dgamma / m  # in place: centred becomes the xhat * dgamma term
            centred += d2 * k
            centred -= k * dbeta / m
            dx = centred
        else:  # running statistics are constants: a per-channel affine map
            dx = d2 * k
        dx = dx.reshape(dout.shape)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------------------------------
# Reference implementation: the module docstring's formulas, one array op per symbol (tests compare).
# --------------------------------------------------------------------------------------------------

def batchnorm_forward_reference(x, gamma, beta, running_mean, running_var, training: bool,
                                momentum: float = 0.1, eps: float = 1e-5):
    """The formulas as written above, one array op per symbol. Returns (out, cache); updates the running stats."""
    xp = get_array_module(x)
    x2 = _channel_matrix(x, gamma, training)
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
