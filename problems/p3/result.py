"""P3's results as typed objects: what problems/p3_small_cnn.py and problems/p3_better_ablation.py write,
the checks on the files they read back (the results JSON beside a weights file, results to compare), and
the sentences the report makes from them.

    P3Result        results.json of one network (trained, or evaluated with --eval-only); part 3's
                    extras (rationale, ablation table) and --eval-only's fields are optional
    P3Comparison    comparison.json: the with/without batch-norm loss plot
    AblationResult  ablation.json of problems/p3_better_ablation.py, one AblationRun per variant and seed

Fields marked `optional()` are left out of the JSON while None (the scripts write them only when they
apply); every other field is always written, null where it has no value. Units: accuracies and errors
are fractions of the test set, times in seconds, learning rates per step.
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
    """The run's recipe, flat: scratchnet.train.TrainConfig's fields plus P3's flip_mode and tta."""
    epochs: int
    batch_size: int
    lr: float                   # peak learning rate
    momentum: float
    nesterov: bool
    weight_decay: float
    label_smoothing: float
    schedule: str               # 'onecycle', 'cosine' or 'constant'
    warmup_fraction: float      # share of all steps spent warming up (onecycle)
    crop_padding: int           # random-crop padding, pixels
    crop_mode: str              # 'zero' or 'reflect'
    flip: bool
    flip_mode: str              # 'random' or 'alternating'
    ema_decay: float            # 0: no weight averaging
    tta: int                    # test-time views: 0 none, 1 + mirror, 2 + mirror and 1-pixel shifts
    eval_batch_size: int
    seed: int


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
    """Part 3's ablation table as the better net's results carry it."""
    variant: str
    test_accuracy: float | None     # None: the run diverged
    note: str


@dataclass(kw_only=True)
class P3Result(_P3Result):
    """One network's results.json: its training history and recipe, or (eval_only) its evaluation."""
    problem: str                            # 'p3'
    model: str                              # 'small', 'small_bn' or 'better'
    backend: str                            # 'numpy', 'cupy' or 'torch'
    device: str | None = optional()         # 'cpu' or 'cuda': where training ran
    epochs: int | None = optional()
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
    weights_file: str
    layers: list[LayerRow] = field(default_factory=list)
    rationale: list[str] | None = optional()             # part 3: the design choices, one line each
    design_notes: str | None = optional()
    ablation: list[AblationRow] | None = optional()
    ablation_budget: str | None = optional()
    ablation_discussion: str | None = optional()
    ablation_file: str | None = optional()
    figures: dict[str, str]                 # role (loss, filters, accuracy_vs_time) -> file beside the JSON
    discussion: str
    seconds_note: str | None = optional()   # a note added by hand to a committed run
    eval_only: bool | None = optional()
    evaluated: bool | None = optional()     # False: the accuracy shown was recorded, not re-evaluated
    final_test_loss: float | None = optional()
    recorded_note: str | None = optional()


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
    final_test_accuracy: float | None       # None when it diverged
    final_test_accuracy_without_tta: float | None = optional()
    test_accuracy: list[float] | None = optional()
    train_loss: list[float] | None = optional()
    seconds: float
    config_overrides: dict[str, Any] | None = optional()   # recipe settings this variant changes
    model_options: dict[str, Any] | None = optional()      # better_net switches this variant changes


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
    n_test: int
    data_source: str
    variants: list[AblationRun]
    command: str
    figures: dict[str, str]
    discussion: str


# ------------------------------------------------------------------------------------------- text
def discussion_for(model: str, accuracy: float, data_source: str, epochs: int, seconds: float, backend: str) -> str:
    """The results file's one-line summary (the report makes its own text from the fields: p3_facts)."""
    lossy = " on the lossy JPEG copy of CIFAR-10" if "lossy" in data_source else ""
    return (f"The {model} network reached {100 * accuracy:.1f}% test accuracy{lossy} after "
            f"{epochs} epochs ({seconds / 60:.1f} min of training).")


def ablation_discussion(runs: list[AblationRun], budget: str) -> str:
    full = [r for r in runs if r.variant == "full" and r.final_test_accuracy is not None]
    if not full:
        return "The full recipe did not finish, so no trick can be measured against it."
    base = full[0].final_test_accuracy
    lines = [f"Short runs ({budget}); the full recipe reached {100 * base:.2f}% test accuracy."]
    if len(full) > 1:
        accs = [r.final_test_accuracy for r in full]
        lines.append(f"Seed-to-seed spread of the full recipe: {100 * (max(accs) - min(accs)):.2f} points "
                     f"over {len(accs)} seeds; smaller differences below are noise.")
    tta_off = full[0].final_test_accuracy_without_tta
    if tta_off is not None:
        lines.append(f"Test-time augmentation (mirror + 1-pixel shifts) is worth {100 * (base - tta_off):+.2f} "
                     f"points ({100 * tta_off:.2f}% single-view).")
    for r in runs:
        if r.variant == "full":
            continue
        if r.final_test_accuracy is None:
            lines.append(f"Without {r.removed}: training diverged.")
        else:
            lines.append(f"Without {r.removed}: {100 * r.final_test_accuracy:.2f}% "
                         f"({100 * (r.final_test_accuracy - base):+.2f} points).")
    lines.append("These rank the tricks for the first few epochs on a subset, with one seed each; the full "
                 "run's benefit can differ.")
    return " ".join(lines)


