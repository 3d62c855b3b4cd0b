"""Modules: layers that own their parameters, in the spirit of torch.nn but small.

A Module registers Parameters (trainable tensors), buffers (arrays saved with the model but not trained,
e.g. batch norm's running statistics) and child Modules as attributes; `parameters()` and
`state_dict()` walk them in definition order with dotted names ('block1.conv.weight').

Initialisation (documented, since the assignment asks): Conv2d and Linear weights are He/Kaiming normal,
w ~ N(0, 2 / fan_in) with fan_in = kh*kw*C_in (conv) or in_features (linear), which keeps the variance of
activations roughly constant through ReLU layers; biases start at 0; batch norm gamma = 1, beta = 0.
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from .autograd import Tensor, no_grad
from .backend import array_module, backend_of, default_dtype, to_backend
from .io import load_npz, save_npz


class Parameter(Tensor):
    """A Tensor that a Module trains: requires_grad starts on. Switching it off freezes the parameter for a
    while (it gets no gradient, so optimizers skip it; e.g. a bias trained for the first epochs only)."""

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def he_normal(shape, fan_in: int, rng=None, dtype=None):
    """Kaiming/He normal init: N(0, 2/fan_in), drawn on the host from a seeded Generator."""
    dtype = dtype or default_dtype()
    return (_rng(rng).standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


class Module:
    training = True

    def __setattr__(self, name, value):
        if isinstance(value, (Parameter, Module)):
            self.__dict__.setdefault("_children", {})[name] = value
        elif name in self.__dict__.get("_children", {}):
            del self._children[name]
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """An array saved in state_dict and moved by `to()`, but not trained (e.g. running_mean)."""
        names = self.__dict__.setdefault("_buffers", [])
        if name not in names:
            names.append(name)
        object.__setattr__(self, name, array)

    def _buffer_names(self):
        return self.__dict__.get("_buffers", [])

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- walking the tree ------------------------------------------------------------------------
    def named_children(self):
        return [(n, m) for n, m in self.__dict__.get("_children", {}).items() if isinstance(m, Module)]

    def named_parameters(self, prefix=""):
        for name, value in self.__dict__.get("_children", {}).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
            else:
                yield from value.named_parameters(prefix + name + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for name in self._buffer_names():
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child.named_buffers(prefix + name + ".")

    def modules(self):
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # --- devices and saving ----------------------------------------------------------------------
    def to(self, backend: str):
        """Move every parameter and buffer to 'numpy' (host) or 'cupy' (GPU), in place; returns self.

        Move the model before making its optimizer or EMA: their state arrays (momentum, averages) are
        created beside the parameters and do not move with them."""
        array_module(backend)  # fails early, with one clear error, if the backend is unavailable
        for m in self.modules():
            for value in vars(m).values():  # parameters and frozen tensors (e.g. a fixed BN scale)
                if isinstance(value, Tensor):
                    value.data = to_backend(value.data, backend)
                    if value.grad is not None:
                        value.grad = to_backend(value.grad, backend)
            for name in m._buffer_names():
                object.__setattr__(m, name, to_backend(getattr(m, name), backend))
        return self

    @property
    def backend(self) -> str:
        params = self.parameters()
        return backend_of(params[0].data) if params else "numpy"

    def state_dict(self) -> dict:
        """name -> host numpy array, for parameters and buffers."""
        state = {n: to_backend(p.data, "numpy").copy() for n, p in self.named_parameters()}
        state.update({n: to_backend(b, "numpy").copy() for n, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict, strict: bool = True):
        """Copy arrays into parameters/buffers (keeping each one's backend and dtype).

        Missing or unexpected keys (strict) and shape mismatches raise ValueError naming the entries.
        """
        params = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        expected = set(params) | set(buffers)
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict({type(self).__name__}): missing keys {missing}, unexpected keys {unexpected}")
        for name in sorted(expected & set(state)):
            current = params[name].data if name in params else buffers[name]
            new = np.asarray(to_backend(state[name], "numpy"))
            if tuple(new.shape) != tuple(current.shape):
                raise ValueError(f"load_state_dict: '{name}' has shape {tuple(current.shape)} in the model but "
                                 f"{tuple(new.shape)} in the state dict")
            value = to_backend(new.astype(current.dtype), backend_of(current))
            if name in params:
                params[name].data = value
            else:
                owner, attr = self._owner_of(name)
                object.__setattr__(owner, attr, value)
        return self

    def _owner_of(self, dotted):
        *path, attr = dotted.split(".")
        m = self
        for p in path:
            m = m._children[p]
        return m, attr

    def save(self, path):
        """Save state_dict to an .npz file (atomically)."""
        save_npz(path, self.state_dict())

    def load(self, path, strict: bool = True):
        return self.load_state_dict(load_npz(path), strict)

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    def __repr__(self):
        children = "".join(f"\n  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in self.named_children())
        return f"{type(self).__name__}({self.extra_repr()}{children}{chr(10) if children else ''})"

    def extra_repr(self):
        return ""


class BufferRef:
    """A handle on buffer `name` of `module` with the `.data` (and `.dtype`) of a Parameter, read and written
    through the module each time, so it stays valid when load_state_dict or to() replace the array.
    Lets code written for parameters (optim.Lookahead) update buffers in place (e.g. running statistics)."""

    def __init__(self, module: Module, name: str):
        if name not in module._buffer_names():
            raise ValueError(f"BufferRef: {type(module).__name__} has no buffer {name!r}")
        self.module, self.name = module, name

    @property
    def data(self):
        return getattr(self.module, self.name)

    @data.setter
    def data(self, value):
        object.__setattr__(self.module, self.name, value)

    @property
    def dtype(self):
        return self.data.dtype


def state_refs(module: Module) -> list:
    """Everything in module.state_dict(), as handles with `.data`, in its order: the Parameters themselves,
    then a BufferRef per buffer (batch-norm statistics, frozen weights)."""
    refs = [p for _, p in module.named_parameters()]

    def buffers(m):
        refs.extend(BufferRef(m, name) for name in m._buffer_names())
        for _, child in m.named_children():
            buffers(child)
    buffers(module)
    return refs


def freeze(module: Module, name: str) -> Module:
    """Turn parameter `name` of `module` into a buffer: still saved in state_dict and moved by `to()`,
    but no longer trained (e.g. fixed patch-whitening filters)."""
    param = module._children.pop(name)
    if not isinstance(param, Parameter):
        raise TypeError(f"freeze: {type(module).__name__}.{name} is not a Parameter")
    module.register_buffer(name, param.data)
    return module


class Linear(Module):
    """y = x W + b with W (in_features, out_features), He-normal init, zero bias."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=None):
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(he_normal((in_features, out_features), in_features, rng, dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype or default_dtype())) if bias else None

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): input shape {tuple(x.shape)} has "
                             f"{x.shape[-1]} features, weight shape {tuple(self.weight.shape)} expects {self.in_features}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class Conv2d(Module):
    """2-D convolution on NHWC inputs; weight HWIO (k, k, C_in, C_out), He-normal init, zero bias."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, rng=None, dtype=None):
        k = kernel_size
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding = stride, padding
        self.weight = Parameter(he_normal((k, k, in_channels, out_channels), k * k * in_channels, rng, dtype))
        self.bias = Parameter(np.zeros(out_channels, dtype=dtype or default_dtype())) if bias else None

    def forward(self, x):
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, {self.out_channels}, k={self.kernel_size}): input shape "
                             f"{tuple(x.shape)} (NHWC) does not match weight shape {tuple(self.weight.shape)} (HWIO): "
                             f"expected {self.in_channels} input channels")
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class BatchNorm2d(Module):
    """Batch norm over the channels of NHWC features (also works on (N, C)); see kernels/norm.py.

    train_scale=False freezes gamma at 1 (a plain tensor, not a parameter) while beta still trains;
    affine=False freezes both.
    """

    def __init__(self, num_features, momentum=0.1, eps=1e-5, affine=True, train_scale=True, dtype=None):
        dtype = dtype or default_dtype()
        self.num_features, self.momentum, self.eps = num_features, momentum, eps
        ones, zeros = np.ones(num_features, dtype=dtype), np.zeros(num_features, dtype=dtype)
        if affine and train_scale:
            self.weight = Parameter(ones)
        else:
            object.__setattr__(self, "weight", Tensor(ones))  # frozen: not a parameter, not saved
        if affine:
            self.bias = Parameter(zeros)
        else:
            object.__setattr__(self, "bias", Tensor(zeros))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))

    def forward(self, x, activation: str | None = None):
        """Batch norm of x; with activation ('relu' or 'gelu', as Sequential's fusion passes it) the fused
        batch norm + activation op instead."""
        if x.shape[-1] != self.num_features:
            raise ValueError(f"BatchNorm2d({self.num_features}): input shape {tuple(x.shape)} has {x.shape[-1]} "
                             f"channels, expected {self.num_features}")
        if activation is not None:
            return F.batch_norm_act(x, self.weight, self.bias, self.running_mean, self.running_var,
                                    self.training, self.momentum, self.eps, activation)
        return F.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            self.training, self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}"


class ReLU(Module):
    fused_name = "relu"  # what Sequential's batch norm + activation fusion calls it

    def forward(self, x):
        return F.relu(x)


class GELU(Module):
    """GELU, tanh form (see functional.GELU)."""

    fused_name = "gelu"

    def forward(self, x):
        return F.gelu(x)


class MaxPool2d(Module):
    def __init__(self, kernel_size=2, stride=None):
        self.kernel_size, self.stride = kernel_size, stride or kernel_size

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool2d(MaxPool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride)


class GlobalAvgPool2d(Module):
    """(N, H, W, C) -> (N, C): the mean over the whole feature map."""

    def forward(self, x):
        return F.global_avg_pool2d(x)


class Flatten(Module):
    def forward(self, x):
        return F.flatten(x)


class Dropout(Module):
    """Inverted dropout in training mode, identity in eval mode. rng: seed or Generator for the masks."""

    def __init__(self, p=0.5, rng=None):
        self.p, self.rng = p, _rng(rng)

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self):
        return f"p={self.p}"


class Scale(Module):
    """Multiply by a fixed constant (no parameters), e.g. to temper a classifier head's logits."""

    def __init__(self, factor: float):
        self.factor = float(factor)

    def forward(self, x):
        return x * self.factor

    def extra_repr(self):
        return f"{self.factor}"


# Sequential runs a BatchNorm2d followed by a ReLU or GELU as one fused op (kernels/norm_act.py: fewer
# passes over the activations, same maths). False runs every layer on its own, as written (for teaching,
# and to compare the two).
FUSE_BN_ACTIVATION = True
# Sequential runs a ReLU directly followed by a MaxPool2d as the pool, then the ReLU: max(relu(a), relu(b))
# = relu(max(a, b)) because ReLU never decreases, so the ReLU touches a quarter of the values (2x2 pool),
# with the same outputs and gradients, bit for bit. False runs them as written.
COMMUTE_RELU_MAXPOOL = True


class Sequential(Module):
    """Layers applied in order; children are named '0', '1', ... unless given as (name, module) pairs.

    With FUSE_BN_ACTIVATION, a BatchNorm2d directly followed by a ReLU or GELU runs as one fused op,
    called through the batch norm layer (the activation layer's own forward is then not called): the same
    forward values, a backward that differs in float32 rounding only. With COMMUTE_RELU_MAXPOOL, a ReLU
    directly followed by a MaxPool2d runs after it instead: the same values and gradients, less work."""

    def __init__(self, *layers):
        self.layers = []
        for i, layer in enumerate(layers):
            name, module = layer if isinstance(layer, tuple) else (str(i), layer)
            setattr(self, name, module)
            self.layers.append(module)

    def forward(self, x):
        for group in self.run_groups():
            layer = self.layers[group[0]]
            if len(group) == 1:
                x = layer(x)
            elif group[0] > group[1]:               # a ReLU and the max pool after it: the pool runs first
                x = self.layers[group[1]](layer(x))
            else:
                x = layer(x, activation=self.layers[group[1]].fused_name)
        return x

    def run_groups(self) -> list[list[int]]:
        """The layers' indices as forward runs them: [i] alone, [i, i + 1] for a batch norm fused with the
        activation after it (FUSE_BN_ACTIVATION), or [i + 1, i] for a ReLU run after the max pool that
        follows it (COMMUTE_RELU_MAXPOOL)."""
        groups, layers, i = [], self.layers, 0
        while i < len(layers):
            pair = i + 1 < len(layers)
            if pair and FUSE_BN_ACTIVATION and type(layers[i]) is BatchNorm2d and type(layers[i + 1]) in (ReLU, GELU):
                groups.append([i, i + 1])
            elif pair and COMMUTE_RELU_MAXPOOL and type(layers[i]) is ReLU and type(layers[i + 1]) is MaxPool2d:
                groups.append([i + 1, i])           # not AvgPool2d: a mean does not commute with ReLU
            else:
                groups.append([i])
            i += len(groups[-1])
        return groups

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)


