"""PyTorch reference of the P3 networks (`--backend torch`): same architecture, same init, same data.

This is the only torch code on the P3 path; the scratchnet run is the answer, this one is for comparing
loss curves and speed. Networks (input NCHW float (N, 3, 32, 32), output logits (N, 10)):

    small:    conv 3->64 11x11 s1 p0 -> ReLU -> maxpool 2x2 s2 -> conv 64->128 3x3 p1 -> ReLU
              -> conv 128->128 3x3 p1 -> ReLU -> global average pool -> linear 128->10
    small_bn: the same with BatchNorm2d after each conv, before its ReLU (those convs have no bias).
    better:   part 3's net (problems/p3/models.better_net), mirrored layer by layer by `torch_twin` from the
              scratchnet net itself, initial weights included (the whitening filters, Dirac convs, zero head).

Spatial sizes: 32 -> 22 (11x11, no padding) -> 11 (pool) -> 11 -> 11 -> 1 (global average).
Initialisation of small/small_bn (the same scheme as scratchnet's, drawn by torch): every conv and linear
weight ~ N(0, 2 / fan_in) (He / Kaiming normal, fan_in = C_in*kh*kw or in_features), biases 0; BN gamma 1,
beta 0, momentum 0.1, eps 1e-5. The better net's twin starts from the scratchnet net's own initial weights
(copied), so both sides start identical.

What the better twin mirrors, and how (`torch_twin`):
- frozen scratchnet weights (the whitening conv's filters, `nn.freeze`; batch norm's frozen scale
  `train_scale=False`) become torch buffers: no gradient, not in `parameters()`, so neither the optimizer
  nor the weight decay nor the EMA sees them, as in scratchnet. The filters are saved (a persistent
  buffer, as scratchnet's state_dict has them), the frozen scale is not (scratchnet does not save it).
- batch norm's momentum needs no conversion: scratchnet's `momentum` is the weight of the new batch
  statistic, r <- (1 - m) r + m * batch, which is PyTorch's convention too (not Keras's, where it is the
  weight of the old value); both update the running variance with the unbiased batch variance. So
  momentum 0.4 is 0.4 on both sides (tested by running-statistics updates in float64).
- GELU is scratchnet's tanh form: nn.GELU(approximate="tanh"); the logits' fixed factor is `Scale`.
- max pools floor (31 -> 15 -> 7 -> 3) and break ties on the first maximum on both sides.
- the EMA of the weights (TorchLearner) averages the trained parameters only, with scratchnet's warm-up
  decay min(decay, (1 + t) / (ema_warmup + t)) after step t; batch norm's running statistics are the live
  ones (scratchnet's EMA does not average buffers either).
- the airbench recipe (problems/p3/recipe.AirbenchRecipe, its learner_plan): parameter groups by lr
  multiplier (batch-norm biases at 64x), each group's lr scaled by the schedule as scratchnet's
  Optimizer.group_lr does; decoupled weight decay as scratchnet's SGD(decoupled=True) (torch's SGD has
  none: the weights shrink by 1 - factor x wd before torch's step, whose own weight_decay is 0); the loss
  summed over the batch; Lookahead over the floating entries of the state_dict (weights and batch-norm
  statistics) with torch.lerp_; the whitening bias's requires_grad off after its epochs.

Weight layouts: scratchnet conv weights are HWIO (kh, kw, C_in, C_out), torch's OIHW (C_out, C_in, kh, kw);
scratchnet linear weights are (in, out) (y = x W + b), torch's (out, in). The conversion walks the layers in
order (conv, [bn], conv, [bn], conv, [bn], linear), so only `scratchnet_names` needs to follow the names the
scratchnet model uses. A `torch_twin` keeps the scratchnet net's layer names, so its state_dict converts key
by key (`twin_state`, `load_twin_state`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

MODELS = ("small", "small_bn")
BN_MOMENTUM = 0.1
BN_EPS = 1e-5


class SmallCNN(nn.Module):
    """The P3 CNN; batch_norm=True inserts BatchNorm2d between each conv and its ReLU."""

    def __init__(self, batch_norm: bool = False, num_classes: int = 10):
        super().__init__()
        self.batch_norm = batch_norm
        bias = not batch_norm  # BN's beta replaces the conv bias
        self.conv1 = nn.Conv2d(3, 64, kernel_size=11, stride=1, padding=0, bias=bias)
        self.conv2 = nn.Conv2d(64, 128, kernel_size=3, stride=1, padding=1, bias=bias)
        self.conv3 = nn.Conv2d(128, 128, kernel_size=3, stride=1, padding=1, bias=bias)
        if batch_norm:
            self.bn1 = nn.BatchNorm2d(64, eps=BN_EPS, momentum=BN_MOMENTUM)
            self.bn2 = nn.BatchNorm2d(128, eps=BN_EPS, momentum=BN_MOMENTUM)
            self.bn3 = nn.BatchNorm2d(128, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc = nn.Linear(128, num_classes)
        init_he_normal(self)

    def _block(self, i: int, x):
        x = getattr(self, f"conv{i}")(x)
        if self.batch_norm:
            x = getattr(self, f"bn{i}")(x)
        return torch.relu(x)

    def forward(self, x):
        x = self.pool(self._block(1, x))
        x = self._block(3, self._block(2, x))
        return self.fc(x.mean(dim=(2, 3)))  # global average pool over the whole 11x11 map


def build_model(name: str) -> SmallCNN:
    """'small' or 'small_bn', freshly initialised (seed torch first for reproducible weights)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return SmallCNN(batch_norm=(name == "small_bn"))


