"""Part 3's ablation: the better net's recipe with one trick removed per variant, each trained for the same
short budget on the same subset with the same seeds (problems/p3/ablation_cli.py reads the flags).

Every run is scored on a validation split held out of the training set, never on the test set: choosing the
recipe's parts by test accuracy would tune the recipe to the test images the final accuracy is read from.
The split is the last V training images of each class (the JPEG copy loads sorted by class, so the last
V * 10 images would all be trucks), the ablation's training subset the first K of each class; K + V must
not exceed a class's images, so the two never share an image."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from problems.common.cli import UserError, command_line
from problems.common.result import ResultError
from scratchnet.io import write_json

from .recipe import RECIPES, Recipe
from .result import AblationResult, AblationRun, ablation_discussion

# variant -> (what is removed, recipe overrides, better_net overrides)
VARIANTS = {
    "full": ("nothing (the recipe)", {}, {}),
    "no_whitening": ("fixed patch-whitening first layer (He init, trained instead)", {}, {"whitening": False,
                                                                                          "train_whitening": True}),
    "no_dirac": ("identity (Dirac) init of the 3x3 convs", {}, {"dirac": False}),
    "no_label_smoothing": ("label smoothing 0.2", {"label_smoothing": 0.0}, {}),
    "no_ema": ("weight averaging (EMA)", {"ema_decay": 0.0}, {}),
    "random_flip": ("flips alternating between epochs (random flips instead)", {"flip_mode": "random"}, {}),
    "no_logit_scale": ("the 1/9 factor on the logits", {}, {"logit_scale": 1.0}),
}
DEFAULT_VARIANTS = ("full", "no_whitening", "no_dirac", "no_label_smoothing", "no_ema", "random_flip")
TRAIN_PER_CLASS, VAL_PER_CLASS = 500, 500


def evaluated_on(val_per_class: int) -> str:
    """ablation.json's `evaluated_on`: the split every accuracy is measured on."""
    return f"validation split (last {val_per_class} training images per class)"


def validation_split(labels, train_per_class: int | None, val_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices) into the training set: per class the first `train_per_class`
    images (None: all the others) train and the last `val_per_class` validate, so both are balanced and never
    overlap; UserError when a class has too few images for both."""
    labels = np.asarray(labels)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep = len(idx) - val_per_class if train_per_class is None else train_per_class
        if keep < 1 or keep + val_per_class > len(idx):
            raise UserError(f"class {c} has {len(idx)} training images, fewer than {max(keep, 1)} to train on "
                            f"plus {val_per_class} to validate on; lower --limit-per-class or --val-per-class")
        train.append(idx[:keep])
        val.append(idx[len(idx) - val_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def held_out(data, train_per_class: int | None, val_per_class: int):
    """The data the ablation's runs (and `p3_small_cnn.py --val-per-class`) see: the training subset (None:
    every image not held out) as the training split and the validation images in the place of the test split
    (which the loop scores after every epoch); the test images are dropped."""
    train, val = validation_split(data.train_y, train_per_class, val_per_class)
    return replace(data, train_x=data.train_x[train], train_y=data.train_y[train], test_x=data.train_x[val],
                   test_y=data.train_y[val], info={**data.info, "split": evaluated_on(val_per_class),
                                                   "train_per_class": train_per_class})


def describe(data) -> str:
    """One line for the log and the run folders' settings: the validation split named as such."""
    return (f"CIFAR-10 from {data.directory} ({data.source}): {len(data.train_y)} training images, "
            f"{len(data.test_y)} validation images held out of the training set ({data.info.get('split')})")


