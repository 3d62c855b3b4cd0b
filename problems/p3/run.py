"""P3's runs: train a network, evaluate saved weights, compare two runs. Each returns its typed result (and
the weights it holds); problems/p3/cli.py writes them with their figures."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from problems.common.cli import UserError, command_line, data_root, portable_path, portable_text
from scratchnet.io import load_npz

from . import models
from .ablation import describe as describe_split
from .recipe import EMA_WARMUP, RATIONALE, TTA_NAMES, TTA_VIEWS, Recipe
from .result import (HISTORY_KEYS, P3Comparison, P3Result, ablation_rows, discussion_for, read_companion,
                     read_train_loss)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ABLATION = REPO / "weights" / "p3_better_ablation.json"   # part 3's committed ablation
WHITENING_IMAGES = 5000   # images whose 2x2 patches fix the better net's whitening filters (as published)


class Diverged(UserError):
    """Training stopped on a non-finite loss; the message says where (a control experiment records it)."""


def load_data(data_dir: str | None, download: bool = True, limit_per_class: int | None = None,
              progress: bool = True):
    """CIFAR-10 from the data root (downloading the official pickles if allowed and needed)."""
    from .cifar_download import load_cifar10_for_cli
    return load_cifar10_for_cli(data_root(data_dir), download=download, limit_per_class=limit_per_class,
                                progress=progress)


def device_of(learner) -> str:
    """'cpu' or 'cuda': where the learner's arithmetic ran (epoch times mean little without it)."""
    if hasattr(learner, "device"):  # the PyTorch reference
        return learner.device
    return "cpu" if learner.backend == "numpy" else "cuda"


def whitening_sample(labels, seed: int, count: int = WHITENING_IMAGES) -> np.ndarray:
    """Indices of the `count` training images (all, if fewer) whose patches fix the whitening filters: drawn at
    random with `seed`, in sorted order. Not the first `count`: the JPEG copy loads sorted by class, so those
    would all be airplanes (the published recipe's first 5,000 come from CIFAR-10's own shuffled order)."""
    n = len(labels)
    if n <= count:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, count, replace=False))


def make_learner(model: str, backend: str, recipe: Recipe, data=None, **model_options):
    """The scratchnet network (numpy/cupy) or its PyTorch reference twin, behind one learner interface.

    small/small_bn on torch: torch builds and initialises the net (same scheme). better on torch: the
    scratchnet net is built exactly as for numpy (whitening filters from the training images, Dirac convs,
    zero head, the same seed) and the twin mirrors it, weights included, so both start identical.
    The recipe adds its model and whitening options and its learner plan (the airbench recipe's parameter
    groups, decoupled decay, summed loss, Lookahead and whitening-bias epochs), the same on both sides;
    without data (evaluating saved weights) there is no plan: nothing is trained."""
    config = recipe.train
    if backend == "torch" and model != "better":
        from .torch_reference import TorchLearner, default_device
        return TorchLearner(model, config, device=default_device(), ema_warmup=EMA_WARMUP)
    whitening = None
    if model == "better":
        model_options = {**recipe.model_options(), **model_options}
        use_whitening = model_options.pop("whitening", True)  # False: the ablation's He-init first layer
        if data is not None and use_whitening:  # eval-only loads the saved filters instead
            from scratchnet.data.augment import channel_stats, normalize
            from scratchnet.init import patch_whitening_filters
            mean, std = channel_stats(data.train_x)
            sample = data.train_x[whitening_sample(data.train_y, config.seed)]
            whitening = patch_whitening_filters(normalize(sample, mean, std), seed=config.seed,
                                                **recipe.whitening_options())
    net = models.build(model, seed=config.seed, whitening=whitening, **model_options)
    plan = recipe.learner_plan(net, len(data.train_y)) if data is not None else {}
    if backend == "torch":
        from .torch_reference import TorchLearner, default_device
        try:
            return TorchLearner(model, config, device=default_device(), net=net, ema_warmup=EMA_WARMUP, **plan)
        except TypeError as e:  # a layer the twin cannot mirror
            raise UserError(f"--backend torch cannot mirror this {model} net: {e}") from None
    from scratchnet.train import ScratchnetLearner
    return ScratchnetLearner(net, config, backend, ema_warmup=EMA_WARMUP, **recipe.scratchnet_options(plan))