def init_he_normal(model: nn.Module) -> None:
    """Weights ~ N(0, 2/fan_in) for every Conv2d and Linear, biases 0; BN gamma 1, beta 0, fresh running stats."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()  # C_in*kh*kw for a conv, in_features for a linear
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()  # weight 1, bias 0, running mean 0, var 1


# ------------------------------------------------------------------------------------- layout conversion

def conv_weight_to_hwio(w_oihw: np.ndarray) -> np.ndarray:
    """torch (C_out, C_in, kh, kw) -> scratchnet (kh, kw, C_in, C_out)."""
    return np.ascontiguousarray(np.transpose(w_oihw, (2, 3, 1, 0)))


def conv_weight_to_oihw(w_hwio: np.ndarray) -> np.ndarray:
    """scratchnet (kh, kw, C_in, C_out) -> torch (C_out, C_in, kh, kw)."""
    return np.ascontiguousarray(np.transpose(w_hwio, (3, 2, 0, 1)))


def linear_weight_to_scratchnet(w_out_in: np.ndarray) -> np.ndarray:
    """torch (out, in) -> scratchnet (in, out)."""
    return np.ascontiguousarray(np.asarray(w_out_in).T)


def linear_weight_to_torch(w_in_out: np.ndarray) -> np.ndarray:
    """scratchnet (in, out) -> torch (out, in)."""
    return np.ascontiguousarray(np.asarray(w_in_out).T)


def layers_in_order(model: SmallCNN) -> list[tuple[str, nn.Module]]:
    """[('conv', m), ('bn', m)?, ..., ('linear', m)] in forward order: the key of the conversion."""
    layers = []
    for i in (1, 2, 3):
        layers.append(("conv", getattr(model, f"conv{i}")))
        if model.batch_norm:
            layers.append(("bn", getattr(model, f"bn{i}")))
    layers.append(("linear", model.fc))
    return layers


def export_layers(model: SmallCNN) -> list[dict]:
    """Per layer in forward order a dict of numpy arrays in scratchnet layout.

    conv: weight HWIO, bias (C_out,) if present; bn: gamma, beta, running_mean, running_var (C,);
    linear: weight (in, out), bias (out,). Each dict also has 'kind'.
    """
    out = []
    for kind, m in layers_in_order(model):
        d = {"kind": kind}
        if kind == "conv":
            d["weight"] = conv_weight_to_hwio(m.weight.detach().cpu().numpy())
            if m.bias is not None:
                d["bias"] = m.bias.detach().cpu().numpy().copy()
        elif kind == "bn":
            d["gamma"] = m.weight.detach().cpu().numpy().copy()
            d["beta"] = m.bias.detach().cpu().numpy().copy()
            d["running_mean"] = m.running_mean.detach().cpu().numpy().copy()
            d["running_var"] = m.running_var.detach().cpu().numpy().copy()
        else:
            d["weight"] = linear_weight_to_scratchnet(m.weight.detach().cpu().numpy())
            d["bias"] = m.bias.detach().cpu().numpy().copy()
        out.append(d)
    return out


def import_layers(model: SmallCNN, layers: list[dict]) -> None:
    """Inverse of export_layers: copy scratchnet-layout arrays (forward order) into the torch model."""
    targets = layers_in_order(model)
    if len(layers) != len(targets):
        raise ValueError(f"expected {len(targets)} layers ({[k for k, _ in targets]}), got {len(layers)}")

    def put(param, array):
        array = torch.as_tensor(np.asarray(array), dtype=param.dtype)
        if tuple(array.shape) != tuple(param.shape):
            raise ValueError(f"shape mismatch: model has {tuple(param.shape)}, got {tuple(array.shape)}")
        param.copy_(array)

    with torch.no_grad():
        for (kind, m), d in zip(targets, layers):
            if d.get("kind", kind) != kind:
                raise ValueError(f"layer order mismatch: model has {kind}, got {d.get('kind')}")
            if kind == "conv":
                put(m.weight, conv_weight_to_oihw(d["weight"]))
                if m.bias is not None:
                    put(m.bias, d["bias"])
            elif kind == "bn":
                put(m.weight, d["gamma"])
                put(m.bias, d["beta"])
                put(m.running_mean, d["running_mean"])
                put(m.running_var, d["running_var"])
            else:
                put(m.weight, linear_weight_to_torch(d["weight"]))
                put(m.bias, d["bias"])


# Field names per layer kind -> the state_dict suffix of the scratchnet module (scratchnet.nn.BatchNorm2d
# calls gamma/beta 'weight'/'bias', like torch). Adapt here if scratchnet's names change.
SCRATCHNET_FIELDS = {
    "conv": {"weight": "weight", "bias": "bias"},
    "bn": {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"},
    "linear": {"weight": "weight", "bias": "bias"},
}


def scratchnet_names(model_name: str) -> list[str]:
    """Layer prefixes in forward order: conv1, [bn1], conv2, [bn2], conv3, [bn3], fc."""
    names = []
    for i in (1, 2, 3):
        names.append(f"conv{i}")
        if model_name == "small_bn":
            names.append(f"bn{i}")
    return names + ["fc"]


def to_flat_dict(model: SmallCNN, prefixes: list[str] | None = None) -> dict:
    """{'conv1.weight': HWIO array, 'bn1.weight': gamma, ..., 'fc.bias': ...}: a scratchnet state_dict.

    prefixes: the scratchnet module names of the layers in forward order (default `scratchnet_names`).
    """
    layers = export_layers(model)
    prefixes = prefixes or scratchnet_names("small_bn" if model.batch_norm else "small")
    flat = {}
    for prefix, d in zip(prefixes, layers, strict=True):
        for field, name in SCRATCHNET_FIELDS[d["kind"]].items():
            if field in d:
                flat[f"{prefix}.{name}"] = d[field]
    return flat


def from_flat_dict(model: SmallCNN, flat: dict, prefixes: list[str] | None = None) -> None:
    """Load a flat scratchnet-layout dict (as written by `to_flat_dict` or scratchnet) into the torch model."""
    prefixes = prefixes or scratchnet_names("small_bn" if model.batch_norm else "small")
    layers = []
    for prefix, (kind, m) in zip(prefixes, layers_in_order(model), strict=True):
        d = {"kind": kind}
        for field, name in SCRATCHNET_FIELDS[kind].items():
            key = f"{prefix}.{name}"
            if key in flat:
                d[field] = flat[key]
            elif not (kind == "conv" and field == "bias" and m.bias is None):
                raise KeyError(f"missing {key!r} in the weights (have {sorted(flat)})")
        layers.append(d)
    import_layers(model, layers)


# --------------------------------------------------------------------------------------- train / evaluate

def nhwc_to_nchw(x_nhwc, device="cpu", dtype=torch.float32, channels_last: bool = False) -> torch.Tensor:
    """NumPy NHWC float batch -> torch NCHW tensor of `dtype` (default float32) on `device`: contiguous, or
    with channels_last its NHWC memory kept (PyTorch's channels_last format, no copy on the CPU)."""
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype
    t = torch.from_numpy(np.ascontiguousarray(x_nhwc, dtype=np_dtype)).permute(0, 3, 1, 2)
    return (t if channels_last else t.contiguous()).to(device)


def train_step(model: nn.Module, optimizer, x_nhwc, y, device="cpu") -> tuple[float, int]:
    """One SGD step on a batch (x NHWC float, y int labels); returns (mean loss, number correct)."""
    model.train()
    logits = model(nhwc_to_nchw(x_nhwc, device))
    target = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
    loss = nn.functional.cross_entropy(logits, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    correct = int((logits.argmax(dim=1) == target).sum())
    return float(loss.detach()), correct


@torch.no_grad()
def evaluate(model: nn.Module, x_nhwc, y, batch_size: int = 500, device="cpu") -> tuple[float, float]:
    """(mean cross-entropy, accuracy as a fraction) over x NHWC float, in eval mode (BN running stats)."""
    model.eval()
    total_loss, correct = 0.0, 0
    y = np.asarray(y)
    for start in range(0, len(y), batch_size):
        logits = model(nhwc_to_nchw(x_nhwc[start:start + batch_size], device))
        target = torch.as_tensor(y[start:start + batch_size], dtype=torch.long, device=device)
        total_loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    return total_loss / len(y), correct / len(y)


def default_device() -> str:
    """'cuda' where PyTorch sees a GPU (so the reference runs where a --backend cupy run would), else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchLearner:
    """The PyTorch twin behind scratchnet.train's learner interface, so `fit` drives both identically.

    Same architecture, optimizer (SGD, Nesterov, coupled weight decay), schedule, batches, crops and flips
    (fit augments in numpy and hands both learners the same arrays), label smoothing, EMA of the weights
    (with scratchnet's warm-up, `ema_warmup` as in ScratchnetLearner) and test-time views. small/small_bn
    are built and initialised by torch (same scheme as scratchnet's); with `net` (a scratchnet Sequential,
    e.g. the better net) the model is its `torch_twin`, starting from its very weights. The weights it
    reports are converted to scratchnet's layout and names (the filter grid and --eval-only read them).
    Inputs are converted to the model's dtype (float32, or float64 for a float64 twin in the tests).
    """

    def __init__(self, model_name: str, config, device: str = "cpu", net=None, ema_warmup: int = 0, *,
                 lr_scales: dict | None = None, decoupled: bool = False, loss_reduction: str = "mean",
                 lookahead_every: int = 0, lookahead_decay=None, train_epochs: dict | None = None):
        """The keyword-only options are a recipe's learner plan (problems/p3/recipe.Recipe.learner_plan):
        lr_scales {parameter name: lr multiplier}, decoupled decay, loss_reduction 'mean' or 'sum',
        Lookahead every k steps with decay(t) (k = 0: none), train_epochs {parameter name: epochs trained}."""
        torch.manual_seed(config.seed)
        if device.startswith("cuda"):  # a reference: strict float32 (no TF32) and reproducible cuDNN
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        self.model_name, self.config, self.device, self.ema_warmup = model_name, config, device, ema_warmup
        # The better net's twin runs in PyTorch's faster CPU layout for it, channels_last (oneDNN's NHWC
        # kernels, as the published recipe's CPU port runs), so time comparisons meet PyTorch at its best.
        self.channels_last = net is not None and device == "cpu"
        if net is not None:
            self.model = torch_twin(net).to(device)
            if self.channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)
        elif model_name in MODELS:
            self.model = build_model(model_name).to(device)
        else:
            raise ValueError(f"TorchLearner: {model_name!r} has no torch-built model; pass its scratchnet net "
                             "(net=...) to mirror it")
        self.from_net = net is not None
        self.params = list(self.model.parameters())  # the trained ones: frozen weights are buffers
        self.dtype = self.params[0].dtype
        named = dict(self.model.named_parameters())
        scales, self.train_epochs = dict(lr_scales or {}), dict(train_epochs or {})
        unknown = sorted((set(scales) | set(self.train_epochs)) - set(named))
        if unknown:
            raise ValueError(f"lr_scales / train_epochs name {unknown}, which are not parameters of the model")
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        self.decoupled, self.loss_reduction = decoupled, loss_reduction
        # groups as scratchnet's recipe builds them: the default one at config.lr, one per lr multiplier
        groups = [{"params": [p for n, p in named.items() if n not in scales], "lr": config.lr}]
        for scale in sorted(set(scales.values())):
            groups.append({"params": [named[n] for n, s in scales.items() if s == scale], "lr": config.lr * scale})
        self.group_lr0 = [g["lr"] for g in groups]
        self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                                         weight_decay=0.0 if decoupled else config.weight_decay)
        self.lr_factor = 1.0
        self.steps = 0
        self.ema = self._fresh_ema()
        self.lookahead_every, self.lookahead_decay = lookahead_every, lookahead_decay
        if lookahead_every and lookahead_decay is None:
            raise ValueError("Lookahead needs its decay (a number or a function of the step)")
        self.lookahead = self._fresh_lookahead()

    def _fresh_ema(self):
        """The weight average's shadow copies (None without EMA), starting at the current weights."""
        return [p.detach().clone() for p in self.params] if self.config.ema_decay else None

    def _lookahead_targets(self):
        """What the Lookahead moves: every floating entry of the state_dict (trained weights, batch-norm
        statistics, the frozen whitening filters, which never move), the model's own tensors."""
        return [t for t in self.model.state_dict(keep_vars=True).values() if t.is_floating_point()]

    def _fresh_lookahead(self):
        """{'t': steps seen, 'slow': copies of the targets} (None without Lookahead)."""
        if not self.lookahead_every:
            return None
        return {"t": 0, "slow": [t.detach().clone() for t in self._lookahead_targets()]}

    def set_lr(self, lr: float):
        """The schedule's lr for config.lr: the default group steps with it exactly, other groups with their
        lr times lr / config.lr (scratchnet's Optimizer.group_lr), and decoupled decay follows that factor."""
        self.lr_factor = lr / self.config.lr if self.config.lr else 1.0
        for group, lr0 in zip(self.optimizer.param_groups, self.group_lr0):
            group["lr"] = lr if lr0 == self.config.lr else lr0 * self.lr_factor

    def start_epoch(self, epoch: int):
        """Freeze the parameters whose training epochs (train_epochs) are over (no gradient: no update)."""
        named = dict(self.model.named_parameters())
        for name, k in self.train_epochs.items():
            named[name].requires_grad_(epoch < k)

    def finish(self):
        """After the last step: the Lookahead's slow weights become the model's."""
        if self.lookahead is not None:
            with torch.no_grad():
                for s, t in zip(self.lookahead["slow"], self._lookahead_targets()):
                    t.copy_(s)

    def _lookahead_step(self):
        la = self.lookahead
        la["t"] += 1
        if la["t"] % self.lookahead_every:
            return
        d = self.lookahead_decay(la["t"]) if callable(self.lookahead_decay) else self.lookahead_decay
        with torch.no_grad():
            for s, t in zip(la["slow"], self._lookahead_targets()):
                s.lerp_(t, 1 - d)
                t.copy_(s)

    def to_device(self, x):
        return x  # host numpy arrays; converted per step

    def _input(self, x):
        return nhwc_to_nchw(x, self.device, self.dtype, channels_last=self.channels_last)

    def train_step(self, x, y):
        self.model.train()
        logits = self.model(self._input(x))
        target = torch.as_tensor(np.asarray(y), dtype=torch.long, device=self.device)
        loss = nn.functional.cross_entropy(logits, target, label_smoothing=self.config.label_smoothing,
                                           reduction=self.loss_reduction)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.decoupled and self.config.weight_decay:  # SGDW: shrink first, as scratchnet's SGD(decoupled=True)
            with torch.no_grad():
                for group in self.optimizer.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.mul_(1 - self.lr_factor * self.config.weight_decay)
        self.optimizer.step()
        self.steps += 1
        if self.lookahead is not None:
            self._lookahead_step()
        if self.ema is not None:  # as ScratchnetLearner: decay min(d, (1 + t) / (warmup + t)) after step t
            t, decay = self.steps, self.config.ema_decay
            d = min(decay, (1 + t) / (self.ema_warmup + t)) if self.ema_warmup else decay
            with torch.no_grad():
                for s, p in zip(self.ema, self.params):  # s <- d s + (1 - d) p, in scratchnet's order
                    s.mul_(d)
                    s.add_((1 - d) * p)
        mean_loss = float(loss.detach()) / len(target) if self.loss_reduction == "sum" else float(loss.detach())
        return mean_loss, int((logits.argmax(dim=1) == target).sum())

    def _swap_ema(self):
        """Exchange live and averaged weights (twice restores them); the optimizer keys on the Parameters."""
        if self.ema is not None:
            for i, p in enumerate(self.params):
                p.data, self.ema[i] = self.ema[i], p.data

    @torch.no_grad()
    def predict_logits(self, x, views=None):
        """Host logits in eval mode, with the averaged weights if EMA is on; views as in scratchnet's
        learner (test-time views, averaged by scratchnet.train.tta_logits)."""
        from scratchnet.train import tta_logits
        self.model.eval()
        self._swap_ema()
        try:
            return tta_logits(lambda v: self.model(self._input(v)).cpu().numpy(), x, views)
        finally:
            self._swap_ema()

    def weights(self) -> dict:
        """Scratchnet-layout weights: the averaged ones when EMA is on (what evaluation uses)."""
        self._swap_ema()
        try:
            if self.from_net:
                return twin_state(self.model)
            return to_flat_dict(self.model, scratchnet_names(self.model_name))
        finally:
            self._swap_ema()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.params)

    def load_weights(self, weights: dict):
        """Load scratchnet-layout weights without optimizer state; the EMA restarts there (as scratchnet's)."""
        if self.from_net:
            load_twin_state(self.model, weights)
        else:
            from_flat_dict(self.model, weights, scratchnet_names(self.model_name))
        self.ema = self._fresh_ema()
        self.lookahead = self._fresh_lookahead()

    def state(self) -> dict:
        import io as _io
        buf = _io.BytesIO()
        torch.save({"model": self.model.state_dict(), "optim": self.optimizer.state_dict(), "steps": self.steps,
                    **({"ema": self.ema} if self.ema is not None else {}),
                    **({"lookahead": self.lookahead} if self.lookahead is not None else {})}, buf)
        return {"torch_state": np.frombuffer(buf.getvalue(), dtype=np.uint8)}

    def load_state(self, st: dict):
        import io as _io
        blob = torch.load(_io.BytesIO(st["torch_state"].tobytes()), weights_only=True, map_location=self.device)
        self.model.load_state_dict(blob["model"])
        self.optimizer.load_state_dict(blob["optim"])
        self.steps = int(blob.get("steps", 0))  # checkpoints from before the EMA: no EMA, the count unused
        if self.ema is not None:
            if "ema" not in blob:
                raise KeyError("the checkpoint has no weight average (EMA) to resume")
            self.ema = [s.to(self.device, p.dtype) for s, p in zip(blob["ema"], self.params, strict=True)]
        if self.lookahead is not None:
            if "lookahead" not in blob:
                raise KeyError("the checkpoint has no Lookahead state to resume")
            targets = self._lookahead_targets()
            self.lookahead = {"t": int(blob["lookahead"]["t"]),
                              "slow": [s.to(self.device, t.dtype)
                                       for s, t in zip(blob["lookahead"]["slow"], targets, strict=True)]}


class Scale(nn.Module):
    """Multiply by a fixed constant (scratchnet.nn.Scale: the better net's logit scale)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x):
        return x * self.factor

    def extra_repr(self):
        return f"{self.factor}"


def _mirror_tensor(src, dst: nn.Module, name: str, convert=None) -> None:
    """Copy scratchnet module `src`'s array `name` into torch module `dst`, as what it is there: a trained
    Parameter stays a Parameter; a frozen weight (nn.freeze: a buffer in scratchnet's state_dict) becomes a
    persistent buffer; a frozen Tensor outside the state_dict (batch norm's fixed scale) a non-persistent one.
    The dtype follows the scratchnet array (float32, or float64 in the tests)."""
    from scratchnet import nn as snn
    from scratchnet.autograd import Tensor
    from scratchnet.backend import to_numpy
    value = getattr(src, name)
    if value is None:
        return
    array = np.array(to_numpy(value.data if isinstance(value, Tensor) else value), copy=True)
    t = torch.from_numpy(np.ascontiguousarray(convert(array) if convert else array))
    if isinstance(value, snn.Parameter):
        setattr(dst, name, nn.Parameter(t))
        return
    if name in dst._parameters:
        del dst._parameters[name]
    if name in dst._buffers:
        dst._buffers[name] = t
    else:
        dst.register_buffer(name, t, persistent=name in src._buffer_names())


def torch_twin(net) -> nn.Sequential:
    """A PyTorch copy of a scratchnet Sequential (Conv2d/BatchNorm2d/ReLU/GELU/pools/Flatten/Linear/Scale), with
    the same weights, batch-norm statistics and settings, frozen weights as buffers, and the same layer
    names, taking NCHW input. For the better net's twin, and for tests and benchmarks that compare the two
    libraries layer by layer. Raises TypeError for a layer it has no counterpart for."""
    from collections import OrderedDict

    from scratchnet import nn as snn
    mods = OrderedDict()
    for name, layer in net.named_children():
        if isinstance(layer, snn.Conv2d):
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          bias=layer.bias is not None)
            _mirror_tensor(layer, m, "weight", conv_weight_to_oihw)
            _mirror_tensor(layer, m, "bias")
        elif isinstance(layer, snn.BatchNorm2d):
            m = nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)  # same convention
            for field in ("weight", "bias", "running_mean", "running_var"):
                _mirror_tensor(layer, m, field)
        elif isinstance(layer, snn.ReLU):
            m = nn.ReLU()
        elif isinstance(layer, snn.GELU):
            m = nn.GELU(approximate="tanh")  # scratchnet's GELU is the tanh form
        elif isinstance(layer, snn.AvgPool2d):
            m = nn.AvgPool2d(layer.kernel_size, layer.stride)
        elif isinstance(layer, snn.MaxPool2d):
            m = nn.MaxPool2d(layer.kernel_size, layer.stride)
        elif isinstance(layer, snn.GlobalAvgPool2d):
            m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        elif isinstance(layer, snn.Flatten):
            m = nn.Flatten()
        elif isinstance(layer, snn.Linear):
            m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
            _mirror_tensor(layer, m, "weight", linear_weight_to_torch)
            _mirror_tensor(layer, m, "bias")
        elif isinstance(layer, snn.Scale):
            m = Scale(layer.factor)
        else:
            raise TypeError(f"torch_twin: no PyTorch counterpart for {type(layer).__name__}")
        mods[name] = m
    return nn.Sequential(mods)


def _to_scratchnet_layout(a: np.ndarray) -> np.ndarray:
    if a.ndim == 4:
        return conv_weight_to_hwio(a)
    if a.ndim == 2:
        return linear_weight_to_scratchnet(a)
    return a.copy()


def _to_torch_layout(a: np.ndarray) -> np.ndarray:
    if a.ndim == 4:
        return conv_weight_to_oihw(a)
    if a.ndim == 2:
        return linear_weight_to_torch(a)
    return a


def twin_state(model: nn.Module) -> dict:
    """A `torch_twin`'s state as the scratchnet net's state_dict: same keys, scratchnet layouts, numpy arrays
    (batch norm's step counter, which scratchnet has not, left out)."""
    return {k: _to_scratchnet_layout(v.detach().cpu().numpy()) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def load_twin_state(model: nn.Module, flat: dict) -> None:
    """Load a scratchnet state_dict (e.g. a weights .npz) into its `torch_twin`; ValueError on missing or
    unexpected keys, or a shape that does not fit."""
    targets = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(set(targets) - set(flat)), sorted(set(flat) - set(targets))
    if missing or unexpected:
        raise ValueError(f"missing keys {missing}, unexpected keys {unexpected}")
    with torch.no_grad():
        for k, t in targets.items():
            a = torch.as_tensor(_to_torch_layout(np.asarray(flat[k])), dtype=t.dtype)
            if tuple(a.shape) != tuple(t.shape):
                raise ValueError(f"'{k}' has shape {tuple(t.shape)} in the model but {tuple(a.shape)} in the weights")
            t.copy_(a)