# The report's sentences. Formatting as report/build_report.py formats numbers (a dash for a missing one).


def _plural(n, word: str) -> str:
    return f"{fmt_int(n)} {word if n == 1 else word + 's'}"


P3_HYPER = [("epochs", "epochs"), ("batch_size", "batch size"), ("lr", "peak learning rate"),
            ("momentum", "momentum"), ("weight_decay", "weight decay"), ("label_smoothing", "label smoothing"),
            ("seed", "seed")]
P3_RECIPE_TEXT = [("optimizer", "optimiser"), ("schedule", "schedule"), ("augmentation", "augmentation"),
                  ("weight_averaging", "weight averaging"), ("test_time_augmentation", "test-time augmentation"),
                  ("normalisation", "input normalisation")]


def p3_facts(d: P3Result) -> dict:
    """What the report's section on one network shows beyond the fields: the hyper-parameter rows, the
    epochs run, the best epoch, the training minutes."""
    hp = d.hyperparameters
    rows = [(label, fmt_g(getattr(hp, k))) for k, label in P3_HYPER] if hp is not None else []
    rows += [(label, fmt_text(getattr(d, k))) for k, label in P3_RECIPE_TEXT if getattr(d, k) not in (None, "")]
    acc = d.test_accuracy
    best = max(acc) if acc else None
    return {"hyper": rows, "epochs_run": len(d.train_loss),
            "best_epoch_acc": best, "best_epoch": (acc.index(best) + 1) if acc else None,
            "minutes": d.seconds / 60 if not is_missing(d.seconds) else None,
            "eval_only": bool(d.eval_only), "filters": filters_sentence(d)}


def filters_sentence(d: P3Result) -> str:
    """The filter grid's caption after 'Part N: ': what it shows, from how the first layer was made."""
    if "whitening" in (d.initialisation or "").lower():
        return ("the first-layer filters. The first layer of this network is not learned: its filters are the "
                "fixed 2x2 patch-whitening filters computed from the training images' 2x2 patches (eigenvectors "
                "of their covariance, each also negated), so the grid shows the directions of that covariance, "
                "not learned features.")
    return "the first-layer filters as trained, each contrast-stretched on its own."


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
        parts.append(f"its test accuracy is {fmt_pct(sb)} against {fmt_pct(sa)} "
                     f"({'+' if diff >= 0 else ''}{diff:.1f} percentage points)")
    if not parts:
        return None
    if len(parts) == 1 and not (a and b):
        return "The batch-norm network's " + parts[0][4:] + "."
    return parts[0] + (", and " + parts[1] if len(parts) > 1 else "") + "."


def p3_better_sentence(better: P3Result | None, small: P3Result | None, bn: P3Result | None) -> str | None:
    """Part 3's accuracy and size against parts 1 and 2."""
    if not better or is_missing(better.final_test_accuracy):
        return None
    s = f"The part-3 network reaches {fmt_pct(better.final_test_accuracy)} test accuracy"
    others = [(name, r.final_test_accuracy) for name, r in (("part 1", small), ("part 2", bn))
              if r and not is_missing(r.final_test_accuracy)]
    if others:
        s += ", against " + " and ".join(f"{fmt_pct(a)} for {n}" for n, a in others)
    params = [(n, r.parameters) for n, r in (("it", better), ("part 1", small)) if r and r.parameters]
    if len(params) == 2:
        s += f" ({fmt_int(params[0][1])} parameters against {fmt_int(params[1][1])})"
    return s + "."


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
    """Part 3's results extras from an ablation.json (problems/p3_better_ablation.py): the table rows, the
    budget and the discussion. Reads only what the table needs, so a hand-trimmed file will do."""
    expected = "the ablation.json written by problems/p3_better_ablation.py (a 'variants' list)"
    try:
        ab = json.loads(path.read_text())
        rows = [{"variant": v["variant"] + (f" (seed {v['seed']})" if v["seed"] != ab.get("seed") else ""),
                 "test_accuracy": v.get("final_test_accuracy"),
                 "note": "removed: " + v["removed"] + ("; diverged" if v.get("diverged") else "")}
                for v in ab["variants"]]
        if not all(r["test_accuracy"] is None or _numbers([r["test_accuracy"]]) for r in rows):
            raise TypeError("an accuracy that is not a number")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"ablation file {path} is not {expected}") from None
    return {"ablation": rows, "ablation_budget": ab.get("budget"), "ablation_discussion": ab.get("discussion")}