def better_extras(ablation_path: Path | None, rationale: list[str] | None = None) -> dict:
    """Part 3's results-file extras: the design rationale (the default recipe's unless given) and, when its
    file exists, the ablation table."""
    extras = {"rationale": rationale or RATIONALE, "design_notes": "docs/p3_better.md"}
    if ablation_path is None:  # not asked for: the committed ablation, when the checkout has it
        ablation_path = DEFAULT_ABLATION if DEFAULT_ABLATION.is_file() else None
    elif not ablation_path.is_file():
        why = "is a folder" if ablation_path.is_dir() else "does not exist"
        raise UserError(f"ablation file {ablation_path} {why}; expected the ablation.json written by "
                        "problems/p3_better_ablation.py")
    if ablation_path is not None:
        extras.update(ablation_rows(ablation_path), ablation_file=portable_path(ablation_path))
    return extras


def read_weights(path: Path) -> dict:
    """The arrays of a weights .npz, or one clear UserError naming the file."""
    if path.is_dir():
        raise UserError(f"weights file {path} is a folder; expected a .npz saved by this script")
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; expected a .npz saved by this script")
    try:
        weights = load_npz(path)
    except Exception as e:
        raise UserError(f"weights file {path} is not a readable .npz ({type(e).__name__})") from None
    for name, value in weights.items():
        if not np.issubdtype(value.dtype, np.floating):
            raise UserError(f"weights file {path}: {name} has dtype {value.dtype}; expected floating-point arrays")
        if not np.isfinite(value).all():
            raise UserError(f"weights file {path}: {name} holds NaN or infinite values; expected finite weights")
        if name.endswith("running_var") and (value < 0).any():
            raise UserError(f"weights file {path}: {name} has negative entries; a variance is >= 0")
    return weights


def train(model: str, backend: str, recipe: Recipe, data, out: Path, resume: bool = False, progress: bool = True,
          ablation: Path | None = None, data_dir: str | None = None,
          stop_after: int | None = None) -> tuple[P3Result, dict]:
    """Train `model` with `recipe` (checkpoints in `out`); (its result without figures, its weights).
    stop_after: end after that many epochs of the recipe's schedule (recorded as `stopped_after`)."""
    from dataclasses import asdict
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()  # before the learner: the better net's whitening filters are part of training
    learner = make_learner(model, backend, recipe, data)
    split = data.info.get("split")   # set by --val-per-class: the "test" images are the validation split
    print(f"P3 {model}: {backend} backend, {describe_split(data) if split else data.describe()}")
    try:
        history = recipe.fit(learner, data, out_dir=out, resume=resume, progress=progress, stop_after=stop_after)
    except ValueError as e:  # e.g. a checkpoint made with other settings
        raise UserError(str(e)) from None
    except FloatingPointError as e:  # the loss went inf/nan: the learning rate (or the data) is unusable
        raise Diverged(str(e)) from None
    seconds = time.perf_counter() - t0
    hist = asdict(history)
    epochs, accuracy, seconds_all = recipe.train.epochs, hist["test_accuracy"][-1], sum(hist["epoch_seconds"])
    weights = learner.weights()
    ran = len(hist["train_loss"])
    steps_per_epoch = len(data.train_y) // recipe.train.batch_size
    recipe_name = recipe.own_settings().get("recipe", "default")
    fields = {
        "problem": "p3", "model": model, "backend": backend, "device": device_of(learner), "epochs": epochs,
        **({"stopped_after": ran} if ran < recipe.train.epoch_count else {}),
        "steps_per_epoch": steps_per_epoch, "total_steps": recipe.train.total_steps(steps_per_epoch), **hist,
        "final_test_accuracy": accuracy, "final_test_error": 1 - accuracy,
        "seconds": seconds_all, "seconds_this_invocation": seconds, "command": command_line(),
        "hyperparameters": recipe.flat(), **recipe.describe(),
        "normalisation": "per-channel mean/std of the training set",
        "initialisation": models.initialisation_for(model, recipe_name), "architecture": models.ARCHITECTURE[model],
        "first_conv_padding": 0, "parameters": learner.num_parameters(), "data_source": data.source,
        "data_dir": portable_path(data.directory, data_dir), "n_train": int(len(data.train_y)),
        "n_test": int(len(data.test_y)), **({"evaluated_on": split} if split else {}),
        "weights_file": "weights.npz", "layers": models.layer_table_for(model),
        **(better_extras(ablation, recipe.rationale()) if model == "better" else {}),
        "filter_stats": measured_filters(model, weights, backend, recipe.train.seed), "figures": {},
        "discussion": discussion_for(model, accuracy, data.source, epochs, seconds_all, backend,
                                     "validation" if split else "test")}
    return P3Result.from_json(fields), weights


