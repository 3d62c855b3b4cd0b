"""P3's results as typed objects: what problems/p3_small_cnn.py and problems/p3_better_ablation.py write,
the checks on the files they read back (the results JSON beside a weights file, results to compare), and
the sentences the report makes from them.

    P3Result        results.json of one network (trained, or evaluated with --eval-only); part 3's
                    extras (rationale, ablation table) and --eval-only's fields are optional; its
                    FilterStats measure the first layer's filters for the report's captions
    P3Comparison    comparison.json: the with/without batch-norm loss plot
    AblationResult  ablation.json of problems/p3_better_ablation.py, one AblationRun per variant and seed

Fields marked `optional()` are left out of the JSON while None (the scripts write them only when they
apply); every other field is always written, null where it has no value. Units: accuracies and errors
are fractions (of the test set; the ablation's of its validation split, as `evaluated_on` says), times in
seconds, learning rates per step. The PyTorch cross-check's results live in problems/p3/twin_check.py.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from problems.common.cli import UserError
from problems.common.fmt import fmt_f, fmt_g, fmt_int, fmt_pct, fmt_text, is_missing
from problems.common.result import Result, ResultError

_OMIT = "omit_if_none"


def optional(default=None):
    """A field written only when it has a value (left out of the JSON while None)."""
    return field(default=default, metadata={_OMIT: True})


def _json(value):
    """Result.to_json's plain JSON, leaving out optional() fields that are None, nested ones too."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f in fields(value)
                if f.init and not (f.metadata.get(_OMIT) and getattr(value, f.name) is None)}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    return value


class _P3Result(Result):
    def to_json(self) -> dict:
        return _json(self)


# ------------------------------------------------------------------------------------------- results.json
@dataclass(kw_only=True)
class Hyperparameters:
    """The run's recipe, flat: scratchnet.train.TrainConfig's fields plus P3's flip_mode and tta; the airbench
    recipe adds `recipe` and its own settings (problems/p3/recipe.AirbenchRecipe), absent otherwise."""
    epochs: int | float         # fractional: the last epoch runs its share of the steps
    batch_size: int
    lr: float                   # peak learning rate (airbench: the SGD lr on the summed loss, derived)
    momentum: float
    nesterov: bool
    weight_decay: float
    label_smoothing: float
    schedule: str               # 'onecycle', 'triangle', 'cosine' or 'constant'
    warmup_fraction: float      # share of all steps spent warming up (onecycle, triangle)
    crop_padding: int           # random-crop padding, pixels
    crop_mode: str              # 'zero' or 'reflect'
    flip: bool
    flip_mode: str              # 'random' or 'alternating'
    cutout: int | None = optional()  # side of the blanked square (absent: no Cutout)
    ema_decay: float            # 0: no weight averaging
    tta: int                    # test-time views: 0 none, 1 + mirror, 2 + two 1-px shifts (6), 3 + four (10)
    eval_batch_size: int
    seed: int
    recipe: str | None = optional()                 # 'airbench' (absent: the default recipe)
    lr_per_1024: float | None = optional()          # airbench: lr per 1,024 examples, loss summed
    weight_decay_per_1024: float | None = optional()  # airbench: the published (coupled) decay per 1,024
    bias_lr_scale: float | None = optional()        # airbench: batch-norm biases' lr multiplier
    lookahead_every: int | None = optional()        # airbench: Lookahead's k
    lookahead_decay: float | None = optional()      # airbench: decay(t) = this x (t/T)^lookahead_power
    lookahead_power: float | None = optional()
    whiten_bias_epochs: int | None = optional()     # airbench: epochs the whitening bias trains
    bn_eps: float | None = optional()
    bn_momentum: float | None = optional()          # PyTorch's convention (weight of the new statistic)


@dataclass(kw_only=True)
class LayerRow:
    """One layer of the network for one image (scratchnet.nn.layer_table)."""
    layer: str
    type: str
    output_shape: list[int]     # H, W, C (or features)
    parameters: int             # trained
    fixed_weights: int          # frozen (the better net's whitening filters)
    flops: int                  # 2 x multiply-adds of its conv or matrix product


@dataclass(kw_only=True)
class AblationRow:
    """Part 3's ablation table as the better net's results carry it: one row per variant, its accuracy the
    mean over its seeds. Exactly one of test_accuracy (older ablations, scored on test images) and
    validation_accuracy is written; neither when every seed diverged."""
    variant: str
    test_accuracy: float | None = optional()
    validation_accuracy: float | None = optional()
    note: str
    seeds: int | None = optional()                  # runs behind the row (older files: one)
    per_seed: list[float | None] | None = optional()  # each seed's accuracy, None where it diverged
    spread: float | None = optional()               # max - min over the seeds that finished (2 or more)
    without_tta: float | None = optional()          # mean single-view accuracy, when the recipe averages views

    @property
    def accuracy(self) -> float | None:
        return self.validation_accuracy if self.validation_accuracy is not None else self.test_accuracy


@dataclass(kw_only=True)
class FilterStats:
    """Measures of the first layer's filters, computed from the weights (filter_stats) so that the report can
    describe the grid. Colour share: the part of a filter's energy that differs between its R, G and B
    weights at the same pixel (0: a greyscale filter; i.i.d. random weights give (C-1)/C = 2/3 on average).
    Roughness: mean squared difference of neighbouring weights over twice their mean square (about 1 for
    white noise, 0 for a constant filter)."""
    fixed: bool                     # True: computed from the data (patch whitening), not trained
    n_filters: int                  # filters measured (the whitening's negated copies left out)
    size: int                       # kernel height (= width)
    colour_share_median: float
    colour_filters: int             # colour share >= COLOUR_AT
    grey_filters: int               # colour share < GREY_BELOW
    roughness_median: float
    smooth_filters: int             # roughness < SMOOTH_BELOW
    norm_min: float
    norm_max: float
    first_one_sign: bool            # the first filter's weights all have one sign (a brightness average)
    init_cosine_median: float | None = None  # cosine similarity of each filter to its own initial value


