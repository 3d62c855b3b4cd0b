"""The image-classification training loop: epochs of augmented minibatches, per-step learning-rate
schedule, evaluation, atomic per-epoch checkpoints and exact resume.

The loop is written once and drives any `Learner` (an object with train_step / predict_logits / state
methods): `ScratchnetLearner` below for scratchnet models; a learner wrapping another library (a PyTorch
twin, say) has the same methods, so both see the very same batches, crops and flips.

What a recipe adds beyond `TrainConfig` comes in as functions: `fit`'s `augment` (how a batch is
augmented; default random crops and flips) and `final_views` (test-time views averaged in the last
evaluation, see `tta_logits`); `settings` records such choices in the checkpoint so a resume must match.
The learner carries the rest: ScratchnetLearner takes an optimizer factory (parameter groups, decoupled
decay), a Lookahead factory, a summed loss and parameters trained for the first epochs only; fit calls a
learner's `start_epoch(epoch)` before each epoch and `finish()` after the schedule's last step.

Epochs may be fractional (TrainConfig.epochs = 9.9): the run takes ceil(epochs x steps per epoch) steps,
so the last epoch runs only its share of them (TrainConfig.total_steps).

Reproducibility: all randomness (shuffling, crops, flips) comes from one numpy Generator seeded from
`seed`; its state is saved in every checkpoint, so an interrupted run resumed from epoch k continues
with the same random stream and ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from . import functional as F
from . import optim
from .autograd import Tensor, no_grad
from .backend import array_module, get_array_module, to_numpy
from .data.augment import augment_batch, iterate_minibatches, normalize
from .io import load_npz, save_npz


@dataclass
class TrainConfig:
    epochs: float = 15                # whole (int) or fractional: 9.9 runs 10 epochs, the last one cut short
    batch_size: int = 128
    lr: float = 0.05                  # peak learning rate (the optimizer's base lr; schedules multiply it)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    schedule: str = "onecycle"        # 'onecycle' (linear warm-up, then linear decay to 0), 'cosine', 'constant',
                                      # 'triangle' (optim.TriangleLR: 0.2 -> 1 at warmup_fraction -> 0.07)
    warmup_fraction: float = 0.2      # share of all steps spent warming up (onecycle, triangle)
    crop_padding: int = 4             # random-crop padding in pixels (0: no crop)
    crop_mode: str = "zero"           # padding for the crop: 'zero' or 'reflect'
    flip: bool = True                 # horizontal flips (the default augmentation: a coin per image and step)
    ema_decay: float = 0.0            # > 0: evaluate an exponential moving average of the weights
    eval_batch_size: int = 1000
    seed: int = 0

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's optimizer steps: epochs x steps_per_epoch, rounded up. With fractional epochs the last
        epoch runs the rest (9.9 epochs of 48 steps: 476 steps, the tenth epoch 44 of its 48, as the
        airbench recipe's ceil). The epochs are read as the decimal they print as (2.3 x 10 is 23 steps,
        not 24 from 2.3's binary rounding)."""
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if isinstance(self.epochs, int):
            return self.epochs * steps_per_epoch
        return math.ceil(Fraction(repr(float(self.epochs))) * steps_per_epoch)

    @property
    def epoch_count(self) -> int:
        """Epochs the loop runs: epochs rounded up (the last one partial when epochs is fractional)."""
        return math.ceil(Fraction(repr(float(self.epochs)))) if not isinstance(self.epochs, int) else self.epochs

    def schedule_for(self, steps_per_epoch: int) -> optim.Schedule:
        total = self.total_steps(steps_per_epoch)
        if self.schedule == "triangle":
            return optim.TriangleLR(total, peak=self.warmup_fraction)
        if self.schedule == "onecycle":
            return optim.WarmupLinear(warmup=max(1, int(self.warmup_fraction * total)), total=total, start=0.1)
        if self.schedule == "cosine":
            return optim.CosineLR(total)
        if self.schedule == "constant":
            return optim.StepLR(every=total + 1, gamma=1.0)
        raise ValueError(f"unknown schedule {self.schedule!r}; expected onecycle, triangle, cosine or constant")