def variant_recipe(name: str, epochs: int, batch_size: int, lr: float, seed: int) -> Recipe:
    """The better net's recipe at the ablation's budget, with variant `name`'s trick removed."""
    flat = dict(RECIPES["better"], epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    return Recipe.from_flat(**{**flat, **VARIANTS[name][1]})


def _finished(done: Path, name: str) -> AblationRun | None:
    """The run.json of a run that finished earlier, or None when it is absent or unreadable."""
    try:
        run = AblationRun.read(done)
    except ResultError:
        return None
    return run if run.variant == name else None


def run_variant(data, name: str, seed: int, out: Path, backend: str = "numpy", epochs: int = 4,
                batch_size: int = 256, lr: float = 0.4, resume: bool = False, progress: bool = True) -> AblationRun:
    """Train one variant with one seed in out/runs/<variant>_seed<seed>/ (its settings, a checkpoint per
    epoch, run.json once finished); with resume, reuse a finished run or continue an interrupted one."""
    from .run import make_learner
    removed, config_overrides, model_options = VARIANTS[name]
    recipe = variant_recipe(name, epochs, batch_size, lr, seed)
    run_dir = out / "runs" / f"{name}_seed{seed}"
    settings = json.loads(json.dumps({"config": recipe.flat(), "model_options": model_options,
                                      "backend": backend, "data": describe(data)}))  # as the JSON holds it
    done, settings_file = run_dir / "run.json", run_dir / "settings.json"
    if resume and settings_file.is_file():
        try:
            earlier_settings = json.loads(settings_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            earlier_settings = None
        if earlier_settings != settings:  # the checkpoint's settings alone do not cover the data
            raise UserError(f"{run_dir} holds a run made with other settings (data, backend or recipe); "
                            "use the same flags, or another --out, or drop --resume to start over")
        earlier = _finished(done, name) if done.is_file() else None
        if earlier is not None:
            print(f"  [{name}, seed {seed}] finished earlier: {done}")
            return earlier
        if done.is_file():
            print(f"  [{name}, seed {seed}] {done} is unreadable; running it again")
    write_json(settings_file, settings)
    log = lambda line: print(f"  [{name}, seed {seed}] {line}")  # noqa: E731
    t0 = time.perf_counter()
    learner = make_learner("better", backend, recipe, data, **model_options)
    try:
        history = asdict(recipe.fit(learner, data, out_dir=run_dir, resume=resume, progress=progress, log=log))
    except FloatingPointError as e:
        log(str(e))
        result = AblationRun(variant=name, seed=seed, removed=removed, diverged=True, error=str(e),
                             seconds=time.perf_counter() - t0)
    except ValueError as e:  # a checkpoint made with other settings
        raise UserError(str(e)) from None
    else:
        # the loop's "test" split is the validation split here (held_out)
        result = AblationRun(variant=name, seed=seed, removed=removed, diverged=False,
                             final_val_accuracy=history["test_accuracy"][-1],
                             final_val_accuracy_without_tta=history["final_test_accuracy_without_tta"],
                             val_accuracy=history["test_accuracy"], train_loss=history["train_loss"],
                             seconds=sum(history["epoch_seconds"]),  # all epochs, also those before a resume
                             config_overrides=config_overrides, model_options=model_options)
    result.write(done)
    checkpoint = run_dir / "checkpoint.npz"
    if checkpoint.is_file():
        checkpoint.unlink()  # run.json now holds what the report needs; the checkpoint is ~24 MB
    return result


def run(data, variants, out: Path, backend: str = "numpy", epochs: int = 4, batch_size: int = 256, lr: float = 0.4,
        seed: int = 0, seeds: int = 2, resume: bool = False, progress: bool = True,
        train_per_class: int = TRAIN_PER_CLASS, val_per_class: int = VAL_PER_CLASS) -> AblationResult:
    """Every variant with `seeds` seeds from `seed` on, trained on the first `train_per_class` training images
    of each class and scored on the last `val_per_class` (held_out); the result without its figure
    (ablation_cli draws it)."""
    split = held_out(data, train_per_class, val_per_class)
    print(f"P3 ablation: {len(variants)} variants x {seeds} seed(s), {epochs} epochs each, {describe(split)}")
    runs = []
    for name in variants:
        for s in range(seed, seed + seeds):
            runs.append(run_variant(split, name, s, out, backend, epochs, batch_size, lr, resume, progress))
    budget = (f"{epochs} epochs on {len(split.train_y)} training images (the first {train_per_class} of each "
              f"class), batch {batch_size}, peak lr {lr}, scored on {len(split.test_y)} validation images (the last "
              f"{val_per_class} training images of each class, never trained on), {data.source}")
    return AblationResult(problem="p3", part="better-net ablation", backend=backend, budget=budget, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed, n_train=int(len(split.train_y)),
                          n_validation=int(len(split.test_y)), evaluated_on=evaluated_on(val_per_class),
                          data_source=data.source, variants=runs, command=command_line(), figures={},
                          discussion=ablation_discussion(runs, budget, "validation"))