@dataclass(kw_only=True)
class P3Result(_P3Result):
    """One network's results.json: its training history and recipe, or (eval_only) its evaluation."""
    problem: str                            # 'p3'
    model: str                              # 'small', 'small_bn' or 'better'
    backend: str                            # 'numpy', 'cupy' or 'torch'
    device: str | None = optional()         # 'cpu' or 'cuda': where training ran
    epochs: int | float | None = optional()  # fractional: the last epoch ran its share of the steps
    stopped_after: int | None = optional()  # --stop-after: epochs run of a schedule spanning `epochs`
    steps_per_epoch: int | None = optional()  # full epochs' optimizer steps (training images // batch)
    total_steps: int | None = optional()    # the schedule's steps: ceil(epochs x steps_per_epoch)
    train_loss: list[float]                 # per epoch (empty: no history, e.g. --eval-only without one)
    train_accuracy: list[float]
    test_loss: list[float]
    test_accuracy: list[float]              # the last epoch with test-time views when the recipe has them
    final_test_accuracy_without_tta: float | None = None  # the last epoch single-view, when TTA was on
    epoch_seconds: list[float]              # wall time per epoch, its test evaluation included
    images_per_second: list[float]          # training images per second of each epoch's training part
    final_test_accuracy: float
    final_test_error: float
    seconds: float | None = optional()      # all epochs' wall time, also those before a resume
    seconds_this_invocation: float | None = optional()  # this process's training, net building included
    command: str
    hyperparameters: Hyperparameters | None = optional()
    optimizer: str | None = optional()
    schedule: str | None = optional()
    augmentation: str | None = optional()
    label_smoothing: float | None = optional()
    weight_averaging: str | None = optional()
    test_time_augmentation: str | None = optional()
    normalisation: str | None = optional()
    initialisation: str
    architecture: list[str]
    first_conv_padding: int | None = optional()
    parameters: int | None = optional()     # trained parameters
    data_source: str | None = optional()
    data_dir: str | None = optional()
    n_train: int | None = optional()
    n_test: int | None = optional()
    evaluated_on: str | None = optional()   # None: the test set; else the validation split (--val-per-class)
    weights_file: str
    layers: list[LayerRow] = field(default_factory=list)
    rationale: list[str] | None = optional()             # part 3: the design choices, one line each
    design_notes: str | None = optional()
    ablation: list[AblationRow] | None = optional()
    ablation_budget: str | None = optional()
    ablation_discussion: str | None = optional()
    ablation_file: str | None = optional()
    ablation_evaluated_on: str | None = optional()   # what the ablation scored; None: the test set (older files)
    filter_stats: FilterStats | None = optional()    # the first layer's filters, measured (filter_stats)
    figures: dict[str, str]                 # role (loss, filters, accuracy_vs_time) -> file beside the JSON
    discussion: str
    seconds_note: str | None = optional()   # a note added by hand to a committed run
    eval_only: bool | None = optional()
    evaluated: bool | None = optional()     # False: the accuracy shown was recorded, not re-evaluated
    final_test_loss: float | None = optional()
    recorded_note: str | None = optional()

    def unfit_for_report(self) -> str | None:
        """Why the report must not show this run as its answer (None: it may): a run scored on the validation
        split measured no test accuracy, whatever its `test_*` fields are called."""
        if self.evaluated_on:
            return f"scored on the {self.evaluated_on}, not the test set; the report shows test-set runs only"
        return None


@dataclass(kw_only=True)
class P3Comparison(_P3Result):
    """comparison.json: the training losses of two runs on one axis."""
    problem: str
    compared: list[str]                     # the two results files
    figures: dict[str, str]                 # bn_comparison -> the plot
    final_train_loss: dict[str, float]      # curve label -> last epoch's training loss
    discussion: str


# ------------------------------------------------------------------------------------------- ablation.json
@dataclass(kw_only=True)
class AblationRun(_P3Result):
    """One variant of the better net's recipe, one seed (also each run's run.json)."""
    variant: str
    seed: int
    removed: str                            # the trick this variant leaves out
    diverged: bool
    error: str | None = optional()          # why, when it diverged
    # Older ablations scored on test images (the three test fields); newer ones on the validation split
    # held out of the training set (the three val fields). Neither when the run diverged.
    final_test_accuracy: float | None = optional()
    final_test_accuracy_without_tta: float | None = optional()
    test_accuracy: list[float] | None = optional()
    final_val_accuracy: float | None = optional()
    final_val_accuracy_without_tta: float | None = optional()
    val_accuracy: list[float] | None = optional()
    train_loss: list[float] | None = optional()
    seconds: float
    config_overrides: dict[str, Any] | None = optional()   # recipe settings this variant changes
    model_options: dict[str, Any] | None = optional()      # better_net switches this variant changes

    @property
    def accuracy(self) -> float | None:
        return self.final_val_accuracy if self.final_val_accuracy is not None else self.final_test_accuracy

    @property
    def accuracy_without_tta(self) -> float | None:
        if self.final_val_accuracy_without_tta is not None:
            return self.final_val_accuracy_without_tta
        return self.final_test_accuracy_without_tta