class ScratchnetLearner:
    """Adapts a scratchnet Module + SGD to the loop; arrays live on `backend` ('numpy' or 'cupy').

    ema_warmup > 0 warm-starts the weight average: after optimizer step t its decay is
    min(config.ema_decay, (1 + t) / (ema_warmup + t)), so early on it follows the weights closely
    instead of remembering the random init.

    Beyond the config's plain SGD (all optional, default off):
    optimizer: model -> Optimizer, built after the model is on its backend (parameter groups, decoupled
        decay; its base lr must be config.lr, which the loop's schedule multiplies: set_lr sets opt.lr).
    lookahead: model -> optim.Lookahead, stepped after every optimizer step; `finish()` (fit calls it
        after the last step of the schedule) puts its slow weights in the model. Evaluation and weights()
        use the model's live weights: the fast ones during the run, the slow ones once finished.
    loss_reduction: 'mean' (default) or 'sum' (per-example hyper-parameters, optim.per_example_sgd_args);
        train_step reports the mean either way.
    train_epochs: {parameter name: k}: that parameter trains in the first k epochs only, then is frozen
        (no gradient: no update, no decay) by `start_epoch`, which fit calls before each epoch.
    """

    def __init__(self, model, config: TrainConfig, backend: str = "numpy", ema_warmup: int = 0, *,
                 optimizer=None, lookahead=None, loss_reduction: str = "mean", train_epochs: dict | None = None):
        self.backend = backend
        self.xp = array_module(backend)
        self.model = model.to(backend)
        self.config = config
        self.ema_warmup = ema_warmup
        if optimizer is None:
            self.optimizer = optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                       nesterov=config.nesterov, weight_decay=config.weight_decay)
        else:
            self.optimizer = optimizer(self.model)
            if self.optimizer.base_lr != config.lr:
                raise ValueError(f"the optimizer's base lr {self.optimizer.base_lr} is not config.lr {config.lr}: "
                                 "the schedule would scale the wrong rate")
        self.ema = optim.EMA(model.parameters(), config.ema_decay) if config.ema_decay else None
        self._make_lookahead = lookahead
        self.lookahead = lookahead(self.model) if lookahead is not None else None
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        self.loss_reduction = loss_reduction
        self.train_epochs = dict(train_epochs or {})
        params = dict(self.model.named_parameters())
        unknown = sorted(set(self.train_epochs) - set(params))
        if unknown:
            raise ValueError(f"train_epochs names {unknown}, which are not parameters of the model")

    def set_lr(self, lr: float):
        self.optimizer.lr = lr

    def start_epoch(self, epoch: int):
        """Before epoch `epoch` (0-based): freeze the parameters whose training epochs (train_epochs) are over."""
        params = dict(self.model.named_parameters())
        for name, k in self.train_epochs.items():
            params[name].requires_grad = epoch < k

    def finish(self):
        """After the last step: the Lookahead's slow weights become the model's."""
        if self.lookahead is not None:
            self.lookahead.finish()

    def to_device(self, x):
        return self.xp.asarray(x)

    def train_step(self, x, y):
        """One SGD step on a (device) float batch; returns (mean loss, number correct) as Python numbers."""
        self.model.train()
        self.optimizer.zero_grad()
        logits = self.model(Tensor(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing, reduction=self.loss_reduction)
        loss.backward()
        self.optimizer.step()
        if self.lookahead is not None:
            self.lookahead.step()
        if self.ema is not None:
            t = self.optimizer.steps
            decay = self.config.ema_decay
            self.ema.update(min(decay, (1 + t) / (self.ema_warmup + t)) if self.ema_warmup else decay)
        mean_loss = float(loss.data) / len(y) if self.loss_reduction == "sum" else float(loss.data)
        return mean_loss, int((logits.data.argmax(axis=1) == y).sum())

    def predict_logits(self, x, views=None):
        """Logits in eval mode (batch-norm running statistics), with the averaged weights if EMA is on;
        views: test-time views to average over (tta_logits), default the batch alone."""
        self.model.eval()
        if self.ema is not None:
            self.ema.swap()
        try:
            with no_grad():
                return tta_logits(lambda v: self.model(Tensor(v)).data, x, views)
        finally:
            if self.ema is not None:
                self.ema.swap()

    def state(self) -> dict:
        st = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        st.update({f"optim/{k}": np.asarray(v) for k, v in self.optimizer.state_dict().items()})
        if self.ema is not None:
            st.update({f"emavg/{k}": v for k, v in self.ema.state_dict().items()})
        if self.lookahead is not None:
            st.update({f"ahead/{k}": np.asarray(v) for k, v in self.lookahead.state_dict().items()})
        return st

    def load_state(self, st: dict):
        self.model.load_state_dict({k[6:]: v for k, v in st.items() if k.startswith("model/")})
        self.optimizer.load_state_dict({k[6:]: v for k, v in st.items() if k.startswith("optim/")})
        if self.ema is not None:
            self.ema.load_state_dict({k[6:]: v for k, v in st.items() if k.startswith("emavg/")})
        if self.lookahead is not None:
            ahead = {k[6:]: v for k, v in st.items() if k.startswith("ahead/")}
            if not ahead:
                raise KeyError("the checkpoint has no Lookahead state to resume")
            self.lookahead.load_state_dict(ahead)

    def weights(self) -> dict:
        """The weights to keep: the averaged ones when EMA is on (they are what evaluation uses)."""
        if self.ema is None:
            return self.model.state_dict()
        self.ema.swap()
        try:
            return self.model.state_dict()
        finally:
            self.ema.swap()

    def load_weights(self, weights: dict):
        """Load a model state_dict (e.g. committed weights) without optimizer state; the EMA (and the
        Lookahead) restart there."""
        self.model.load_state_dict(weights)
        if self.ema is not None:
            self.ema = optim.EMA(self.model.parameters(), self.config.ema_decay)
        if self.lookahead is not None:
            self.lookahead = self._make_lookahead(self.model)

    def num_parameters(self) -> int:
        return self.model.num_parameters()


def tta_logits(predict, x, views=None):
    """Average the logits of several views of each image (test-time augmentation).

    views: functions of the batch, e.g. [lambda v: v, data.augment.mirror]; each view's logits are
    summed in list order, then divided by their number. None or []: predict(x) alone.
    x: (N, H, W, C) normalised batch on the model's device.
    """
    if not views:
        return predict(x)
    xp = get_array_module(x)
    total = None
    for view in views:
        logits = predict(xp.ascontiguousarray(view(x)))
        total = logits if total is None else total + logits
    return total / len(views)


@dataclass
class History:
    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)   # the last epoch over fit's final_views, plain before
    final_test_accuracy_without_tta: float | None = None  # the last epoch's plain accuracy, when final_views
    epoch_seconds: list = field(default_factory=list)
    images_per_second: list = field(default_factory=list)