def measured_filters(model: str, weights: dict, trained_by: str | None, seed) -> dict:
    """The first layer's FilterStats as JSON. For a scratchnet run the seed rebuilds the initial filters, so
    their similarity to the trained ones is measured too; PyTorch's twin draws its own (not rebuilt)."""
    from dataclasses import asdict

    from scratchnet.backend import to_numpy

    from .result import filter_stats
    if model == "better":
        return asdict(filter_stats(weights["whiten.weight"], fixed=True))
    init = None
    if trained_by in ("numpy", "cupy") and isinstance(seed, int) and not isinstance(seed, bool):
        init = to_numpy(models.build(model, seed=seed).conv1.weight.data)
    return asdict(filter_stats(weights["conv1.weight"], init_hwio=init))


def evaluate_weights(model: str, backend: str, weights_path: Path, recipe: Recipe, data=None,
                     no_data: str | None = None, ablation: Path | None = None,
                     data_dir: str | None = None) -> tuple[P3Result, dict]:
    """Evaluate saved weights on the test set; with data None (no CIFAR-10 to be had, `no_data` says why)
    take the accuracy and curves recorded beside the weights instead, marked as not re-evaluated.
    (The result without figures, the weights.)"""
    weights = read_weights(weights_path)
    learner = make_learner(model, backend, recipe)
    try:
        learner.load_weights(weights)
    except ValueError as e:
        raise UserError(f"weights {weights_path} do not fit model {model}: {e}") from None
    companion = weights_path.with_suffix(".json")
    trained = read_companion(companion)  # checked before the evaluation
    fields = {**trained, "problem": "p3", "model": model, "backend": backend, "eval_only": True,
              "weights_file": portable_path(weights_path), "command": command_line(),
              **{k: trained.get(k, []) for k in HISTORY_KEYS},
              "initialisation": trained.get("initialisation", models.initialisation_for(model)),
              "architecture": models.ARCHITECTURE[model], "layers": models.layer_table_for(model)}
    if data is not None:
        from scratchnet.data.augment import channel_stats
        from scratchnet.train import evaluate
        mean, std = channel_stats(data.train_x)
        test_loss, test_acc = evaluate(learner, data.test_x, data.test_y, mean, std, views=recipe.views())
        split = data.info.get("split")   # --val-per-class: scored on the training set's held-out images
        fields["evaluated_on"] = split or None   # what this evaluation read, not what the training run scored
        fields.update(evaluated=True, final_test_accuracy=test_acc, final_test_error=1 - test_acc,
                      final_test_loss=test_loss, data_source=data.source,
                      data_dir=portable_path(data.directory, data_dir), n_test=int(len(data.test_y)))
        if recipe.views():  # with test-time views, the single-view accuracy too: like with like for parts 1-2
            _, fields["final_test_accuracy_without_tta"] = evaluate(learner, data.test_x, data.test_y, mean, std,
                                                                    views=TTA_VIEWS[0])
    else:
        acc = trained.get("final_test_accuracy")
        if not isinstance(acc, (int, float)) or isinstance(acc, bool):
            raise UserError(f"{no_data}; and {companion} records no test accuracy to show instead")
        fields.update(evaluated=False, final_test_accuracy=acc, final_test_error=1 - acc,
                      recorded_note="recorded when the weights were made, not re-evaluated "
                                    f"({portable_text(no_data, data_dir)})")
    if model == "better":
        fields.update(better_extras(ablation, recipe.rationale()))
    recorded = trained.get("hyperparameters")
    if data is not None and isinstance(recorded, dict) and recorded.get("tta") != recipe.tta:
        # --tta: the views evaluated now, not the training run's
        fields["hyperparameters"] = {**recorded, "tta": recipe.tta}
        fields["test_time_augmentation"] = TTA_NAMES[recipe.tta]
        if not recipe.views():
            fields.pop("final_test_accuracy_without_tta", None)
    seed = recorded.get("seed") if isinstance(recorded, dict) else None   # the training run's, not this one's
    fields["filter_stats"] = measured_filters(model, weights, trained.get("backend"), seed)
    fields.update(figures={}, discussion=discussion_for(
        model, fields["final_test_accuracy"], fields.get("data_source") or "", trained.get("epochs", 0),
        trained.get("seconds", 0.0), backend))
    return P3Result.from_json(fields), weights


def compare(paths, out: Path) -> tuple[P3Comparison, list]:
    """The training losses of two results files: (the comparison, its curves [(label, losses)] for the plot)."""
    curves = [read_train_loss(p) for p in paths]
    return P3Comparison(problem="p3", compared=[portable_path(p) for p in paths],
                        figures={"bn_comparison": "loss_bn_comparison.png"},
                        final_train_loss={label: losses[-1] for label, losses in curves if losses},
                        discussion="Training loss per epoch of the two P3 networks on one axis."), curves