@dataclass(kw_only=True)
class AblationResult(_P3Result):
    problem: str
    part: str
    backend: str
    budget: str                             # every run's budget in words
    epochs: int
    batch_size: int
    lr: float
    seed: int
    n_train: int
    n_test: int | None = optional()         # older files: accuracies on this many test images
    n_validation: int | None = optional()   # accuracies on this many held-out training images
    evaluated_on: str | None = optional()   # what the accuracies are measured on; None: the test set (older)
    data_source: str
    variants: list[AblationRun]
    command: str
    figures: dict[str, str]
    discussion: str


# ------------------------------------------------------------------------------------------- text
def discussion_for(model: str, accuracy: float, data_source: str, epochs: int, seconds: float, backend: str,
                   split: str = "test") -> str:
    """The results file's one-line summary (the report makes its own text from the fields: p3_facts).
    split: 'test', or 'validation' for a run scored on the split held out of the training set."""
    lossy = " on the lossy JPEG copy of CIFAR-10" if "lossy" in data_source else ""
    return (f"The {model} network reached {100 * accuracy:.1f}% {split} accuracy{lossy} after "
            f"{epochs} epochs ({seconds / 60:.1f} min of training).")


def ablation_table(runs: list[AblationRun]) -> list[AblationRow]:
    """One row per variant (in the order of their first runs), its accuracy the mean over the seeds that
    finished."""
    rows = []
    for name in dict.fromkeys(r.variant for r in runs):
        group = [r for r in runs if r.variant == name]
        accs = [r.accuracy for r in group]
        done = [a for a in accs if a is not None]
        plain = [r.accuracy_without_tta for r in group if r.accuracy_without_tta is not None]
        diverged = sum(r.diverged for r in group)
        note = "removed: " + group[0].removed
        if diverged:
            note += f"; {diverged} of {len(group)} diverged" if len(group) > 1 else "; diverged"
        mean = sum(done) / len(done) if done else None
        validation = any(r.final_val_accuracy is not None for r in group) or not any(
            r.final_test_accuracy is not None for r in group)
        rows.append(AblationRow(variant=name, note=note, seeds=len(group), per_seed=accs,
                                spread=max(done) - min(done) if len(done) > 1 else None,
                                without_tta=sum(plain) / len(plain) if plain else None,
                                **({"validation_accuracy": mean} if validation else {"test_accuracy": mean})))
    return rows


def _points(x: float) -> str:
    return f"{100 * x:+.2f} points"


def ablation_sentences(rows: list[AblationRow], budget: str | None, split: str) -> list[str]:
    """What the ablation table says, from its rows: each variant against the full recipe, judged against the
    seed-to-seed range where there are two or more seeds. split: 'validation' or 'test'."""
    full = next((r for r in rows if r.variant == "full"), None)
    lead = f"Short runs ({budget})." if budget else "Short runs."
    if full is None or full.accuracy is None:
        return [lead, "The full recipe did not finish, so no trick can be measured against it."]
    base = full.accuracy
    finished = sum(a is not None for a in full.per_seed) if full.per_seed else 1
    lines = [lead]
    if finished > 1 and full.spread is not None:
        lines.append(f"The full recipe reached {fmt_pct(base, 2)} {split} accuracy, the mean of {finished} seeds "
                     f"(range {100 * full.spread:.2f} points).")
    else:
        one = "one seed" if (full.seeds or 1) == 1 else f"the one of its {full.seeds} seeds that finished"
        lines.append(f"The full recipe reached {fmt_pct(base, 2)} {split} accuracy with {one}, so no "
                     "seed-to-seed range is measured to judge the differences against.")
    if full.without_tta is not None:
        lines.append(f"Test-time augmentation (averaging the logits of several views) is worth "
                     f"{_points(base - full.without_tta)} ({fmt_pct(full.without_tta, 2)} single view).")
    for r in rows:
        if r is full:
            continue
        removed = r.note.removeprefix("removed: ").split("; ")[0]
        if r.accuracy is None:
            lines.append(f"Without {removed}: training diverged.")
            continue
        diff = r.accuracy - base
        s = f"Without {removed}: {fmt_pct(r.accuracy, 2)} ({_points(diff)})"
        noise = [x.spread for x in (full, r) if x.spread is not None]
        if full.spread is not None:     # the variant's own range too, where it has two or more seeds
            inside = abs(diff) <= max(noise)
            s += (", within the seed-to-seed range: not told apart from noise" if inside
                  else ", more than the seed-to-seed range")
        lines.append(s + ".")
    lines.append("These rank the tricks for the first few epochs on a subset; at full length a trick's worth "
                 "can differ.")
    return lines


def ablation_discussion(runs: list[AblationRun], budget: str, split: str = "validation") -> str:
    """ablation.json's discussion: the same sentences the report makes from the table."""
    return " ".join(ablation_sentences(ablation_table(runs), budget, split))


def is_validation(evaluated_on: str | None) -> bool:
    """Whether an ablation says it was scored on a split held out of the training set (older ones: test)."""
    return bool(evaluated_on) and evaluated_on.lower().startswith("validation")


def ablation_facts(d: P3Result) -> dict:
    """The part-3 ablation as the report shows it: only one scored on the validation split is shown as the
    ablation; an older one scored on test images is refused (state 'test'), since choosing a recipe's parts
    by test accuracy is what a validation split is there to avoid."""
    if not d.ablation:
        return {"state": "none"}
    if not is_validation(d.ablation_evaluated_on):
        return {"state": "test"}
    source = f", {d.data_source}" if d.data_source else ""
    budget = (d.ablation_budget or "").replace(source, "") or None
    text = ablation_sentences(d.ablation, budget, "validation")
    recipe = d.hyperparameters.recipe if d.hyperparameters is not None else None
    if recipe == "airbench":  # problems/p3/ablation.py ablates the one-cycle recipe (RECIPES["better"])
        text.append("These runs train the same network with the one-cycle recipe and its EMA, not the "
                    "airbench recipe the final network was trained with: they measure "
                    "what the network's own tricks are worth (whitening, identity init, label smoothing, "
                    "alternating flips), while the EMA row concerns a weight average the airbench recipe "
                    "replaces by Lookahead.")
    return {"state": "validation", "rows": d.ablation, "evaluated_on": d.ablation_evaluated_on,
            "seeds": max((r.seeds or 1) for r in d.ablation), "text": text}


