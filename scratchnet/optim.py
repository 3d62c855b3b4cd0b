"""Optimizers, learning-rate schedules and gradient clipping (semantics match torch.optim).

Every optimizer updates `param.data` in place from `param.grad`, under no graph recording.
"""
from __future__ import annotations

import math

from .backend import GPUKernel, get_array_module, on_cpu


class Optimizer:
    def __init__(self, params, lr: float):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.lr = lr
        self.base_lr = lr
        self.state = [{} for _ in self.params]  # per-parameter buffers (momentum, Adam moments)
        self.steps = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.steps += 1
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self._update(p, p.grad, state)

    def _update(self, p, g, state):
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Arrays and counters needed to resume training exactly (host numpy arrays)."""
        from .backend import to_numpy
        out = {"steps": self.steps, "lr": self.lr}
        for i, st in enumerate(self.state):
            for k, v in st.items():
                out[f"{i}.{k}"] = to_numpy(v)
        return out

    def load_state_dict(self, state: dict):
        from .backend import backend_of, to_backend
        self.steps, self.lr = int(state["steps"]), float(state["lr"])
        self.state = [{} for _ in self.params]
        for key, value in state.items():
            if key in ("steps", "lr"):
                continue
            i, name = key.split(".", 1)
            p = self.params[int(i)]
            self.state[int(i)][name] = to_backend(value.astype(p.dtype), backend_of(p.data))


class SGD(Optimizer):
    """SGD with momentum, Nesterov and (L2, coupled) weight decay, as torch.optim.SGD:
        g <- g + wd * p;  buf <- mu * buf + g (buf = g at the first step);
        step = g + mu * buf (Nesterov) or buf;  p <- p - lr * step
    """

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay

    def _update(self, p, g, state):
        if self.momentum and not on_cpu(get_array_module(g)) and g.dtype == p.data.dtype:
            return self._update_gpu(p, g, state)  # the fused kernel has one dtype T; mixed ones go below
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if self.momentum:
            buf = state.get("momentum")
            if buf is None:
                buf = state["momentum"] = g.copy()
            else:
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * g

    # The update above as one GPU kernel (8 launches per parameter -> 1); `first`: buf starts as d.
    _SGD_GPU = GPUKernel(
        "T g, T lr, T wd, T mu, bool nesterov, bool first", "T p, T buf",
        """T d = g + wd * p;
           T b = first ? d : mu * buf + d;
           buf = b;
           p = p - lr * (nesterov ? d + mu * b : b);""",
        "scratchnet_sgd_momentum")

    def _update_gpu(self, p, g, state):
        buf = state.get("momentum")
        first = buf is None
        if first:
            buf = state["momentum"] = get_array_module(g).empty_like(p.data)
        t = p.data.dtype.type  # scalars as the parameters' dtype, so that T is unambiguous
        self._SGD_GPU(g, t(self.lr), t(self.weight_decay), t(self.momentum), bool(self.nesterov), first, p.data, buf)


class Adam(Optimizer):
    """Adam (and AdamW with decoupled=True), as torch.optim.Adam/AdamW:
        m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    weight decay: Adam adds wd*p to g; AdamW shrinks p by lr*wd*p before the update.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay, self.decoupled = betas, eps, weight_decay, decoupled

    def _update(self, p, g, state):
        xp = get_array_module(p.data)
        b1, b2 = self.betas
        if self.weight_decay and self.decoupled:
            p.data *= 1 - self.lr * self.weight_decay
        elif self.weight_decay:
            g = g + self.weight_decay * p.data
        if "m" not in state:
            state["m"], state["v"] = xp.zeros_like(p.data), xp.zeros_like(p.data)
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        t = self.steps
        denom = xp.sqrt(v / (1 - b2 ** t)) + self.eps
        p.data -= (self.lr / (1 - b1 ** t)) * m / denom


def AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):  # noqa: N802 - a class-like factory
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""
    return Adam(params, lr, betas, eps, weight_decay, decoupled=True)


# ---------------------------------------------------------------------------------- schedules
class Schedule:
    """Maps a step number (0-based) to a learning-rate multiplier; `apply(opt, step)` sets opt.lr."""

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def apply(self, optimizer: Optimizer, step: int) -> float:
        optimizer.lr = optimizer.base_lr * self.factor(step)
        return optimizer.lr


class StepLR(Schedule):
    """Multiply by gamma every `every` steps."""

    def __init__(self, every: int, gamma: float = 0.1):
        self.every, self.gamma = every, gamma

    def factor(self, step):
        return self.gamma ** (step // self.every)


class CosineLR(Schedule):
    """Cosine decay from 1 to `final` over `total` steps."""

    def __init__(self, total: int, final: float = 0.0):
        self.total, self.final = total, final

    def factor(self, step):
        t = min(step, self.total) / max(self.total, 1)
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * t))


class WarmupLinear(Schedule):
    """Linear warm-up from `start` to 1 over `warmup` steps, then linear decay to `final` at `total` steps."""

    def __init__(self, warmup: int, total: int, start: float = 0.0, final: float = 0.0):
        self.warmup, self.total, self.start, self.final = warmup, total, start, final

    def factor(self, step):
        if step < self.warmup:
            return self.start + (1 - self.start) * step / self.warmup
        t = (step - self.warmup) / max(self.total - self.warmup, 1)
        return 1 + (self.final - 1) * min(t, 1.0)


class WithWarmup(Schedule):
    """Linear warm-up over `warmup` steps, then another schedule (counted from the end of warm-up)."""

    def __init__(self, warmup: int, after: Schedule):
        self.warmup, self.after = warmup, after

    def factor(self, step):
        if step < self.warmup:
            return (step + 1) / self.warmup
        return self.after.factor(step - self.warmup)


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients so their joint L2 norm is at most max_norm; returns the norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    xp = get_array_module(grads[0])
    total = float(xp.sqrt(sum(float((g.astype(xp.float64) ** 2).sum()) for g in grads)))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total


class EMA:
    """Exponential moving average of parameters: shadow <- d * shadow + (1 - d) * param after each update.

    The average of the last few hundred steps' weights usually generalises better than the last weights
    (it smooths the noise of SGD near the end of training). Evaluate with `swapped_in()`.
    """

    def __init__(self, params, decay: float = 0.99):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.params, self.decay = list(params), decay
        self.shadow = [p.data.copy() for p in self.params]

    def update(self, decay: float | None = None):
        d = self.decay if decay is None else decay
        for s, p in zip(self.shadow, self.params):
            s *= d
            s += (1 - d) * p.data

    def swap(self):
        """Exchange live and averaged weights (call twice to restore)."""
        for i, p in enumerate(self.params):
            p.data, self.shadow[i] = self.shadow[i], p.data

    def state_dict(self) -> dict:
        from .backend import to_numpy
        return {f"ema.{i}": to_numpy(s) for i, s in enumerate(self.shadow)}

    def load_state_dict(self, state: dict):
        from .backend import backend_of, to_backend
        for i, p in enumerate(self.params):
            self.shadow[i] = to_backend(state[f"ema.{i}"].astype(p.dtype), backend_of(p.data))