def evaluate(learner, x_uint8, y, mean, std, batch_size: int = 1000, **predict_kwargs):
    """(mean cross-entropy, accuracy) over a whole split, in eval mode, in batches.
    predict_kwargs go to learner.predict_logits (e.g. views=[...] for test-time augmentation)."""
    total_loss, correct = 0.0, 0
    for idx in iterate_minibatches(len(y), batch_size, shuffle=False):
        xb = learner.to_device(normalize(x_uint8[idx], mean, std))
        logits = to_numpy(learner.predict_logits(xb, **predict_kwargs)).astype(np.float64)
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        total_loss += float(-logp[np.arange(len(idx)), y[idx]].sum())
        correct += int((logits.argmax(axis=1) == y[idx]).sum())
    return total_loss / len(y), correct / len(y)


def _checkpoint_path(folder):
    return os.path.join(folder, "checkpoint.npz")


def run_identity(learner, data) -> dict:
    """What a checkpoint must share with the run that resumes it besides the TrainConfig: the kind of learner
    (its state's layout) and the data (its source, sizes and a fingerprint of the labels, which a different
    subset or split changes; the folder may move). Checkpoints written before this existed carry none and
    are resumed on the TrainConfig alone."""
    labels = hashlib.sha1()
    for y in (data.train_y, data.test_y):
        labels.update(np.ascontiguousarray(to_numpy(y), dtype=np.int64).tobytes())
    return {"learner": type(learner).__name__, "data_source": str(getattr(data, "source", "")),
            "n_train": int(len(data.train_y)), "n_test": int(len(data.test_y)), "labels_sha1": labels.hexdigest()}