# The report's sentences. Formatting as report/build_report.py formats numbers (a dash for a missing one).


def _plural(n, word: str) -> str:
    return f"{fmt_int(n)} {word if n == 1 else word + 's'}"


P3_HYPER = [("epochs", "epochs"), ("batch_size", "batch size"), ("lr", "peak learning rate"),
            ("momentum", "momentum"), ("weight_decay", "weight decay"), ("label_smoothing", "label smoothing"),
            ("seed", "seed")]
# The airbench recipe states its rate and decay per 1,024 examples of a summed loss (its `lr` and
# `weight_decay` are the per-step values derived from them, which mean little on their own).
P3_HYPER_AIRBENCH = [("epochs", "epochs"), ("batch_size", "batch size"),
                     ("lr_per_1024", "peak lr per 1,024 images"), ("momentum", "momentum"),
                     ("weight_decay_per_1024", "weight decay per 1,024"), ("bias_lr_scale", "BN shift lr x"),
                     ("label_smoothing", "label smoothing"), ("seed", "seed")]
P3_RECIPE_TEXT = [("optimizer", "optimiser"), ("schedule", "schedule"), ("augmentation", "augmentation"),
                  ("weight_averaging", "weight averaging"), ("test_time_augmentation", "test-time augmentation"),
                  ("normalisation", "input normalisation")]

NUM_CLASSES = 10            # CIFAR-10: the label-smoothing floor depends on it
FLAT_GAIN = 0.01            # the last three epochs added less than this (1 point): the curve has flattened
GAP_NONE, GAP_MILD = 0.02, 0.05   # train - test accuracy: up to 2 points no overfitting, up to 5 mild
UNDERFIT_BELOW = 0.85       # final training accuracy below this: the net does not fit its own training images
COLOUR_AT, GREY_BELOW, SMOOTH_BELOW = 0.5, 0.2, 0.5   # FilterStats' counts
SMOOTHER_BY = 1.25          # one net's median roughness this many times the other's: visibly smoother


def p3_facts(d: P3Result, other: P3Result | None = None) -> dict:
    """What the report's section on one network shows beyond the fields: the hyper-parameter rows and the
    argument for them, the epochs run, the best epoch, the training minutes, the curve's reading, the loss
    floor and the filter caption. other: the other part-1/2 network, for the comparisons."""
    hp = d.hyperparameters
    table = P3_HYPER_AIRBENCH if hp is not None and hp.recipe == "airbench" else P3_HYPER
    rows = [(label, fmt_g(getattr(hp, k))) for k, label in table] if hp is not None else []
    rows += [(label, fmt_text(getattr(d, k))) for k, label in P3_RECIPE_TEXT if getattr(d, k) not in (None, "")]
    acc = d.test_accuracy
    best = max(acc) if acc else None
    plain, bn = (d, other) if d.model == "small" else (other, d) if d.model == "small_bn" else (None, None)
    return {"hyper": rows, "epochs_run": len(d.train_loss),
            "best_epoch_acc": best, "best_epoch": (acc.index(best) + 1) if acc else None,
            "minutes": d.seconds / 60 if not is_missing(d.seconds) else None,
            "eval_only": bool(d.eval_only), "filters": filters_sentence(d),
            "argument": hyper_argument(d, other), "curve": curve_sentences(d), "loss_floor": loss_floor(d),
            "stopped": (f"stopped after {_plural(d.stopped_after, 'epoch')} of a schedule that spans "
                        f"{fmt_int(d.epochs)}") if d.stopped_after else None,
            "filters_compare": filters_comparison(plain, bn) if d.model == "small_bn" else None}


def _lr_relation(d: P3Result, other: P3Result | None) -> str:
    """', a tenth of the batch-norm network's 0.2' and the like, when the other network's rate is known."""
    if other is None or other.hyperparameters is None or d.hyperparameters is None:
        return ""
    mine, theirs = d.hyperparameters.lr, other.hyperparameters.lr
    name = "batch-norm" if other.model == "small_bn" else "plain"
    if math.isclose(mine, theirs):
        return f", the same as the {name} network's"
    ratio = theirs / mine if theirs > mine else mine / theirs
    times = f"{ratio:.3g} times" if not math.isclose(ratio, round(ratio)) else f"{round(ratio)} times"
    return f", {times} {'smaller' if theirs > mine else 'larger'} than the {name} network's {fmt_g(theirs)}"


