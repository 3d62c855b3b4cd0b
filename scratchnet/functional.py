"""Ops on Tensors: each a `Function` with forward/backward on arrays (see autograd.py).

The small elementwise ops carry their math inline; the layer ops (conv, pooling, batch norm,
cross-entropy) delegate to the array kernels in `scratchnet.kernels`.
"""
from __future__ import annotations

import numpy as np

from .autograd import Function, Tensor, as_tensor
from .backend import get_array_module
from .kernels import activation as _act
from .kernels import conv as _conv
from .kernels import loss as _loss
from .kernels import norm as _norm
from .kernels import norm_act as _norm_act
from .kernels import pool as _pool


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the gradient of broadcasting a value is the sum over the copies."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def _other(x, like: Tensor) -> Tensor:
    """Python numbers combined with a tensor take the tensor's dtype (no silent float64 upcast)."""
    if isinstance(x, Tensor):
        return x
    xp = get_array_module(like.data)
    return Tensor(xp.asarray(x, dtype=like.dtype))


def _pair(a, b):
    if isinstance(a, Tensor):
        return a, _other(b, a)
    b = as_tensor(b)
    return _other(a, b), b


# ----------------------------------------------------------------------------------- elementwise
class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(g, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(-g, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return unbroadcast(g * self.b, self.a.shape), unbroadcast(g * self.a, self.b.shape)


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        ga = unbroadcast(g / self.b, self.a.shape)
        gb = unbroadcast(-g * self.a / (self.b * self.b), self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Pow(Function):
    """a ** b: d/da = b a^(b-1); d/db = a^b log a (only computed when b requires a gradient)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a ** b
        return self.out

    def backward(self, g):
        xp = get_array_module(g)
        ga = unbroadcast(g * self.b * self.a ** (self.b - 1), self.a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(g * self.out * xp.log(self.a), self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Exp(Function):
    def forward(self, a):
        self.out = get_array_module(a).exp(a)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return get_array_module(a).log(a)

    def backward(self, g):
        return g / self.a


class ReLU(Function):
    """relu(x) = max(x, 0); gradient 1 where x > 0, else 0 (0 at x == 0, as PyTorch). Kernel: kernels.activation."""

    def forward(self, x):
        out, self.out = _act.relu_forward(x)
        return out

    def backward(self, g):
        return _act.relu_backward(g, self.out)


class GELU(Function):
    """gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh form. Kernel: kernels.activation."""

    def forward(self, x):
        out, self.cache = _act.gelu_forward(x)
        return out

    def backward(self, g):
        return _act.gelu_backward(g, self.cache)


class Step(Function):
    """Hard threshold step(a) = 1 if a > 0 else 0; exact forward. Its true gradient is 0 almost everywhere,
    so training uses a surrogate in backward:
      'ste'      straight-through: d step / da := 1 for |a| <= 1, else 0
      'sigmoid'  the slope of a steep sigmoid: beta * s(beta a) (1 - s(beta a))
      None       the true gradient, 0
    """

    def forward(self, a, surrogate=None, beta: float = 1.0):
        if surrogate not in (None, "ste", "sigmoid"):
            raise ValueError(f"step: surrogate must be None, 'ste' or 'sigmoid', got {surrogate!r}")
        self.a, self.surrogate, self.beta = a, surrogate, beta
        return (a > 0).astype(a.dtype)

    def backward(self, g):
        xp = get_array_module(g)
        if self.surrogate == "ste":
            return g * (xp.abs(self.a) <= 1)
        if self.surrogate == "sigmoid":
            s = 1.0 / (1.0 + xp.exp(-self.beta * self.a))
            return g * (self.beta * s * (1 - s))
        return xp.zeros_like(g)


def add(a, b):
    return Add.apply(*_pair(a, b))


def sub(a, b):
    return Sub.apply(*_pair(a, b))


def mul(a, b):
    return Mul.apply(*_pair(a, b))


def div(a, b):
    return Div.apply(*_pair(a, b))


def neg(a):
    return Neg.apply(a)


def pow(a, b):  # noqa: A001 - mirrors the operator
    return Pow.apply(*_pair(a, b))


def exp(a):
    return Exp.apply(a)


def log(a):
    return Log.apply(a)


def relu(x):
    return ReLU.apply(x)


def gelu(x):
    return GELU.apply(x)


def step(x, surrogate=None, beta: float = 1.0):
    return Step.apply(x, surrogate=surrogate, beta=beta)


# ------------------------------------------------------------------------------ shape and reduce
class MatMul(Function):
    """a @ b (2-D, batched stacks, or 1-D vectors as in numpy): da = g @ b^T, db = a^T @ g.

    A 1-D operand is treated as a row (a) or column (b) vector, and its gradient is reshaped back.
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        xp = get_array_module(g)
        if self.a.ndim == 1 and self.b.ndim == 1:  # dot product: a scalar output
            return g * self.b, g * self.a
        a = self.a[None, :] if self.a.ndim == 1 else self.a
        b = self.b[:, None] if self.b.ndim == 1 else self.b
        if self.a.ndim == 1:
            g = xp.expand_dims(g, -2)
        if self.b.ndim == 1:
            g = xp.expand_dims(g, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = unbroadcast(g @ xp.swapaxes(b, -1, -2), a.shape).reshape(self.a.shape)
        if self.needs_input_grad[1]:
            gb = unbroadcast(xp.swapaxes(a, -1, -2) @ g, b.shape).reshape(self.b.shape)
        return ga, gb


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape)


class Transpose(Function):
    def forward(self, a, axes=None):
        out = a.transpose(axes)  # numpy checks the axes (range, repeats) first
        # normalised to 0..ndim-1: argsort (the inverse permutation in backward) needs them non-negative
        self.axes = None if axes is None else tuple(ax % a.ndim for ax in axes)
        return out

    def backward(self, g):
        if self.axes is None:
            return g.transpose()
        return g.transpose(np.argsort(self.axes))


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    def backward(self, g):
        xp = get_array_module(g)
        if self.axis is not None and not self.keepdims:
            g = xp.expand_dims(g, _normalise_axes(self.axis, len(self.shape)))
        return xp.broadcast_to(g, self.shape).copy()


class GetItem(Function):
    """a[index]; the gradient is scattered back (added, so repeated fancy indices accumulate)."""

    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, g):
        xp = get_array_module(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        xp.add.at(out, self.index, g)  # unbuffered: out[i] += g for every occurrence of i
        return out


class Stack(Function):
    """Stack n tensors of one shape along a new axis."""

    def forward(self, *arrays, axis=0):
        self.axis = axis
        return get_array_module(*arrays).stack(arrays, axis=axis)

    def backward(self, g):
        xp = get_array_module(g)
        return tuple(xp.take(g, i, axis=self.axis) for i in range(g.shape[self.axis]))


def _normalise_axes(axis, ndim):
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(sorted(a % ndim for a in axes))


def matmul(a, b):
    return MatMul.apply(*_pair(a, b))


def reshape(a, shape):
    return Reshape.apply(a, shape=tuple(shape))


def transpose(a, axes=None):
    return Transpose.apply(a, axes=None if axes is None else tuple(axes))


def sum(a, axis=None, keepdims=False):  # noqa: A001
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a, axis=None, keepdims=False):
    a = as_tensor(a)
    if axis is None:
        count = a.size
    else:
        count = int(np.prod([a.shape[i] for i in _normalise_axes(axis, a.ndim)]))
    return sum(a, axis=axis, keepdims=keepdims) * (1.0 / count)


def getitem(a, index):
    return GetItem.apply(a, index=index)


def stack(tensors, axis=0):
    return Stack.apply(*tensors, axis=axis)


def flatten(x):
    """(N, ...) -> (N, prod(...))."""
    return reshape(x, (x.shape[0], -1))


# ----------------------------------------------------------------------------------------- layers
class Linear(Function):
    """y = x W + b. x (N, in), W (in, out), b (out,). dx = g W^T, dW = x^T g, db = sum_n g."""

    def forward(self, x, w, b=None):
        if x.ndim != 2 or x.shape[1] != w.shape[0]:
            raise ValueError(f"linear: input shape {tuple(x.shape)} does not match weight shape {tuple(w.shape)} "
                             f"(expected input (batch, {w.shape[0]}))")
        self.x, self.w, self.has_bias = x, w, b is not None
        out = x @ w
        if b is not None:
            out += b
        return out

    def backward(self, g):
        dx = g @ self.w.T if self.needs_input_grad[0] else None
        dw = self.x.T @ g if self.needs_input_grad[1] else None
        return (dx, dw, g.sum(axis=0)) if self.has_bias else (dx, dw)


class Conv2d(Function):
    def forward(self, x, w, b=None, stride=1, padding=0):
        self.has_bias = b is not None
        out, self.cache = _conv.conv2d_forward(x, w, b, stride, padding, keep_for_dw=self.needs_input_grad[1])
        return out

    def backward(self, g):
        dx, dw, db = _conv.conv2d_backward(g, self.cache, need_dx=self.needs_input_grad[0],
                                           need_dw=self.needs_input_grad[1],
                                           need_db=self.has_bias and self.needs_input_grad[2])
        return (dx, dw, db) if self.has_bias else (dx, dw)


class MaxPool2d(Function):
    def forward(self, x, kernel=2, stride=None):
        out, self.cache = _pool.max_pool2d_forward(x, kernel, stride)
        return out

    def backward(self, g):
        return _pool.max_pool2d_backward(g, self.cache)


class AvgPool2d(Function):
    def forward(self, x, kernel=2, stride=None):
        out, self.cache = _pool.avg_pool2d_forward(x, kernel, stride)
        return out

    def backward(self, g):
        return _pool.avg_pool2d_backward(g, self.cache)


class GlobalAvgPool2d(Function):
    def forward(self, x):
        out, self.x_shape = _pool.global_avg_pool_forward(x)
        return out

    def backward(self, g):
        return _pool.global_avg_pool_backward(g, self.x_shape)


class BatchNorm(Function):
    def forward(self, x, gamma, beta, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
        out, self.cache = _norm.batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)
        return out

    def backward(self, g):
        dx, dgamma, dbeta = _norm.batchnorm_backward(g, self.cache, need_dx=self.needs_input_grad[0])
        return dx, dgamma, dbeta


class BatchNormAct(Function):
    """Batch norm then ReLU or GELU as one fused op (kernels/norm_act.py); the same maths as the two."""

    def forward(self, x, gamma, beta, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5,
                activation="relu"):
        out, self.cache = _norm_act.batchnorm_act_forward(x, gamma, beta, running_mean, running_var, training,
                                                          momentum, eps, activation)
        return out

    def backward(self, g):
        return _norm_act.batchnorm_act_backward(g, self.cache, need_dx=self.needs_input_grad[0])


class LogSoftmax(Function):
    def forward(self, z, axis=-1):
        out, self.cache = _loss.log_softmax_forward(z, axis)
        return out

    def backward(self, g):
        return _loss.log_softmax_backward(g, self.cache)


class CrossEntropy(Function):
    def forward(self, logits, labels, label_smoothing=0.0, reduction="mean"):
        loss, self.cache = _loss.cross_entropy_forward(logits, labels, label_smoothing, reduction)
        return loss

    def backward(self, g):
        return _loss.cross_entropy_backward(g, self.cache), None


class Dropout(Function):
    """out = x * mask / (1 - p); mask ~ Bernoulli(1 - p). A given `mask` makes it deterministic (for checks)."""

    def forward(self, x, mask=None, p=0.5):
        self.scaled_mask = mask.astype(x.dtype) * (1.0 / (1.0 - p))
        return x * self.scaled_mask

    def backward(self, g):
        return g * self.scaled_mask


def linear(x, w, b=None):
    return Linear.apply(x, w, b) if b is not None else Linear.apply(x, w)


def conv2d(x, w, b=None, stride: int = 1, padding: int = 0):
    """NHWC input, HWIO weight; see kernels/conv.py."""
    if b is None:
        return Conv2d.apply(x, w, stride=stride, padding=padding)
    return Conv2d.apply(x, w, b, stride=stride, padding=padding)


def max_pool2d(x, kernel: int = 2, stride: int | None = None):
    return MaxPool2d.apply(x, kernel=kernel, stride=stride)


def avg_pool2d(x, kernel: int = 2, stride: int | None = None):
    return AvgPool2d.apply(x, kernel=kernel, stride=stride)


def global_avg_pool2d(x):
    return GlobalAvgPool2d.apply(x)


def batch_norm(x, gamma, beta, running_mean, running_var, training: bool, momentum: float = 0.1, eps: float = 1e-5):
    """running_mean/running_var are arrays, updated in place in training mode."""
    return BatchNorm.apply(x, gamma, beta, running_mean=running_mean, running_var=running_var,
                           training=training, momentum=momentum, eps=eps)


def batch_norm_act(x, gamma, beta, running_mean, running_var, training: bool, momentum: float = 0.1,
                   eps: float = 1e-5, activation: str = "relu"):
    """act(batch_norm(x)) in one fused op, activation 'relu' or 'gelu'; running stats as in batch_norm."""
    return BatchNormAct.apply(x, gamma, beta, running_mean=running_mean, running_var=running_var,
                              training=training, momentum=momentum, eps=eps, activation=activation)


def log_softmax(z, axis: int = -1):
    return LogSoftmax.apply(z, axis=axis)


def softmax(z, axis: int = -1):
    return exp(log_softmax(z, axis))


def cross_entropy(logits, labels, label_smoothing: float = 0.0, reduction: str = "mean"):
    """Softmax cross-entropy, the mean over the batch (reduction 'mean') or the sum ('sum', as torch's
    reduction='sum': per-example hyper-parameters); labels are integer class ids (a Tensor or array)."""
    labels = labels.data if isinstance(labels, Tensor) else labels
    return CrossEntropy.apply(logits, Tensor(labels), label_smoothing=label_smoothing, reduction=reduction)


def dropout(x, p: float = 0.5, training: bool = True, rng=None, mask=None):
    """Inverted dropout. rng: numpy Generator (masks are drawn on the host, so numpy and cupy runs agree)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    x = as_tensor(x)
    if mask is None:
        rng = np.random.default_rng() if rng is None else rng
        mask = rng.random(x.shape) >= p
        xp = get_array_module(x.data)
        mask = xp.asarray(mask)
    return Dropout.apply(x, mask=mask, p=p)
