"""Reverse-mode automatic differentiation, small enough to read in one sitting.

A `Tensor` holds an array (`.data`, numpy or cupy) and, after `backward()`, its gradient (`.grad`).
Every differentiable op is a `Function` subclass with two methods on plain arrays:

    forward(self, *arrays, **options) -> out_array      # saves what backward needs on `self`
    backward(self, grad_out) -> (grad_input_0, ...)     # one gradient per input, None where not needed

`Function.apply(*tensors)` runs forward and, while gradients are enabled and some input requires one,
records the call as a node of the graph: the output tensor points back to its Function, which points
back to its input tensors. `Tensor.backward()` visits those nodes in reverse topological order, hands
each node the gradient of its output, and adds up the gradients a tensor receives from every place it
was used (the multivariate chain rule: a value used twice gets the sum of both paths' gradients).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .backend import default_dtype, get_array_module

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Within this block no graph is recorded (evaluation, optimizer updates): less memory, less time."""
    global _grad_enabled
    saved, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = saved


def is_grad_enabled() -> bool:
    return _grad_enabled


def _as_array(data, dtype=None):
    """Wrap Python numbers/lists as arrays of the default float dtype; keep numpy/cupy arrays (and numpy
    scalars, e.g. a float64 array's .sum()) as they are."""
    if isinstance(data, np.generic):  # numpy's full reductions return scalars: keep their dtype, as for arrays
        data = np.asarray(data)
    xp = get_array_module(data)
    if isinstance(data, xp.ndarray):
        return data if dtype is None else data.astype(dtype, copy=False)
    arr = np.asarray(data)
    if dtype is not None:
        return arr.astype(dtype)
    if arr.dtype.kind in "fc" or arr.dtype.kind in "biu" and arr.ndim == 0:
        # Python floats would become float64 here: new values take the library's default float dtype.
        return arr.astype(default_dtype())
    return arr


class Tensor:
    """An array plus the bookkeeping for backprop.

    data: the array (numpy.ndarray or cupy.ndarray).
    grad: an array of the same shape after backward(), else None.
    requires_grad: whether gradients flow into this tensor.
    """

    __array_priority__ = 1000  # so numpy_array * tensor calls Tensor.__rmul__, not numpy's broadcasting

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._creator: Function | None = None  # the Function whose output this is (None for leaves)

    # --- plain array facts -------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{flag})"

    def numpy(self):
        """A host numpy copy of the data (works for cupy-backed tensors too)."""
        from .backend import to_numpy
        return to_numpy(self.data)

    def item(self):
        return self.data.item()

    def detach(self) -> "Tensor":
        """The same data, cut off from the graph."""
        return Tensor(self.data)

    def zero_grad(self):
        self.grad = None

    # --- backprop ----------------------------------------------------------------------------------
    def backward(self, grad=None):
        """Backpropagate from this tensor: fill `.grad` of every leaf tensor that requires a gradient.

        grad: d(final)/d(self); defaults to 1 for a scalar. Gradients of leaves accumulate across calls
        (as in PyTorch), so call `optimizer.zero_grad()` between steps.
        """
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward() without a gradient needs a scalar; this tensor has shape {self.shape}")
            grad = xp.ones_like(self.data)
        grads = {id(self): grad}  # gradient waiting at each tensor of the graph, by id

        for tensor in _topological_order(self):
            g = grads.pop(id(tensor), None)
            if g is None:
                continue
            fn = tensor._creator
            if fn is None:  # a leaf: keep its gradient
                if tensor.requires_grad:
                    tensor.grad = g if tensor.grad is None else tensor.grad + g
                continue
            input_grads = fn.backward(g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for inp, ig in zip(fn.inputs, input_grads):
                if ig is None or not inp.requires_grad:
                    continue
                if ig.shape != inp.shape:
                    raise RuntimeError(f"{type(fn).__name__}.backward returned a gradient of shape {ig.shape} "
                                       f"for an input of shape {inp.shape}")
                key = id(inp)
                grads[key] = ig if key not in grads else grads[key] + ig
            fn.release()  # the graph is used once: free the arrays saved for backward

    # --- operators (the ops themselves live in functional.py) --------------------------------------
    def __add__(self, other):
        from . import functional as F
        return F.add(self, other)

    __radd__ = __add__

    def __sub__(self, other):
        from . import functional as F
        return F.sub(self, other)

    def __rsub__(self, other):
        from . import functional as F
        return F.sub(other, self)

    def __mul__(self, other):
        from . import functional as F
        return F.mul(self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        from . import functional as F
        return F.div(self, other)

    def __rtruediv__(self, other):
        from . import functional as F
        return F.div(other, self)

    def __neg__(self):
        from . import functional as F
        return F.neg(self)

    def __pow__(self, exponent):
        from . import functional as F
        return F.pow(self, exponent)

    def __rpow__(self, base):
        from . import functional as F
        return F.pow(base, self)

    def __matmul__(self, other):
        from . import functional as F
        return F.matmul(self, other)

    def __getitem__(self, index):
        from . import functional as F
        return F.getitem(self, index)

    def reshape(self, *shape):
        from . import functional as F
        return F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes):
        from . import functional as F
        return F.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))

    @property
    def T(self):
        return self.transpose()

    def sum(self, axis=None, keepdims=False):
        from . import functional as F
        return F.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        from . import functional as F
        return F.mean(self, axis=axis, keepdims=keepdims)

    def exp(self):
        from . import functional as F
        return F.exp(self)

    def log(self):
        from . import functional as F
        return F.log(self)

    def relu(self):
        from . import functional as F
        return F.relu(self)


def _topological_order(root: Tensor):
    """Tensors of the graph behind `root`, each before every tensor it was computed from.

    Iterative depth-first search (a long RNN unroll would overflow Python's recursion limit).
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, children_done = stack.pop()
        if children_done:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        if tensor._creator is not None:
            for inp in tensor._creator.inputs:
                if inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    order.reverse()
    return order


def as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


class Function:
    """One differentiable op: subclasses define forward/backward on arrays (see the module docstring).

    Inside forward, `self.needs_input_grad[i]` tells whether input i wants a gradient, so backward can
    skip work nobody needs (e.g. the gradient of the image in a network's first conv).
    """

    inputs: tuple = ()
    needs_input_grad: tuple = ()

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def release(self):
        """Drop references held for backward (inputs and saved arrays) once backward has run."""
        self.__dict__.clear()

    @classmethod
    def apply(cls, *inputs, **options) -> Tensor:
        tensors = tuple(as_tensor(x) for x in inputs)
        fn = cls()
        fn.needs_input_grad = tuple(t.requires_grad for t in tensors)
        record = _grad_enabled and any(fn.needs_input_grad)
        if not record:
            fn.needs_input_grad = (False,) * len(tensors)
        out = Tensor(fn.forward(*(t.data for t in tensors), **options))
        if record:
            out.requires_grad = True
            out._creator = fn
            fn.inputs = tensors
        return out