def hyper_argument(d: P3Result, other: P3Result | None = None) -> list[str]:
    """Why the part-1/2 recipe is what it is, one paragraph per choice, from the recorded settings and curves.
    Part 3's choices have their own rationale list; its curve gets curve_sentences."""
    hp = d.hyperparameters
    if hp is None or d.model not in ("small", "small_bn"):
        return []
    out = []
    relation = _lr_relation(d, other)
    if d.model == "small":
        smaller = (other is not None and other.hyperparameters is not None
                   and hp.lr < other.hyperparameters.lr)
        out.append(f"Peak learning rate {fmt_g(hp.lr)}{relation}. Without batch normalisation nothing rescales a "
                   "layer's input when the weights before it grow or shrink, so a single step size has to suit "
                   "every layer at once and the largest safe step is set by the most sensitive one"
                   + ("; that is the reason to give the plain network the smaller rate." if smaller else "."))
    else:
        out.append(f"Peak learning rate {fmt_g(hp.lr)}{relation}. Batch normalisation rescales every layer's "
                   "input to zero mean and unit variance over the batch, so the loss no longer depends on the "
                   "scale of the weights in front of it and a larger step does not make the activations grow; "
                   "tolerating a larger learning rate is much of what batch normalisation is for.")
    if hp.schedule == "onecycle":
        warm = hp.warmup_fraction * hp.epochs
        out.append(f"One-cycle schedule: the rate climbs linearly from {fmt_g(0.1 * hp.lr)} to {fmt_g(hp.lr)} over "
                   f"the first {100 * hp.warmup_fraction:.0f}% of the steps ({warm:g} of {hp.epochs} epochs), "
                   "then falls linearly to 0. The warm-up keeps the first steps small while the randomly "
                   "initialised weights are far from any minimum and the gradients are largest; the decay ends "
                   "training with small steps that settle the weights instead of leaving them at the peak "
                   f"rate's noise level. SGD with Nesterov momentum {fmt_g(hp.momentum)} and weight decay "
                   f"{fmt_g(hp.weight_decay)} are the standard settings for this kind of network.")
    elif hp.schedule:
        out.append(f"Schedule: {hp.schedule} (peak rate {fmt_g(hp.lr)}).")
    out.append(augmentation_sentence(d))
    return [s for s in out if s]


def augmentation_sentence(d: P3Result) -> str:
    """The augmentation and what the final train/test gap says about overfitting."""
    hp = d.hyperparameters
    augmented = hp is not None and (hp.crop_padding or hp.flip or hp.cutout)
    if augmented:
        what = []
        if hp.crop_padding:
            what.append(f"random crops of the image padded by {hp.crop_padding} pixels")
        if hp.flip:
            what.append("random horizontal flips" if hp.flip_mode == "random" else "horizontal flips")
        if hp.cutout:
            what.append(f"a {hp.cutout}x{hp.cutout} square of the mean colour blanked at a random place (Cutout)")
        views = " and ".join(v for v, on in (("shift", hp.crop_padding), ("mirror image", hp.flip),
                                              ("partly hidden view", hp.cutout)) if on)
        s = (f"Augmentation: {' and '.join(what)}. Each epoch shows the network a different {views} of every "
             "training image, equally valid pictures of the same class, so it cannot memorise the training "
             "images pixel for pixel: the augmentation is there against overfitting.")
    else:
        s = "No augmentation."
    if not d.train_accuracy or not d.test_accuracy:
        return s
    ta, va = d.train_accuracy[-1], d.test_accuracy[-1]
    if d.final_test_accuracy_without_tta is not None:
        va = d.final_test_accuracy_without_tta   # like with like: a single view, as in training
    gap = ta - va
    where = " (on augmented images, averaged over the epoch)" if augmented else " (averaged over the epoch)"
    s += (f" After the last epoch the training accuracy{where} is {fmt_pct(ta, 2)} and the test accuracy "
          f"{fmt_pct(va, 2)}: ")
    if gap < 0:
        s += (f"the test accuracy is {100 * -gap:.2f} points higher, since the training figure is taken on "
              "harder, augmented images while the weights still change; no sign of overfitting.")
    elif gap <= GAP_NONE:
        s += f"{100 * gap:.2f} points apart, no sign of overfitting at this length."
    elif gap <= GAP_MILD:
        s += f"a gap of {100 * gap:.2f} points, mild overfitting."
    else:
        s += (f"a gap of {100 * gap:.2f} points: the network fits its training images clearly better than "
              "unseen ones" + (" even with the augmentation." if augmented else "."))
    if ta < UNDERFIT_BELOW:
        s += (f" At {fmt_pct(ta, 2)} it does not even fit its training images, so its size or the training "
              "length limits it more than overfitting does.")
    return s


def curve_sentences(d: P3Result) -> str | None:
    """Whether the test accuracy had flattened by the last epoch, read from the per-epoch curve (single view
    throughout: the last epoch's test-time views are left out, like with like)."""
    acc = list(d.test_accuracy)
    if len(acc) < 2:
        return None
    if d.final_test_accuracy_without_tta is not None:
        acc[-1] = d.final_test_accuracy_without_tta
    n = len(acc)
    k = min(3, n - 1)
    gain, last = acc[-1] - acc[-1 - k], acc[-1] - acc[-2]
    span = f"the last {_plural(k, 'epoch')}" if k > 1 else "the last epoch"
    view = " (single view)" if d.final_test_accuracy_without_tta is not None else ""
    what = "the single-view test accuracy" if view else "the test accuracy"
    moved = f"{fmt_pct(acc[-1 - k], 2)} to {fmt_pct(acc[-1], 2)}"
    budget = f"{_plural(n, 'epoch')}"
    if d.stopped_after:
        return (f"The run was stopped after {budget} of its {fmt_int(d.epochs)}-epoch schedule; {span} changed "
                f"{what} by {_points(gain)} ({moved}).")
    if gain < FLAT_GAIN:
        return (f"{budget[0].upper() + budget[1:]}: {what} had flattened, {span} changed it by only "
                f"{_points(gain)} ({moved}), so more epochs of this schedule would add little.")
    return (f"The {budget} end the run before the curve flattens: {span} still added {_points(gain)} to {what} "
            f"({moved}), {_points(last)} in the last one. Whether a longer schedule would end higher is not "
            "measured here.")


def smoothing_floor(label_smoothing: float, classes: int = NUM_CLASSES) -> float:
    """The lowest possible cross-entropy against label-smoothed targets: their entropy (nats). The targets
    put 1 - eps + eps/K on the true class and eps/K on each other one (scratchnet's and PyTorch's rule)."""
    eps = label_smoothing
    if eps <= 0:
        return 0.0
    q_true, q_other = 1 - eps + eps / classes, eps / classes
    return -(q_true * math.log(q_true) + (classes - 1) * q_other * math.log(q_other))


