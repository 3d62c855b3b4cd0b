"""Numerically stable log-softmax and softmax cross-entropy (with optional label smoothing).

log_softmax(z)_k = z_k - logsumexp(z), computed as (z_k - max z) - log(sum_j exp(z_j - max z)):
subtracting the max changes nothing mathematically but keeps exp() from overflowing (exp(1000) = inf)
and keeps the largest term exactly exp(0) = 1, so the log never sees 0.
"""
from __future__ import annotations

from ..backend import get_array_module


def log_softmax_forward(z, axis: int = -1):
    """Returns (log_softmax(z), cache). z (..., K)."""
    xp = get_array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return out, (out, axis)


def log_softmax_backward(dout, cache):
    """dz = dout - softmax(z) * sum(dout)   (the Jacobian of log-softmax applied to dout)."""
    out, axis = cache
    xp = get_array_module(dout)
    return dout - xp.exp(out) * dout.sum(axis=axis, keepdims=True)


def smoothed_targets(labels, num_classes: int, label_smoothing: float, dtype):
    """q = (1 - eps) * onehot(labels) + eps / K  (PyTorch's definition of label smoothing)."""
    xp = get_array_module(labels)
    onehot = labels[:, None] == xp.arange(num_classes)  # a comparison, not a scatter: one kernel on a GPU
    return (onehot * (1.0 - label_smoothing) + label_smoothing / num_classes).astype(dtype, copy=False)


def cross_entropy_forward(logits, labels, label_smoothing: float = 0.0, reduction: str = "mean"):
    """Mean (reduction 'mean') or sum ('sum') over the batch of -sum_k q_k log softmax(logits)_k.
    logits (N, K), labels (N,) ints."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (batch, classes), got shape {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: labels must have shape ({logits.shape[0]},) to match logits "
                         f"{tuple(logits.shape)}, got {tuple(labels.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r}")
    xp = get_array_module(logits)
    labels = xp.asarray(labels)  # host labels with GPU logits: moved to the logits' device
    if labels.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: labels must be integers (class indices), got dtype {labels.dtype}")
    n, k = logits.shape
    if labels.size and bool(((labels < 0) | (labels >= k)).any()):  # one device->host read per step
        raise ValueError(f"cross_entropy: labels must lie in [0, {k - 1}], got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    logp, _ = log_softmax_forward(logits)
    q = smoothed_targets(labels, k, label_smoothing, logits.dtype)
    loss = -(q * logp).sum()
    if reduction == "mean":
        loss = loss / n
    return xp.asarray(loss, dtype=logits.dtype), (logp, q, reduction)


def cross_entropy_backward(dloss, cache):
    """dlogits = dloss * (softmax(logits) - q) / N ('mean'), or without the / N ('sum')."""
    logp, q, reduction = cache
    xp = get_array_module(logp)
    if reduction == "sum":
        return (xp.exp(logp) - q) * dloss
    return (xp.exp(logp) - q) * (dloss / logp.shape[0])