def recorded_settings(config: TrainConfig, settings: dict | None = None) -> dict:
    """What a checkpoint records as its settings: the TrainConfig's fields plus the caller's `settings`
    (a recipe's own choices, JSON values), in one flat dict."""
    recorded = asdict(config)
    clash = sorted(set(recorded) & set(settings or {}))
    if clash:
        raise ValueError(f"settings {clash} are TrainConfig fields; set them there")
    return {**recorded, **(settings or {})}


# Checkpoints of scratchnet 0.1 record these two recipe choices among the TrainConfig's fields; at these
# values they meant what fit does without them (random flips, no test-time views), so they resume as that.
_V01_PLAIN = {"flip_mode": "random", "tta": 0}


def save_checkpoint(folder, learner, epoch: int, rng: np.random.Generator, history: History, config: TrainConfig,
                    identity: dict | None = None, settings: dict | None = None):
    """Everything needed to resume after `epoch` completed epochs, written atomically."""
    st = learner.state()
    st["meta"] = np.array(json.dumps({"epoch": epoch, "rng": rng.bit_generator.state, "history": asdict(history),
                                      "config": recorded_settings(config, settings), "identity": identity}))
    save_npz(_checkpoint_path(folder), st)


def load_checkpoint(folder, learner, config: TrainConfig, identity: dict | None = None,
                    settings: dict | None = None):
    """(epoch, rng, history) from the folder's checkpoint, or None if there is none.

    Raises ValueError if the checkpoint was made with different hyper-parameters (the TrainConfig and
    `settings`, see recorded_settings), another kind of learner or other data (`identity`, see
    run_identity): resuming it would reproduce neither run.
    """
    path = _checkpoint_path(folder)
    if not os.path.exists(path):
        return None
    try:
        st = load_npz(path)
        meta = json.loads(str(st.pop("meta")))
        saved, epoch = meta["config"], int(meta["epoch"])
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        history = History(**meta["history"])
        made_by = meta.get("identity")
        if not isinstance(saved, dict) or not isinstance(made_by, (dict, type(None))):
            raise TypeError("config or identity is not a mapping")
    except Exception as e:  # a truncated file, or one that is not this code's checkpoint
        raise ValueError(f"checkpoint {path} is unreadable ({type(e).__name__}); delete it to start over") from None
    now = recorded_settings(config, settings)  # epochs too: the schedule depends on the total
    saved = {k: v for k, v in saved.items() if not (k in _V01_PLAIN and k not in now and v == _V01_PLAIN[k])}
    if saved != now:
        diff = {k: (saved.get(k), now.get(k)) for k in {**saved, **now} if saved.get(k) != now.get(k)}
        raise ValueError(f"checkpoint {path} was made with other settings {diff} (saved, now); "
                         "use the same flags or another --out")
    if identity is not None and made_by is not None and made_by != identity:  # None: a checkpoint from before
        diff = {k: (made_by.get(k), identity.get(k)) for k in sorted(set(made_by) | set(identity))
                if made_by.get(k) != identity.get(k)}
        raise ValueError(f"checkpoint {path} was made by another backend or on other data {diff} (saved, now); "
                         "use the same flags and data or another --out")
    try:
        learner.load_state(st)
    except (KeyError, ValueError) as e:
        raise ValueError(f"checkpoint {path} does not fit this model ({type(e).__name__}: {e})") from None
    return epoch, rng, history