def loss_floor(d: P3Result) -> str | None:
    """Why a label-smoothed run's training loss sits above its test loss: what each one measures."""
    hp = d.hyperparameters
    if hp is None or not hp.label_smoothing or not d.train_loss or not d.test_loss:
        return None
    eps, k = hp.label_smoothing, NUM_CLASSES
    bn = d.model != "small"          # the other two networks have batch norm
    floor = smoothing_floor(eps, k)
    tl, vl = d.train_loss[-1], d.test_loss[-1]
    relation = "above" if tl > vl else "below" if tl < vl else "equal to"
    s = (f"The last epoch's training loss, {fmt_f(tl)}, is {relation} its test loss, {fmt_f(vl)}, because they "
         f"measure different things. The training loss is the cross-entropy against label-smoothed targets "
         f"({1 - eps + eps / k:.2f} on the true class, {eps / k:.2f} on each of the other {k - 1}), whose lowest "
         f"possible value is the targets' own entropy, {floor:.3f} nats, reached only by predicting exactly those "
         "probabilities; it is averaged over the epoch's augmented images while the weights still change"
         + (", with batch statistics in the batch-norm layers" if bn else "")
         + ". The test loss is the plain cross-entropy against the true labels, whose floor is 0, on the "
         "unaltered test images in evaluation mode" + (" (running statistics)" if bn else ""))
    if hp.ema_decay:
        s += ", with the moving average of the weights"
    if hp.tta:
        from .recipe import TTA_VIEWS
        s += f"; the last epoch's is over the logits averaged across {len(TTA_VIEWS[hp.tta])} test-time views"
    s += f". Measured from its floor, the training loss is {fmt_f(tl - floor)} nats."
    return s


def filters_sentence(d: P3Result) -> str:
    """The filter grid's caption after 'Part N: ': what it shows, from the measured filters (filter_stats);
    without measurements, from how the first layer was made."""
    st = d.filter_stats
    if st is None:
        if "whitening" in (d.initialisation or "").lower():
            return ("the first-layer filters: fixed 2x2 patch-whitening filters computed from the training "
                    "images (not learned), each contrast-stretched on its own.")
        return "the first-layer filters as trained, each contrast-stretched on its own."
    if st.fixed:
        return whitening_caption(st)
    s = (f"all {st.n_filters} first-layer {st.size}x{st.size} filters as trained, each contrast-stretched on its "
         f"own. {filter_description(st)}")
    return s


def whitening_caption(st: FilterStats) -> str:
    n = st.n_filters
    s = (f"the first layer's {2 * n} filters, which are fixed, not learned: the {n} eigenvectors of the "
         f"covariance of the training images' {st.size}x{st.size}x3 patches (top row, largest-variance direction "
         f"first), each scaled by one over the square root of its eigenvalue, and their negations (bottom row). "
         f"{st.grey_filters} of the {n} are greyscale (nearly the same weight on R, G and B: brightness and "
         f"brightness differences) and {st.colour_filters} mostly colour differences")
    s += "; the first has all its weights of one sign, the patch's average brightness." if st.first_one_sign else "."
    s += (f" Their scale grows from {st.norm_min:.2f} to {st.norm_max:.2f} down the list: directions in which the "
          "training patches rarely vary are amplified most, so that every output has about unit variance on "
          "the training patches. Each tile is "
          "contrast-stretched on its own, which hides that scale.")
    return s


def filter_description(st: FilterStats) -> str:
    """The learned filters in numbers: colour against greyscale, smooth against noisy, and how far from the
    random initial values."""
    s = (f"Measured on the weights: {st.grey_filters} of {st.n_filters} are nearly greyscale (colour share, the "
         f"fraction of a filter's energy in differences between its R, G and B weights, below {GREY_BELOW:g}) and "
         f"{st.colour_filters} mostly colour (at least {COLOUR_AT:g}); median colour share "
         f"{st.colour_share_median:.2f}, where random weights give 0.67. Median roughness "
         f"{st.roughness_median:.2f} (1 for white noise, 0 for a flat filter); {st.smooth_filters} of "
         f"{st.n_filters} are smooth (below {SMOOTH_BELOW:g}).")
    if st.init_cosine_median is not None:
        c = st.init_cosine_median
        s += (f" The median cosine similarity between a filter and its own random initial value is {c:.2f}"
              + (": most of each filter is still its initial noise." if c >= 0.5 else
                 ": training has replaced most of the initial noise." if c < 0.3 else
                 ": the filters keep a fair part of their initial noise."))
    return s


