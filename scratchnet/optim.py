"""Optimizers, learning-rate schedules, weight averaging and gradient clipping (semantics match torch.optim).

Every optimizer updates `param.data` in place from `param.grad`, under no graph recording.
"""
from __future__ import annotations

import math

from .backend import GPUKernel, get_array_module, on_cpu


class Optimizer:
    """The step loop, per-parameter state and parameter groups shared by SGD and Adam.

    `params` is a list of Parameters (one group), or, as in torch.optim, a list of groups
    {"params": [...], "lr": ..., "weight_decay": ..., ...}; a key a group leaves out takes the constructor's
    value. A schedule sets one number, `opt.lr`; every group then steps with its own lr times the same
    factor opt.lr / opt.base_lr, so the ratios between groups (biases at 64x the lr, say) survive it.
    """

    def __init__(self, params, lr: float, **defaults):
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.defaults = dict(lr=lr, **defaults)
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups, seen = [], set()
        for g in groups:
            unknown = sorted(set(g) - set(self.defaults) - {"params"})
            if unknown:
                expected = ", ".join(["params", *self.defaults])
                raise ValueError(f"unknown parameter-group keys {unknown}; expected {expected}")
            group = {**self.defaults, **g, "params": list(g["params"])}
            if group["lr"] < 0:
                raise ValueError(f"learning rate must be >= 0, got {group['lr']}")
            ids = {id(p) for p in group["params"]}
            if ids & seen:
                raise ValueError("a parameter appears in more than one parameter group")
            seen |= ids
            self.param_groups.append(group)
        self.params = [p for g in self.param_groups for p in g["params"]]
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.lr = self.base_lr = lr  # schedules (and train.py) set self.lr; base_lr stays the constructor's
        self.state = [{} for _ in self.params]  # per-parameter buffers (momentum, Adam moments)
        self.steps = 0

    @property
    def lr_factor(self) -> float:
        """The schedule's multiplier now, opt.lr / opt.base_lr (1 until something sets opt.lr)."""
        return self.lr / self.base_lr if self.base_lr else 1.0

    def group_lr(self, group) -> float:
        """The lr a group steps with now: group["lr"] * lr_factor."""
        if group["lr"] == self.base_lr:  # the default group: exactly opt.lr, not opt.lr rounded through a ratio
            return self.lr
        return group["lr"] * self.lr_factor

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.steps += 1
        states = iter(self.state)  # self.state follows self.params: group by group
        for group in self.param_groups:
            for p in group["params"]:
                state = next(states)
                if p.grad is not None:
                    self._update(p, p.grad, state, group)

    def _update(self, p, g, state, group):
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
    """SGD with momentum, Nesterov and weight decay; with coupled (L2) decay, the default, as torch.optim.SGD:
        g <- g + wd * p;  buf <- mu * buf + g (buf = g at the first step);
        step = g + mu * buf (Nesterov) or buf;  p <- p - lr * step
    decoupled=True is SGDW (Loshchilov & Hutter, 2019): g is left alone and the weights shrink directly,
        p <- p - lr * step - lr_factor * wd * p        (lr_factor = opt.lr / opt.base_lr, the schedule's)
    so the decay follows the schedule but not the learning rate: the lr (or one group's lr) can change
    without changing the decay. (Adam(decoupled=True), like torch.optim.AdamW, shrinks by lr * wd instead.)
    Every argument can be set per parameter group (see Optimizer); the constructor's lr is also base_lr.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, decoupled=False):
        super().__init__(params, lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                         decoupled=decoupled)
        if any(g["nesterov"] and g["momentum"] <= 0 for g in self.param_groups):
            raise ValueError("Nesterov momentum needs momentum > 0")

    def _update(self, p, g, state, group):
        lr, mu, wd, nesterov = self.group_lr(group), group["momentum"], group["weight_decay"], group["nesterov"]
        if wd and group["decoupled"]:
            # Shrinking first is the same as subtracting lr_factor * wd * (old p) after: the step below
            # reads only g and buf, never p.
            p.data *= 1 - self.lr_factor * wd
            wd = 0.0
        if mu and not on_cpu(get_array_module(g)) and g.dtype == p.data.dtype:
            return self._update_gpu(p, g, state, lr, wd, mu, nesterov)  # one dtype T; mixed ones go below
        if wd:
            g = g + wd * p.data
        if mu:
            buf = state.get("momentum")
            if buf is None:
                buf = state["momentum"] = g.copy()
            else:
                buf *= mu
                buf += g
            g = g + mu * buf if nesterov else buf
        p.data -= lr * g

    # The update above as one GPU kernel (8 launches per parameter -> 1); `first`: buf starts as d.
    _SGD_GPU = GPUKernel(
        "T g, T lr, T wd, T mu, bool nesterov, bool first", "T p, T buf",
        """T d = g + wd * p;
           T b = first ? d : mu * buf + d;
           buf = b;
           p = p - lr * (nesterov ? d + mu * b : b);""",
        "scratchnet_sgd_momentum")

    def _update_gpu(self, p, g, state, lr, wd, mu, nesterov):
        buf = state.get("momentum")
        first = buf is None
        if first:
            buf = state["momentum"] = get_array_module(g).empty_like(p.data)
        t = p.data.dtype.type  # scalars as the parameters' dtype, so that T is unambiguous
        self._SGD_GPU(g, t(lr), t(wd), t(mu), bool(nesterov), first, p.data, buf)


def per_example_sgd_args(lr: float, weight_decay: float, momentum: float, batch_size: int,
                         examples: int = 1024) -> dict:
    """Hyper-parameters given per `examples` examples (as in the airbench CIFAR-10 recipe) -> SGD's arguments.

    The loss must be SUMMED over the batch (F.cross_entropy is a mean: multiply it by the batch size). Then
        lr_sgd = lr / (examples * (1 + 1 / (1 - momentum)))
        wd_sgd = weight_decay * batch_size / examples      (decoupled: the weights shrink by this per step)
    Why: with a summed loss each example adds its own gradient, so lr_sgd is a step per example and
    `examples` examples move the weights about as far whatever the batch size; the second factor grows like
    momentum's gain on a steady gradient, 1 / (1 - mu), so the distance barely depends on mu either.
    The decay per step is proportional to the examples the step saw: about weight_decay per `examples`
    examples (times the schedule's factor). The published recipe couples its decay into the gradient instead,
    where momentum amplifies it: its weight_decay w decays like w / (2 - mu) here.
    Returns keyword arguments: SGD(params, **per_example_sgd_args(...)). A parameter group at c times this lr
    (the recipe's batch-norm biases, c = 64) keeps the same weight_decay: decoupled decay ignores the lr.
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    return dict(lr=lr / (examples * (1 + 1 / (1 - momentum))), weight_decay=weight_decay * batch_size / examples,
                momentum=momentum, nesterov=momentum > 0, decoupled=True)


class Adam(Optimizer):
    """Adam (and AdamW with decoupled=True), as torch.optim.Adam/AdamW:
        m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    weight decay: Adam adds wd*p to g; AdamW shrinks p by lr*wd*p before the update.
    Every argument can be set per parameter group (see Optimizer).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=decoupled)

    def _update(self, p, g, state, group):
        xp = get_array_module(p.data)
        lr, (b1, b2), wd = self.group_lr(group), group["betas"], group["weight_decay"]
        if wd and group["decoupled"]:
            p.data *= 1 - lr * wd
        elif wd:
            g = g + wd * p.data
        if "m" not in state:
            state["m"], state["v"] = xp.zeros_like(p.data), xp.zeros_like(p.data)
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        t = self.steps
        denom = xp.sqrt(v / (1 - b2 ** t)) + group["eps"]
        p.data -= (lr / (1 - b1 ** t)) * m / denom


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


class TriangleLR(Schedule):
    """Up, then down: `start` at step 0, linearly to 1 at step p = int(peak * total), then linearly to `end`
    at step `total` (and after):
        factor(s) = start + (1 - start) * s / p                   for s < p
                  = 1 + (end - 1) * (s - p) / (total - p)         for p <= s <= total
    As for WarmupLinear and CosineLR, `total` is the number of updates, so the last one (step total - 1)
    runs just above `end`, as in the airbench recipe (start 0.2, peak 0.23, end 0.07).
    """

    def __init__(self, total: int, peak: float = 0.23, start: float = 0.2, end: float = 0.07):
        if total < 1 or not 0.0 <= peak <= 1.0:
            raise ValueError(f"TriangleLR needs total >= 1 and 0 <= peak <= 1, got total={total}, peak={peak}")
        self.total, self.start, self.end = total, start, end
        self.peak_step = int(peak * total)  # floored, as the recipe's int(0.23 * total)

    def factor(self, step):
        step = min(step, self.total)
        if step < self.peak_step:
            return self.start + (1 - self.start) * step / self.peak_step
        return 1 + (self.end - 1) * (step - self.peak_step) / max(self.total - self.peak_step, 1)


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


class Lookahead:
    """Lookahead (Zhang et al., 2019) over any optimizer: call step() after every optimizer step.

    The model's weights are the fast ones; a slow copy follows them. Every k-th call, with d = decay, or
    decay(t) if it is a function of t (the number of calls so far):
        slow <- d * slow + (1 - d) * fast        (= lerp(slow, fast, 1 - d), computed as torch.lerp does)
        fast <- slow
    The fast weights explore for k steps; the slow ones move only part of the way to where they got,
    which averages out SGD's noise. d = 0 is the plain optimizer. The airbench recipe uses k = 5 and
    d = 0.95**5 * (t / total)**3: hardly any damping early, more as the learning rate falls.
    finish() puts the slow weights in the model: call it after the last step. `params`: anything with a
    .data array, numpy or cupy: Parameters, and buffers through nn.BufferRef (`nn.state_refs(model)`
    gives both, as the recipe's lookahead over the whole state_dict: batch-norm statistics too).
    The lerp is torch.lerp's, w = 1 - d: slow + w * (fast - slow) for w < 0.5, else
    fast - (fast - slow) * (1 - w); so a weight that no longer moves (fast == slow: a frozen one) stays
    bit-exact, and d = 1 (slow stays) and d = 0 (slow = fast) are exact.
    """

    def __init__(self, params, k: int = 5, decay=0.5):
        if k < 1:
            raise ValueError(f"Lookahead needs k >= 1, got {k}")
        self.params, self.k, self.decay = list(params), k, decay
        self.slow = [p.data.copy() for p in self.params]  # same backend and dtype as the weights
        self.t = 0

    def step(self):
        self.t += 1
        if self.t % self.k:
            return
        d = self.decay(self.t) if callable(self.decay) else self.decay
        w = 1 - d
        for s, p in zip(self.slow, self.params):
            fast = p.data
            if abs(w) < 0.5:
                s += w * (fast - s)
            else:
                s[...] = fast - (fast - s) * (1 - w)
            fast[...] = s  # in place: the parameter keeps its array (and its device memory)

    def finish(self):
        """Copy the slow weights into the model (what the recipe evaluates)."""
        for s, p in zip(self.slow, self.params):
            p.data[...] = s

    def state_dict(self) -> dict:
        from .backend import to_numpy
        return {"lookahead.t": self.t, **{f"lookahead.{i}": to_numpy(s) for i, s in enumerate(self.slow)}}

    def load_state_dict(self, state: dict):
        from .backend import backend_of, to_backend
        self.t = int(state["lookahead.t"])
        for i, p in enumerate(self.params):
            self.slow[i] = to_backend(state[f"lookahead.{i}"].astype(p.dtype), backend_of(p.data))
