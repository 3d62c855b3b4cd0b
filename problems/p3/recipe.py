"""P3's training recipes: scratchnet's generic TrainConfig plus the choices that are P3's own (flips that
alternate between epochs, test-time views, the EMA's warm start), and the learner that trains a P3 net.

A recipe is written flat, as the results file's `hyperparameters` and the checkpoints record it:
TrainConfig's fields plus `flip_mode` and `tta` (and, for the airbench recipe, `recipe` and its own
settings, see AirbenchRecipe).

Two recipes train the better net: the default one (RECIPES["better"]: batch 512, one-cycle to lr 0.8, an
EMA of the weights) and `--recipe airbench` (AIRBENCH, AirbenchRecipe: the published airbench94
recipe's training choices).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from scratchnet import nn, optim
from scratchnet.data.augment import alternating_flip, cutout, mirror, random_crop, random_flip, shift
from scratchnet.train import TrainConfig

# Per model: SGD with Nesterov momentum and a one-cycle schedule throughout; batch norm tolerates a
# larger learning rate, which is much of its benefit.
RECIPES = {
    "small": dict(epochs=15, batch_size=128, lr=0.02),
    "small_bn": dict(epochs=15, batch_size=128, lr=0.2),
    "better": dict(epochs=12, batch_size=512, lr=0.8, label_smoothing=0.2, crop_padding=2, crop_mode="reflect",
                   flip_mode="alternating", ema_decay=0.98, tta=2),
}
EMA_WARMUP = 10  # the weight average's decay ramps up as min(decay, (1 + t) / (10 + t)) over the steps t

# The better net's second recipe (`--recipe airbench`): the published airbench94 recipe's training choices.
# TrainConfig's part; AirbenchRecipe's own settings (per-1024-example hyper-parameters, Lookahead, the
# whitening bias's epochs, batch norm) default to the recipe's, and lr / weight_decay / nesterov are derived.
AIRBENCH = dict(epochs=9.9, batch_size=1024, momentum=0.85, label_smoothing=0.2, schedule="triangle",
                warmup_fraction=0.23, crop_padding=2, crop_mode="reflect", flip_mode="alternating", tta=2)
RECIPE_NAMES = ("default", "airbench")

RATIONALE = [  # part 3's design choices in one line each; docs/p3_better.md explains them at length
    "fixed 2x2 patch-whitening first layer: decorrelated, unit-variance inputs for the first trained conv",
    "conv -> max pool -> batch norm -> GELU blocks of widths 64/256/256: pooling early halves the cost of "
    "everything after it; three blocks take 31x31 to 3x3",
    "Dirac (identity) init of the 3x3 convs: the untrained net passes signals and gradients through",
    "batch norm with frozen scale (only the shift trains), running-statistics momentum 0.4",
    "logits x 1/9: without it the zero-initialised head diverged at large learning rates",
    "Nesterov SGD, batch 512, one-cycle schedule to a peak lr of 0.8, weight decay 5e-4: few epochs",
    "label smoothing 0.2 and an exponential moving average of the weights (decay 0.98) for evaluation",
    "2-pixel reflect-padded random crops; horizontal flips alternating between epochs",
    "test-time augmentation: logits averaged over the image, its mirror and 1-pixel shifts (6 views)",
]




def _same(x):
    return x


def _down_right(x):
    return shift(x, 1, 1)


def _up_left(x):
    return shift(x, -1, -1)


def _down_left(x):
    return shift(x, 1, -1)


def _up_right(x):
    return shift(x, -1, 1)


def _mirrored(view):
    return lambda x: mirror(view(x))


# Test-time views per `tta` level: 0 the image; 1 + its mirror; 2 + both moved one pixel down-right and
# up-left (edges reflected); 3 + also down-left and up-right (all four diagonal 1-pixel shifts). Their order
# is the order the logits are summed in.
TTA_VIEWS = {0: [], 1: [_same, mirror],
             2: [_same, mirror, _down_right, _mirrored(_down_right), _up_left, _mirrored(_up_left)],
             3: [_same, mirror, _down_right, _mirrored(_down_right), _up_left, _mirrored(_up_left),
                 _down_left, _mirrored(_down_left), _up_right, _mirrored(_up_right)]}
TTA_NAMES = ["none", "mirror", "mirror + 1-pixel shifts", "mirror + 1-pixel shifts in all four diagonals"]
FLIP_MODES = ("random", "alternating")
OWN = ("flip_mode", "tta", "cutout")  # Recipe's settings beyond the TrainConfig, in the flat form


def mean_colour(train_uint8) -> np.ndarray:
    """The training images' mean colour on their own 0..255 scale, rounded to uint8: Cutout's fill, which
    normalisation by the same statistics turns into (about) 0. channel_stats works on the [0, 1] scale."""
    from scratchnet.data import channel_stats
    if train_uint8.dtype != np.uint8:
        raise ValueError(f"mean_colour expects uint8 images, got {train_uint8.dtype}")
    return np.rint(channel_stats(train_uint8)[0] * 255).astype(np.uint8)


@dataclass(frozen=True)
class Recipe:
    """One P3 training run's settings: the library's TrainConfig and P3's own choices."""
    train: TrainConfig
    flip_mode: str = "random"   # 'random' (a coin per image and step) or 'alternating' (between epochs)
    tta: int = 0                # test-time views (TTA_VIEWS): 0 none, 1 + mirror, 2: 6 views, 3: 10 views
    cutout: int = 0             # side of the square blanked (mean colour) in each training image; 0: none

    def __post_init__(self):
        if self.flip_mode not in FLIP_MODES:
            raise ValueError(f"flip_mode must be one of {FLIP_MODES}, got {self.flip_mode!r}")
        if self.tta not in TTA_VIEWS:
            raise ValueError(f"tta must be one of {sorted(TTA_VIEWS)}, got {self.tta!r}")
        if isinstance(self.cutout, bool) or not isinstance(self.cutout, int) or self.cutout < 0:
            raise ValueError(f"cutout must be a whole number of pixels >= 0, got {self.cutout!r}")

    @classmethod
    def from_flat(cls, **settings) -> Recipe:
        """A recipe from flat settings: TrainConfig fields plus flip_mode, tta and cutout."""
        own = {k: settings.pop(k) for k in OWN if k in settings}
        return cls(TrainConfig(**settings), **own)

    def own_settings(self) -> dict:
        """P3's choices beyond the TrainConfig: recorded in every checkpoint, so a resume must match them.
        Cutout only when it is on, so that runs without it record what they always have."""
        return {"flip_mode": self.flip_mode, "tta": self.tta, **({"cutout": self.cutout} if self.cutout else {})}

    def flat(self) -> dict:
        """Every setting in one dict, in the order the results files have always listed them."""
        own = self.own_settings()
        out = {}
        for f in fields(self.train):
            out[f.name] = getattr(self.train, f.name)
            if f.name == "flip":
                out["flip_mode"] = own["flip_mode"]
                if "cutout" in own:
                    out["cutout"] = own["cutout"]
            elif f.name == "ema_decay":
                out["tta"] = own["tta"]
        return out

    def views(self) -> list:
        """The test-time views of the final evaluation (none at level 0)."""
        return TTA_VIEWS[self.tta]

    def augment(self, n_train: int, mean_colour=None):
        """fit's augment function: random crops, then flips (random, or alternating between epochs:
        each of the n_train images gets a fixed random bit that says in which epochs it is mirrored), then
        Cutout squares filled with mean_colour (the training set's, rounded to the images' dtype), which
        normalisation turns into 0, as the airbench recipes blank normalised images."""
        c = self.train
        alternating = self.flip_mode == "alternating"
        if self.cutout and mean_colour is None:
            raise ValueError("cutout needs the training set's mean colour to fill its squares with")

        def augment(x, indices, epoch, rng):
            if c.crop_padding:
                x = random_crop(x, c.crop_padding, rng, mode=c.crop_mode)
            if c.flip and alternating:
                x = alternating_flip(x, indices, epoch, n_train, seed=c.seed)
            elif c.flip:
                x = random_flip(x, rng)
            if self.cutout:
                x = cutout(x, self.cutout, rng, fill=mean_colour)
            return x
        return augment

    def fit(self, learner, data, **kwargs):
        """scratchnet.train.fit with this recipe's augmentation, test-time views and checkpoint settings."""
        from scratchnet.train import fit
        fill = mean_colour(data.train_x) if self.cutout else None
        return fit(learner, data, self.train, augment=self.augment(len(data.train_y), fill),
                   final_views=self.views(), settings=self.own_settings(), **kwargs)

    def describe(self) -> dict:
        """The recipe in words, as the results file records it."""
        c = self.train
        aug = []
        if c.crop_padding:
            aug.append(f"random crop ({c.crop_padding} px {c.crop_mode} padding)")
        if c.flip:
            aug.append(f"horizontal flip ({self.flip_mode})")
        if self.cutout:
            aug.append(f"Cutout ({self.cutout}x{self.cutout} square of the mean colour)")
        return {
            "optimizer": f"SGD, Nesterov momentum {c.momentum}, weight decay {c.weight_decay} (coupled L2)",
            "schedule": (f"one-cycle: linear warm-up from 0.1x to the peak lr {c.lr} over the first "
                         f"{100 * c.warmup_fraction:.0f}% of steps, then linear decay to 0") if c.schedule == "onecycle"
                        else c.schedule,
            "augmentation": " + ".join(aug) or "none",
            "label_smoothing": c.label_smoothing,
            "weight_averaging": f"EMA of the weights, decay {c.ema_decay}" if c.ema_decay else "none",
            "test_time_augmentation": TTA_NAMES[self.tta],
        }


    # What a P3 learner builds beyond TrainConfig's plain SGD (nothing, here): see AirbenchRecipe.
    def model_options(self) -> dict:
        """Options for models.better_net beyond its defaults."""
        return {}

    def whitening_options(self) -> dict:
        """Options for scratchnet.init.patch_whitening_filters beyond its defaults."""
        return {}

    def learner_plan(self, net, n_train: int) -> dict:
        """What both learners (scratchnet's and the PyTorch twin) need beyond the TrainConfig, as plain data."""
        return {}

    def scratchnet_options(self, plan: dict) -> dict:
        """ScratchnetLearner's keyword arguments for a learner_plan."""
        return {}

    def rationale(self) -> list[str]:
        """The better net's design choices in one line each, the training ones from this recipe's settings
        (RATIONALE for the default recipe)."""
        c = self.train
        ema = (f"an exponential moving average of the weights (decay {c.ema_decay:g}) for evaluation"
               if c.ema_decay else "the trained weights themselves for evaluation")
        return RATIONALE[:5] + [
            f"Nesterov SGD, batch {c.batch_size:,}, {SCHEDULE_WORDS.get(c.schedule, c.schedule)} schedule to a "
            f"peak lr of {c.lr:g}, weight decay {_short(c.weight_decay)}: few epochs",
            f"label smoothing {c.label_smoothing:g} and {ema}",
            "; ".join(self._augmentation_words(horizontal=True)),
            TTA_RATIONALE[self.tta],
        ]

    def _augmentation_words(self, horizontal: bool = False) -> list[str]:
        """The training augmentation as the rationale lists it; horizontal: say 'horizontal flips'."""
        c = self.train
        words = []
        if c.crop_padding:
            words.append(f"{c.crop_padding}-pixel {c.crop_mode}-padded random crops")
        if c.flip:
            flips = "horizontal flips" if horizontal else "flips"
            words.append(f"{flips} alternating between epochs" if self.flip_mode == "alternating"
                         else f"random {flips}")
        if self.cutout:
            words.append(f"Cutout: a {self.cutout}x{self.cutout} square of the mean colour per image")
        return words or ["no augmentation"]