def filters_comparison(plain: P3Result | None, bn: P3Result | None) -> str | None:
    """The two part-1/2 filter grids compared, from their measurements; which one is smoother follows the
    numbers."""
    if plain is None or bn is None or plain.filter_stats is None or bn.filter_stats is None:
        return None
    a, b = plain.filter_stats, bn.filter_stats
    ra, rb = a.roughness_median, b.roughness_median
    if rb * SMOOTHER_BY <= ra:
        s = (f"The batch-norm network's filters are smoother than the plain network's: median roughness "
             f"{rb:.2f} against {ra:.2f}, {b.smooth_filters} smooth filters against {a.smooth_filters}.")
    elif ra * SMOOTHER_BY <= rb:
        s = (f"The plain network's filters are smoother than the batch-norm network's: median roughness "
             f"{ra:.2f} against {rb:.2f}, {a.smooth_filters} smooth filters against {b.smooth_filters}.")
    else:
        s = (f"The two networks' filters are about equally smooth: median roughness {rb:.2f} (batch norm) and "
             f"{ra:.2f} (plain).")
    s += (f" Greyscale filters: {b.grey_filters} of {b.n_filters} with batch norm, {a.grey_filters} of "
          f"{a.n_filters} without.")
    if a.init_cosine_median is not None and b.init_cosine_median is not None:
        s += (f" Cosine similarity to the initial weights: {b.init_cosine_median:.2f} with batch norm, "
              f"{a.init_cosine_median:.2f} without.")
    hp_a, hp_b = plain.hyperparameters, bn.hyperparameters
    if hp_a is None or hp_b is None:
        return s
    differ = [name for name, _ in P3_HYPER_WORDS if getattr(hp_a, name) != getattr(hp_b, name)]
    words = dict(P3_HYPER_WORDS)
    if differ:
        s += (" The two runs differ in batch normalisation and in " + " and ".join(words[k] for k in differ)
              + (f" ({fmt_g(hp_a.lr)} against {fmt_g(hp_b.lr)})" if differ == ["lr"] else "")
              + ", so this comparison alone does not say which of them shaped the filters.")
    else:
        s += " Their recipes are otherwise identical, so the difference is batch normalisation's."
    return s


# Hyper-parameters that could explain a difference between two runs besides the network, in words.
P3_HYPER_WORDS = [("lr", "the peak learning rate"), ("epochs", "the number of epochs"),
                  ("batch_size", "the batch size"), ("momentum", "the momentum"),
                  ("weight_decay", "the weight decay"), ("label_smoothing", "the label smoothing"),
                  ("schedule", "the schedule"), ("warmup_fraction", "the warm-up"),
                  ("crop_padding", "the crops"), ("crop_mode", "the crop padding"), ("flip", "the flips"),
                  ("flip_mode", "the flip mode"), ("cutout", "the Cutout"), ("ema_decay", "the weight averaging"),
                  ("seed", "the seed")]


def p3_bn_sentence(small: P3Result | None, bn: P3Result | None) -> str | None:
    """Compare the two part-1/2 networks from their results (loss after the same epochs, test accuracy)."""
    if not small or not bn:
        return None
    a, b = small.train_loss, bn.train_loss
    parts = []
    if a and b:
        n = min(len(a), len(b))
        la, lb = a[n - 1], b[n - 1]
        word = "lower" if lb < la else "higher" if lb > la else "the same"
        parts.append(f"After {_plural(n, 'epoch')} the batch-norm network's training loss is {fmt_f(lb)}, "
                     f"{word} than the plain network's {fmt_f(la)}")
        reach = next((i + 1 for i, v in enumerate(b) if v <= a[n - 1]), None)
        if lb < la and reach is not None and reach < n:
            parts[-1] += f"; it is already below that final value after epoch {reach}"
    sa, sb = small.final_test_accuracy, bn.final_test_accuracy
    if not is_missing(sa) and not is_missing(sb):
        diff = 100 * (sb - sa)
        parts.append(f"its test accuracy is {fmt_pct(sb, 2)} against {fmt_pct(sa, 2)} "
                     f"({'+' if diff >= 0 else ''}{diff:.2f} percentage points)")
    if not parts:
        return None
    if len(parts) == 1 and not (a and b):
        return "The batch-norm network's " + parts[0][4:] + "."
    return parts[0] + (", and " + parts[1] if len(parts) > 1 else "") + "."


def p3_better_sentence(better: P3Result | None, small: P3Result | None, bn: P3Result | None) -> str | None:
    """Part 3's accuracy and size against parts 1 and 2."""
    if not better or is_missing(better.final_test_accuracy):
        return None
    s = f"The part-3 network reaches {fmt_pct(better.final_test_accuracy, 2)} test accuracy"
    others = [(name, r.final_test_accuracy) for name, r in (("part 1", small), ("part 2", bn))
              if r and not is_missing(r.final_test_accuracy)]
    if others:
        s += ", against " + " and ".join(f"{fmt_pct(a, 2)} for {n}" for n, a in others)
    params = [(n, r.parameters) for n, r in (("it", better), ("part 1", small)) if r and r.parameters]
    if len(params) == 2:
        s += f" ({fmt_int(params[0][1])} parameters against {fmt_int(params[1][1])})"
    return s + "."