def fit(learner, data, config: TrainConfig, out_dir=None, resume: bool = False, progress: bool = True,
        log=print, mean=None, std=None, augment=None, final_views=None, settings: dict | None = None,
        stop_after: int | None = None):
    """Train for config.epochs on data.train_x/train_y (uint8 NHWC), evaluating on data.test_x after each epoch.

    mean, std: per-channel normalisation (defaults: training-set statistics). augment(x, indices, epoch,
    rng) -> x augments a uint8 batch (indices: its images' places in the training set; rng: the run's
    generator, the only randomness a resume reproduces); default random crops and flips as the config
    says. final_views: test-time views for the last epoch's evaluation (tta_logits); its plain accuracy
    is then kept too. With out_dir, a checkpoint is written after every epoch, recording the config and
    `settings` (the recipe's other choices); resume=True continues from it. stop_after: end after that many
    epochs of a schedule that still spans config.epochs (so the first epochs match a full run's; a resume
    from the checkpoint can finish it later). Fractional config.epochs: the last epoch runs the steps
    that TrainConfig.total_steps leaves it. A learner's start_epoch(epoch) (if it has one) runs before each
    epoch, its finish() after the schedule's last step, before the last evaluation. Returns the History.
    """
    from .data.augment import channel_stats
    if mean is None or std is None:
        mean, std = channel_stats(data.train_x)
    rng = np.random.default_rng(config.seed)
    history, start = History(), 0
    identity = run_identity(learner, data) if out_dir is not None else None
    if augment is None:
        def augment(x, indices, epoch, rng):
            return augment_batch(x, rng, config.crop_padding, config.flip, config.crop_mode)
    recorded_settings(config, settings)  # a clash fails now, not at the first checkpoint
    if resume and out_dir is not None:
        loaded = load_checkpoint(out_dir, learner, config, identity, settings)
        if loaded is not None:
            start, rng, history = loaded
            log(f"resumed from {_checkpoint_path(out_dir)} after epoch {start}")
        else:
            log(f"no checkpoint at {_checkpoint_path(out_dir)} to resume from: starting at epoch 1")
    n = len(data.train_y)
    steps_per_epoch = n // config.batch_size  # drop_last: every step sees a full batch
    if steps_per_epoch == 0:
        raise ValueError(f"the training set has {n} images, fewer than one batch of {config.batch_size}; "
                         "lower --batch-size")
    schedule = config.schedule_for(steps_per_epoch)
    total_steps = config.total_steps(steps_per_epoch)
    n_epochs = -(-total_steps // steps_per_epoch)  # = config.epoch_count
    end = n_epochs if stop_after is None else min(n_epochs, stop_after)
    for epoch in range(start, end):
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        if hasattr(learner, "start_epoch"):
            learner.start_epoch(epoch)
        steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)  # the last one may be cut short
        batches = iterate_minibatches(n, config.batch_size, rng, shuffle=True, drop_last=True)
        if steps < steps_per_epoch:
            batches = itertools.islice(batches, steps)
        bar = _progress(batches, steps, f"epoch {epoch + 1}/{n_epochs}", progress)
        for i, idx in enumerate(bar):
            xb = learner.to_device(normalize(augment(data.train_x[idx], idx, epoch, rng), mean, std))
            learner.set_lr(config.lr * schedule.factor(epoch * steps_per_epoch + i))
            loss, ok = learner.train_step(xb, learner.to_device(data.train_y[idx]))
            if not math.isfinite(loss):
                raise FloatingPointError(f"training diverged at epoch {epoch + 1}, step {i + 1} (loss {loss}); "
                                         "lower --lr")
            loss_sum += loss * len(idx)
            correct += ok
            seen += len(idx)
            if progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        last = epoch == n_epochs - 1
        if last and hasattr(learner, "finish"):
            learner.finish()  # e.g. the Lookahead's slow weights: what the last evaluation and weights() see
        train_seconds = time.perf_counter() - t0
        # Test-time views multiply the evaluation cost: only the last epoch's evaluation averages them;
        # earlier epochs and the plain final number are single-view.
        test_loss, test_acc = evaluate(learner, data.test_x, data.test_y, mean, std, config.eval_batch_size)
        if last and final_views:
            history.final_test_accuracy_without_tta = test_acc
            test_loss, test_acc = evaluate(learner, data.test_x, data.test_y, mean, std, config.eval_batch_size,
                                           views=final_views)
        history.train_loss.append(loss_sum / seen)
        history.train_accuracy.append(correct / seen)
        history.test_loss.append(test_loss)
        history.test_accuracy.append(test_acc)
        history.epoch_seconds.append(time.perf_counter() - t0)
        history.images_per_second.append(seen / train_seconds)
        if out_dir is not None:
            save_checkpoint(out_dir, learner, epoch + 1, rng, history, config, identity=identity, settings=settings)
        log(f"epoch {epoch + 1:>3}/{n_epochs}: train loss {history.train_loss[-1]:.4f} "
            f"acc {history.train_accuracy[-1]:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} | "
            f"{history.epoch_seconds[-1]:.1f} s, {history.images_per_second[-1]:.0f} img/s")
    return history


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