SCHEDULE_WORDS = {"onecycle": "one-cycle"}


def _short(x: float) -> str:
    """A small number as the rationale writes it: 5e-4, not 0.0005."""
    if 0 < abs(x) < 1e-2:
        mantissa, exponent = f"{x:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{x:g}"


def bn_bias_names(net) -> list[str]:
    """Names of the batch-norm shifts (biases) among a net's parameters: the airbench recipe's 64x-lr group."""
    names = []

    def walk(module, prefix):
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                names.extend(prefix + name + "." + p for p, _ in child.named_parameters() if p == "bias")
            walk(child, prefix + name + ".")
    walk(net, "")
    return names


AIRBENCH_OWN = ("lr_per_1024", "weight_decay_per_1024", "bias_lr_scale", "lookahead_every", "lookahead_decay",
                "lookahead_power", "whiten_bias_epochs", "bn_eps", "bn_momentum")


@dataclass(frozen=True)
class AirbenchRecipe(Recipe):
    """The published airbench94 recipe's training choices for the better net (`--recipe airbench`).

    Hyper-parameters per 1,024 examples on a loss summed over the batch (optim.per_example_sgd_args):
    the SGD lr is lr_per_1024 / (1024 (1 + 1 / (1 - momentum))) whatever the batch size (TrainConfig.lr,
    derived), Nesterov momentum. Weight decay: decoupled from the lr (SGD(decoupled=True)): each step shrinks
    the weights by factor x weight_decay x batch / 1024 (factor: the schedule's), the same for the 64x-lr
    batch-norm biases. The published recipe couples its decay into the gradient (torch SGD's weight_decay,
    set to wd / lr per group so lr x wd is the lr-free strength), where Nesterov momentum spreads each
    step's decay over the next steps with a total gain 1 / (1 - momentum); with its step division that is
    a total shrink of weight_decay_per_1024 / (2 - momentum) per 1,024 examples. The decoupled decay used
    here (TrainConfig.weight_decay, derived) applies that total at once:
        weight_decay = weight_decay_per_1024 / (2 - momentum) x batch_size / 1024      (0.0133 at batch 1024)
    so the published number 0.0153 stays the recipe's setting and the strength is the published one; only
    the momentum's lag of the decay (a few steps) differs.
    Lookahead (k = lookahead_every) with decay(t) = lookahead_decay x (t / T)^lookahead_power after step t of
    T, over the weights and batch-norm running statistics (the published recipe's state_dict); the run
    ends on the slow weights. The whitening layer's bias trains in the first whiten_bias_epochs epochs only.
    Batch norm: eps bn_eps, running-statistics momentum bn_momentum in scratchnet's (= PyTorch's) convention
    (the published 0.6 is Keras's, the weight of the old value: 1 - 0.6 = 0.4).
    """
    lr_per_1024: float = 11.5
    weight_decay_per_1024: float = 0.0153     # the published, coupled value; see the docstring for the mapping
    bias_lr_scale: float = 64.0
    lookahead_every: int = 5
    lookahead_decay: float = 0.95 ** 5
    lookahead_power: float = 3.0
    whiten_bias_epochs: int = 3
    bn_eps: float = 1e-12
    bn_momentum: float = 0.4

    def __post_init__(self):
        super().__post_init__()
        derived = self.sgd_settings(self.lr_per_1024, self.weight_decay_per_1024, self.train.momentum,
                                    self.train.batch_size)
        wrong = {k: (getattr(self.train, k), v) for k, v in derived.items() if getattr(self.train, k) != v}
        if wrong:
            raise ValueError(f"the airbench recipe derives {sorted(wrong)} from its per-1024 settings; "
                             f"got {wrong} (given, derived)")
        if self.train.ema_decay:
            raise ValueError("the airbench recipe averages with Lookahead, not an EMA: ema_decay must be 0")

    @staticmethod
    def sgd_settings(lr_per_1024: float, weight_decay_per_1024: float, momentum: float, batch_size: int) -> dict:
        """TrainConfig's lr, weight_decay and nesterov from the per-1024 settings (see the class docstring)."""
        args = optim.per_example_sgd_args(lr_per_1024, weight_decay_per_1024 / (2 - momentum), momentum,
                                          batch_size)
        return {"lr": args["lr"], "weight_decay": args["weight_decay"], "nesterov": args["nesterov"]}

    @classmethod
    def from_flat(cls, **settings) -> AirbenchRecipe:
        """From flat settings (AIRBENCH's keys, the own settings, seed...; `flat()` round-trips): lr,
        weight_decay and nesterov are derived (given ones must equal the derived values)."""
        settings = dict(settings)
        name = settings.pop("recipe", "airbench")
        if name != "airbench":
            raise ValueError(f"AirbenchRecipe.from_flat got recipe {name!r}")
        own = {k: settings.pop(k) for k in (*OWN, *AIRBENCH_OWN) if k in settings}
        defaults = TrainConfig()
        derived = cls.sgd_settings(own.get("lr_per_1024", cls.lr_per_1024),
                                   own.get("weight_decay_per_1024", cls.weight_decay_per_1024),
                                   settings.get("momentum", defaults.momentum),
                                   settings.get("batch_size", defaults.batch_size))
        settings.update({k: v for k, v in derived.items() if k not in settings})
        settings.setdefault("ema_decay", 0.0)
        return cls(TrainConfig(**settings), **own)

    def own_settings(self) -> dict:
        return {**super().own_settings(), "recipe": "airbench", **{k: getattr(self, k) for k in AIRBENCH_OWN}}

    def flat(self) -> dict:
        """TrainConfig's fields (with flip_mode and tta in their usual places), then `recipe` and the own
        settings."""
        out = super().flat()
        own = self.own_settings()
        out.update({k: own[k] for k in ("recipe", *AIRBENCH_OWN)})
        return out

    @property
    def decoupled_weight_decay_per_1024(self) -> float:
        return self.weight_decay_per_1024 / (2 - self.train.momentum)

    def model_options(self) -> dict:
        return {"bn_eps": self.bn_eps, "bn_momentum": self.bn_momentum}

    def whitening_options(self) -> dict:
        return {"center": False, "max_patches": None}  # every patch's second moment, as published

    def total_steps(self, n_train: int) -> int:
        return self.train.total_steps(n_train // self.train.batch_size)

    def lookahead_decay_at(self, total_steps: int):
        """decay(t) after step t of total_steps: lookahead_decay x (t / T)^lookahead_power."""
        base, power, total = self.lookahead_decay, self.lookahead_power, max(total_steps, 1)
        return lambda t: base * (t / total) ** power

    def learner_plan(self, net, n_train: int) -> dict:
        """Plain data both learners build from: {parameter: lr multiplier} (the batch-norm biases), decoupled
        decay, the summed loss, Lookahead every k steps with decay(t), and the whitening bias's epochs."""
        return {"lr_scales": {name: self.bias_lr_scale for name in bn_bias_names(net)}, "decoupled": True,
                "loss_reduction": "sum", "lookahead_every": self.lookahead_every,
                "lookahead_decay": self.lookahead_decay_at(self.total_steps(n_train)),
                "train_epochs": {"whiten.bias": self.whiten_bias_epochs}}

    def scratchnet_options(self, plan: dict) -> dict:
        """ScratchnetLearner's factories for the plan: SGD with a default group at TrainConfig.lr and one at
        bias_lr_scale x that (same decoupled decay), and a Lookahead over the model's whole state. No plan
        (evaluating saved weights): none."""
        if not plan:
            return {}
        c = self.train
        scales = plan["lr_scales"]

        def optimizer(model):
            named = dict(model.named_parameters())
            groups = [{"params": [p for n, p in named.items() if n not in scales]}]
            for scale in sorted(set(scales.values())):
                groups.append({"params": [named[n] for n, s in scales.items() if s == scale], "lr": c.lr * scale})
            return optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                             weight_decay=c.weight_decay, decoupled=plan["decoupled"])

        def lookahead(model):
            return optim.Lookahead(nn.state_refs(model), k=plan["lookahead_every"], decay=plan["lookahead_decay"])
        return {"optimizer": optimizer, "lookahead": lookahead, "loss_reduction": plan["loss_reduction"],
                "train_epochs": plan["train_epochs"]}

    def rationale(self) -> list[str]:
        """The recipe's choices in one line each, from its own settings (docs/p3_better.md, "The airbench
        recipe", explains them), so that a longer or otherwise changed run says what it ran."""
        c, mu = self.train, self.train.momentum
        epochs = f"{c.epochs:g} epoch{'' if c.epochs == 1 else 's'}"
        if c.epoch_count != c.epochs:
            epochs += f" (the last one {100 * (c.epochs - int(c.epochs)):.0f}% long)"
        decay = "0.95^5" if math.isclose(self.lookahead_decay, 0.95 ** 5) else f"{self.lookahead_decay:g}"
        augmentation = [f"label smoothing {c.label_smoothing:g}", *self._augmentation_words()]
        return [
            "the same network (fixed 2x2 patch whitening, Dirac-initialised conv/pool/BN/GELU blocks 64/256/256, "
            f"logits x 1/9), batch norm with eps {self.bn_eps:g} and frozen scale, running-statistics momentum "
            f"{self.bn_momentum:g} (PyTorch's)",
            "whitening filters from every 2x2 patch of 5,000 random training images, uncentered second moment, "
            "eps 5e-4",
            f"hyper-parameters per 1,024 examples on a loss summed over the batch: lr {self.lr_per_1024:g}, "
            f"Nesterov momentum {mu:g}, the step divided by 1024 (1 + 1 / (1 - momentum)); batch {c.batch_size:,}",
            f"weight decay decoupled from the lr, as strong per step as the published {self.weight_decay_per_1024:g} "
            f"(coupled) is after momentum: {self.weight_decay_per_1024:g} / (2 - {mu:g}) per 1,024 examples",
            f"batch-norm biases at {self.bias_lr_scale:g}x the learning rate, same decay; the whitening bias trains "
            f"for the first {self.whiten_bias_epochs} epochs",
            f"triangular schedule 0.2 -> 1 (at {100 * c.warmup_fraction:.0f}% of the steps) -> 0.07; {epochs}",
            f"Lookahead every {self.lookahead_every} steps with decay {decay} (t/T)^{self.lookahead_power:g} over "
            "weights and batch-norm statistics, instead of an EMA; the final weights are the slow ones",
            "; ".join(augmentation),
            TTA_RATIONALE[self.tta],
        ]

    def describe(self) -> dict:
        c = self.train
        out = super().describe()
        mu = c.momentum
        out.update({
            "optimizer": (f"SGD, Nesterov momentum {mu}, loss summed over the batch; per 1,024 examples lr "
                          f"{self.lr_per_1024} (SGD lr {self.lr_per_1024} / (1024 (1 + 1/(1 - {mu}))) = {c.lr:.6g}) "
                          f"and weight decay {self.weight_decay_per_1024} (published, coupled), applied decoupled "
                          f"from the lr as {self.weight_decay_per_1024} / (2 - {mu}) = "
                          f"{self.decoupled_weight_decay_per_1024:.6g} per 1,024 examples ({c.weight_decay:.6g} per "
                          f"step of {c.batch_size}); batch-norm biases at {self.bias_lr_scale:g}x the lr, same "
                          f"decay; whitening bias trained for the first {self.whiten_bias_epochs} epochs"),
            "schedule": (f"triangle: lr factor 0.2 -> 1 at {100 * c.warmup_fraction:.0f}% of the steps -> 0.07, "
                         f"over {c.epochs} epochs (the last one cut to its share of the steps)"),
            "weight_averaging": (f"Lookahead every {self.lookahead_every} steps, decay {self.lookahead_decay:.6g} "
                                 f"x (t/T)^{self.lookahead_power:g}, over the weights and batch-norm statistics; "
                                 "per-epoch test accuracy of the live (fast) weights, the last epoch's of the "
                                 "slow weights, which end the run"),
        })
        return out


TTA_RATIONALE = ["no test-time augmentation", "test-time augmentation: logits averaged over the image and its mirror",
                 "test-time augmentation: logits averaged over the image, its mirror and 1-pixel shifts (6 views)",
                 "test-time augmentation: logits averaged over the image, its mirror and 1-pixel shifts in all four "
                 "diagonal directions (10 views)"]


def recipe_for(model: str, seed: int = 0, recipe: str = "default", **overrides) -> Recipe:
    """The model's recipe (RECIPES; recipe='airbench': AIRBENCH, the better net only) with the seed and any
    flat overrides (None values are ignored). For airbench an `lr` override is the lr per 1,024 examples."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if recipe == "airbench":
        if model != "better":
            raise ValueError(f"the airbench recipe trains the better net, not {model!r}")
        if "lr" in overrides:
            overrides["lr_per_1024"] = overrides.pop("lr")
        return AirbenchRecipe.from_flat(**{**AIRBENCH, "seed": seed, **overrides})
    if recipe != "default":
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPE_NAMES}")
    flat = dict(RECIPES[model], seed=seed)
    flat.update(overrides)
    return Recipe.from_flat(**flat)