# ------------------------------------------------------------------------------------------- measurements
def filter_stats(weights_hwio, fixed: bool = False, init_hwio=None) -> FilterStats:
    """FilterStats of first-layer conv weights (kh, kw, C, K). fixed: the patch-whitening filters, whose
    second half are the first half negated (left out of the counts). init_hwio: the same layer's initial
    weights (same seed), for the similarity to them."""
    import numpy as np
    w = np.moveaxis(np.asarray(weights_hwio, dtype=np.float64), 3, 0)       # (K, kh, kw, C)
    if fixed:
        w = w[: w.shape[0] // 2]
    energy = (w ** 2).sum(axis=(1, 2, 3))
    safe = np.where(energy > 0, energy, 1.0)
    colour = ((w - w.mean(axis=3, keepdims=True)) ** 2).sum(axis=(1, 2, 3)) / safe
    dx = ((w[:, 1:] - w[:, :-1]) ** 2).sum(axis=(1, 2, 3))
    dy = ((w[:, :, 1:] - w[:, :, :-1]) ** 2).sum(axis=(1, 2, 3))
    pairs = w[:, 1:].size // len(w) + w[:, :, 1:].size // len(w)
    rough = ((dx + dy) / pairs) / (2 * safe / w[0].size)
    cosine = None
    if init_hwio is not None:
        w0 = np.moveaxis(np.asarray(init_hwio, dtype=np.float64), 3, 0).reshape(len(w), -1)
        flat = w.reshape(len(w), -1)
        norms = np.linalg.norm(flat, axis=1) * np.linalg.norm(w0, axis=1)
        cosine = float(np.median((flat * w0).sum(axis=1) / np.where(norms > 0, norms, 1.0)))
    norm = np.sqrt(energy)
    return FilterStats(fixed=fixed, n_filters=int(len(w)), size=int(w.shape[1]),
                       colour_share_median=float(np.median(colour)), colour_filters=int((colour >= COLOUR_AT).sum()),
                       grey_filters=int((colour < GREY_BELOW).sum()), roughness_median=float(np.median(rough)),
                       smooth_filters=int((rough < SMOOTH_BELOW).sum()), norm_min=float(norm.min()),
                       norm_max=float(norm.max()), first_one_sign=bool((w[0] > 0).all() or (w[0] < 0).all()),
                       init_cosine_median=cosine)


# ------------------------------------------------------------------------------------------- files read back
HISTORY_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_seconds", "images_per_second")
P3_FIELDS = frozenset(f.name for f in fields(P3Result))
# Valid values of the fields every P3Result has, so a companion's own fields can be type-checked alone.
_REQUIRED = {"problem": "p3", "model": "small", "backend": "numpy", **{k: [] for k in HISTORY_KEYS},
             "final_test_accuracy": 0.0, "final_test_error": 1.0, "command": "", "initialisation": "",
             "architecture": [], "weights_file": "", "figures": {}, "discussion": ""}


def _numbers(value) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def read_companion(path: Path) -> dict:
    """The results JSON saved beside a weights file (its training history and timings) as a dict of
    P3Result fields, {} if there is none; UserError when it is there but not such a file. Fields this
    version does not know are left out, with a note."""
    if not path.is_file():
        return {}
    what = f"{path} (the results JSON beside --weights)"
    try:
        trained = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{what} is not valid JSON; fix or remove it") from None
    if not isinstance(trained, dict):
        raise UserError(f"{what} is not a JSON object; expected the results.json of the run that made the weights")
    for key in HISTORY_KEYS:
        if key in trained and not (isinstance(trained[key], list) and _numbers(trained[key])):
            raise UserError(f"{what}: '{key}' must be a list of numbers, one per epoch; fix or remove the file")
    for key in ("seconds", "epochs"):
        if key in trained and not _numbers([trained[key]]):
            raise UserError(f"{what}: '{key}' must be a number; fix or remove the file")
    lengths = {key: len(trained[key]) for key in HISTORY_KEYS if key in trained}
    if len(set(lengths.values())) > 1:
        raise UserError(f"{what}: the per-epoch lists differ in length ({lengths}); fix or remove the file")
    unknown = sorted(set(trained) - P3_FIELDS)
    if unknown:
        print(f"note: {path}: field(s) {', '.join(unknown)} unknown to this version; left out of the results",
              file=sys.stderr)
    kept = {k: v for k, v in trained.items() if k in P3_FIELDS}
    try:
        P3Result.from_json({**_REQUIRED, **kept})
    except ResultError as e:
        raise UserError(f"{what}: {e}; fix or remove the file") from None
    return kept


def read_train_loss(path: Path) -> tuple[str, list]:
    """(curve label, training loss per epoch) of a P3 results.json, for the comparison plot; any results
    file with a 'train_loss' list will do (older ones too)."""
    if path.is_dir():
        raise UserError(f"results file {path} is a folder; expected a P3 results.json")
    if not path.is_file():
        raise UserError(f"results file {path} does not exist; expected a P3 results.json")
    try:
        r = json.loads(path.read_text())
        losses = r["train_loss"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise UserError(f"{path} is not a P3 results.json (expected a 'train_loss' list)") from None
    if not isinstance(losses, list) or not losses or not _numbers(losses) or not all(map(math.isfinite, losses)):
        raise UserError(f"{path}: 'train_loss' must be a non-empty list of finite numbers, one per epoch")
    model = r.get("model")
    label = (model if isinstance(model, str) else path.parent.name) + (" (batch norm)" if model == "small_bn" else "")
    return label, losses


def ablation_rows(path: Path) -> dict:
    """Part 3's results extras from an ablation.json (problems/p3_better_ablation.py): the table (one row per
    variant, mean over its seeds), the budget, what it was scored on and the discussion made from the rows.
    Reads only what the table needs, so a hand-trimmed file will do."""
    expected = "the ablation.json written by problems/p3_better_ablation.py (a 'variants' list)"
    accuracy_keys = ("final_test_accuracy", "final_test_accuracy_without_tta", "final_val_accuracy",
                     "final_val_accuracy_without_tta")
    try:
        ab = json.loads(path.read_text())
        runs = []
        for v in ab["variants"]:
            accs = {k: v.get(k) for k in accuracy_keys}
            if not all(a is None or _numbers([a]) for a in accs.values()):
                raise TypeError("an accuracy that is not a number")
            runs.append(AblationRun(variant=str(v["variant"]), seed=int(v.get("seed", 0)), removed=str(v["removed"]),
                                    diverged=bool(v.get("diverged")), seconds=0.0, **accs))
        evaluated_on = ab.get("evaluated_on")
        if evaluated_on is not None and not isinstance(evaluated_on, str):
            raise TypeError("evaluated_on is not text")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"ablation file {path} is not {expected}") from None
    rows = ablation_table(runs)
    budget = ab.get("budget")
    split = "validation" if is_validation(evaluated_on) else "test"
    return {"ablation": [_json(r) for r in rows], "ablation_budget": budget, "ablation_evaluated_on": evaluated_on,
            "ablation_discussion": " ".join(ablation_sentences(rows, budget, split))}