def layer_table(model: Sequential, input_shape=(32, 32, 3)) -> list[dict]:
    """One row per layer of a Sequential: output shape (for one image, NHWC), trained parameters, fixed
    (frozen) weights, and multiply-adds x 2 (FLOPs) of its convolution or matrix product for one image.
    Elementwise layers (activations, batch norm, pooling) are counted as 0 FLOPs: their cost is memory
    traffic, not arithmetic. Runs one forward pass on a zero image in eval mode.
    """
    was_training = model.training
    model.eval()
    rows, x = [], Tensor(np.zeros((1,) + tuple(input_shape), dtype=np.float32))
    try:
        with no_grad():
            for name, layer in model.named_children():
                x = layer(x)
                flops = 0
                if isinstance(layer, Conv2d):
                    kh, kw, c_in, c_out = layer.weight.shape
                    flops = 2 * x.shape[1] * x.shape[2] * kh * kw * c_in * c_out
                elif isinstance(layer, Linear):
                    flops = 2 * layer.weight.shape[0] * layer.weight.shape[1]
                params = list(layer.parameters())
                trained = sum(int(p.data.size) for p in params)
                weight = getattr(layer, "weight", None) if isinstance(layer, (Conv2d, Linear)) else None
                frozen = weight is not None and not any(weight is p for p in params)  # freeze(): a plain array
                fixed = int(np.size(weight.data if isinstance(weight, Tensor) else weight)) if frozen else 0
                rows.append({"layer": name, "type": type(layer).__name__, "output_shape": list(x.shape[1:]),
                             "parameters": trained, "fixed_weights": fixed, "flops": int(flops)})
    finally:
        model.train(was_training)
    return rows
