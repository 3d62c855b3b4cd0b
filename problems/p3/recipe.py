"""P3's training recipes: scratchnet's generic TrainConfig plus the choices that are P3's own (flips that
alternate between epochs, test-time views, the EMA's warm start), and the learner that trains a P3 net.

A recipe is written flat, as the results file's `hyperparameters` and the checkpoints record it:
TrainConfig's fields plus `flip_mode` and `tta`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from scratchnet.data.augment import alternating_flip, mirror, random_crop, random_flip, shift
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


def _mirrored(view):
    return lambda x: mirror(view(x))


# Test-time views per `tta` level: 0 the image; 1 + its mirror; 2 + both moved one pixel down-right and
# up-left (edges reflected). Their order is the order the logits are summed in.
TTA_VIEWS = {0: [], 1: [_same, mirror],
             2: [_same, mirror, _down_right, _mirrored(_down_right), _up_left, _mirrored(_up_left)]}
TTA_NAMES = ["none", "mirror", "mirror + 1-pixel shifts"]
FLIP_MODES = ("random", "alternating")


@dataclass(frozen=True)
class Recipe:
    """One P3 training run's settings: the library's TrainConfig and P3's own two choices."""
    train: TrainConfig
    flip_mode: str = "random"   # 'random' (a coin per image and step) or 'alternating' (between epochs)
    tta: int = 0                # test-time views (TTA_VIEWS): 0 none, 1 + mirror, 2 + mirror and 1-px shifts

    def __post_init__(self):
        if self.flip_mode not in FLIP_MODES:
            raise ValueError(f"flip_mode must be one of {FLIP_MODES}, got {self.flip_mode!r}")
        if self.tta not in TTA_VIEWS:
            raise ValueError(f"tta must be one of {sorted(TTA_VIEWS)}, got {self.tta!r}")

    @classmethod
    def from_flat(cls, **settings) -> Recipe:
        """A recipe from flat settings: TrainConfig fields plus flip_mode and tta."""
        own = {k: settings.pop(k) for k in ("flip_mode", "tta") if k in settings}
        return cls(TrainConfig(**settings), **own)

    def own_settings(self) -> dict:
        """P3's choices beyond the TrainConfig: recorded in every checkpoint, so a resume must match them."""
        return {"flip_mode": self.flip_mode, "tta": self.tta}

    def flat(self) -> dict:
        """Every setting in one dict, in the order the results files have always listed them."""
        own = self.own_settings()
        out = {}
        for f in fields(self.train):
            out[f.name] = getattr(self.train, f.name)
            if f.name == "flip":
                out["flip_mode"] = own["flip_mode"]
            elif f.name == "ema_decay":
                out["tta"] = own["tta"]
        return out

    def views(self) -> list:
        """The test-time views of the final evaluation (none at level 0)."""
        return TTA_VIEWS[self.tta]

    def augment(self, n_train: int):
        """fit's augment function: random crops, then flips (random, or alternating between epochs:
        each of the n_train images gets a fixed random bit that says in which epochs it is mirrored)."""
        c = self.train
        alternating = self.flip_mode == "alternating"

        def augment(x, indices, epoch, rng):
            if c.crop_padding:
                x = random_crop(x, c.crop_padding, rng, mode=c.crop_mode)
            if c.flip and alternating:
                x = alternating_flip(x, indices, epoch, n_train, seed=c.seed)
            elif c.flip:
                x = random_flip(x, rng)
            return x
        return augment

    def fit(self, learner, data, **kwargs):
        """scratchnet.train.fit with this recipe's augmentation, test-time views and checkpoint settings."""
        from scratchnet.train import fit
        return fit(learner, data, self.train, augment=self.augment(len(data.train_y)), final_views=self.views(),
                   settings=self.own_settings(), **kwargs)

    def describe(self) -> dict:
        """The recipe in words, as the results file records it."""
        c = self.train
        aug = []
        if c.crop_padding:
            aug.append(f"random crop ({c.crop_padding} px {c.crop_mode} padding)")
        if c.flip:
            aug.append(f"horizontal flip ({self.flip_mode})")
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


def recipe_for(model: str, seed: int = 0, **overrides) -> Recipe:
    """The model's recipe (RECIPES) with the seed and any flat overrides (None values are ignored)."""
    flat = dict(RECIPES[model], seed=seed)
    flat.update({k: v for k, v in overrides.items() if v is not None})
    return Recipe.from_flat(**flat)
