"""Part 3's ablation: the better net's recipe with one trick removed per variant, each trained for the same
short budget on the same subset with the same seed (problems/p3/ablation_cli.py reads the flags)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

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
                                      "backend": backend, "data": data.describe()}))  # as the JSON holds it
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
                             final_test_accuracy=None, seconds=time.perf_counter() - t0)
    except ValueError as e:  # a checkpoint made with other settings
        raise UserError(str(e)) from None
    else:
        result = AblationRun(variant=name, seed=seed, removed=removed, diverged=False,
                             final_test_accuracy=history["test_accuracy"][-1],
                             final_test_accuracy_without_tta=history["final_test_accuracy_without_tta"],
                             test_accuracy=history["test_accuracy"], train_loss=history["train_loss"],
                             seconds=sum(history["epoch_seconds"]),  # all epochs, also those before a resume
                             config_overrides=config_overrides, model_options=model_options)
    result.write(done)
    checkpoint = run_dir / "checkpoint.npz"
    if checkpoint.is_file():
        checkpoint.unlink()  # run.json now holds what the report needs; the checkpoint is ~24 MB
    return result


def run(data, variants, out: Path, backend: str = "numpy", epochs: int = 4, batch_size: int = 256, lr: float = 0.4,
        seed: int = 0, seeds: int = 1, resume: bool = False, progress: bool = True) -> AblationResult:
    """Every variant (the full recipe with `seeds` seeds from `seed` on, the others with `seed`); the
    result without its figure (ablation_cli draws it)."""
    print(f"P3 ablation: {len(variants)} variants, {epochs} epochs each, {data.describe()}")
    runs = []
    for name in variants:
        for s in range(seed, seed + (seeds if name == "full" else 1)):
            runs.append(run_variant(data, name, s, out, backend, epochs, batch_size, lr, resume, progress))
    budget = (f"{epochs} epochs on {len(data.train_y)} training images, batch {batch_size}, "
              f"peak lr {lr}, tested on {len(data.test_y)} images, {data.source}")
    return AblationResult(problem="p3", part="better-net ablation", backend=backend, budget=budget, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed, n_train=int(len(data.train_y)),
                          n_test=int(len(data.test_y)), data_source=data.source, variants=runs,
                          command=command_line(), figures={}, discussion=ablation_discussion(runs, budget))
