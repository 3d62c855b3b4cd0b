"""P3 parts 1-2: the small CIFAR-10 CNN and its batch-norm twin, trained by scratchnet.

    python problems/p3_small_cnn.py --backend numpy|cupy|torch --model small|small_bn|both
        [--epochs N] [--stop-after K] [--batch-size B] [--lr LR] [--data-dir D] [--out DIR] [--seed S] [--resume]
    python problems/p3_small_cnn.py --model better [--recipe default|airbench] [--backend ...] [...]
    python problems/p3_small_cnn.py --model small --eval-only --weights weights/p3_small.npz
    python problems/p3_small_cnn.py --compare A/results.json B/results.json [--out DIR]

With no arguments it trains both networks with scratchnet-numpy (parts 1 and 2) and draws the
with/without batch-norm loss plot. Per model it writes to DIR/<model>/ with --model both (the default;
DIR defaults to results/p3), or to DIR itself for a single model:
results.json, loss.png, filters.png (all 64 first-layer 11x11x3 filters, 4 x 16), weights.npz and a
checkpoint after every epoch (--resume continues from it with identical results).
--stop-after K ends a run after its first K epochs while the schedule still spans all of them, so those
epochs match a full run's (the PyTorch twin's cross-check, problems/p3_twin_check.py); results.json records
`stopped_after`, and --resume later finishes the run from its checkpoint.
`--backend torch` trains the identical network in PyTorch on the same batches (on the GPU when PyTorch sees
one, as --backend cupy would run; there in strict float32, no TF32, with deterministic cuDNN): a reference
only. results.json records the device (cpu or cuda). For --model better the twin is built from the
scratchnet net itself (same whitening filters and initial weights) and trains with the same recipe: label
smoothing, the weight average (EMA) for evaluation, alternating flips and the final test-time views.
--recipe airbench trains the better net with the published airbench94 recipe's training choices instead
(problems/p3/recipe.AirbenchRecipe: batch 1024, 9.9 epochs, per-1024-example lr 11.5 on a summed loss,
Nesterov 0.85, decoupled decay, batch-norm biases at 64x the lr, triangular schedule, Lookahead, the
whitening bias trained for 3 epochs, batch-norm eps 1e-12); the PyTorch twin follows the same recipe.
--epochs may be fractional (9.9: the tenth epoch runs 90% of its steps, rounded up).
--val-per-class V trains on all but the last V training images of each class and scores on those (the JPEG
copy loads sorted by class, so the split is per class): the way to choose a recipe without the test set.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from problems.common.cli import (UserError, add_common_args, data_root, fraction_below_one, non_negative_int,
                                 portable_path, positive_float, positive_int)
from problems.common.downloads import add_download_flag
from problems.common.result import ResultError
from scratchnet import cpu

from .models import ALL_MODELS, MODELS
from .recipe import RECIPE_NAMES, TTA_VIEWS
from .result import P3Result

REPO = Path(__file__).resolve().parents[2]
# The committed part-1/2 runs, drawn beside part 3 in its accuracy-vs-time plot.
SMALL_RUNS = (("part 1 (small)", REPO / "weights" / "p3_small.json"),
              ("part 2 (small_bn)", REPO / "weights" / "p3_small_bn.json"))


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("numpy", "cupy", "torch"), default="numpy",
                   help="scratchnet on numpy (CPU) or cupy (GPU), or the PyTorch reference (default: numpy)")
    p.add_argument("--model", choices=ALL_MODELS + ("both",), default="both",
                   help="small (part 1), small_bn (part 2), both (default: parts 1 and 2) or better (part 3)")
    p.add_argument("--recipe", choices=RECIPE_NAMES, default=None,
                   help="--model better only: 'default' (batch 512, one-cycle, EMA; the default for training) or "
                        "'airbench' (the published airbench94 recipe's training choices); with --eval-only, "
                        "default: the recipe recorded beside --weights")
    p.add_argument("--epochs", type=positive_epochs, default=None,
                   help="default: the recipe's (15; better: 12; airbench: 9.9); may be fractional")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="K",
                   help="stop after the first K epochs of the schedule, which still spans --epochs")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="default: 128 (better: 512; airbench: 1024)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate (default: 0.02 small, 0.2 small_bn, 0.8 better); with --recipe "
                        "airbench the lr per 1,024 examples of the summed loss (default 11.5)")
    p.add_argument("--label-smoothing", type=fraction_below_one, default=None,
                   help="label smoothing of the cross-entropy targets (default: 0; better: 0.2)")
    p.add_argument("--crop-padding", type=non_negative_int, default=None, metavar="P",
                   help="--model better only: random crops of the image reflect-padded by P pixels "
                        "(default: the recipe's 2; 0: none)")
    p.add_argument("--cutout", type=positive_int, default=None, metavar="S",
                   help="--model better only: blank an SxS square (the mean colour) in each training image "
                        "after crop and flip (default: none)")
    p.add_argument("--tta", type=int, choices=sorted(TTA_VIEWS), default=None,
                   help="test-time views of the final evaluation: 0 none, 1 + mirror, 2 + mirror and two 1-pixel "
                        "shifts (6 views), 3 + all four diagonal 1-pixel shifts (10 views); default: the "
                        "recipe's (better: 2; with --eval-only: the one recorded beside --weights)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    p.add_argument("--eval-only", action="store_true", help="evaluate --weights on the test set, redraw figures")
    p.add_argument("--weights", type=Path, help="weights .npz for --eval-only (e.g. weights/p3_small.npz)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"),
                   help="only draw the with/without batch-norm loss plot from two results files")
    p.add_argument("--ablation", type=Path, default=None,
                   help="part 3: ablation results to include (default: weights/p3_better_ablation.json, if present)")
    p.add_argument("--limit-per-class", type=positive_int, default=None,
                   help="use only the first K images per class of each split (smoke tests)")
    p.add_argument("--val-per-class", type=positive_int, default=None, metavar="V",
                   help="hold out the last V training images of each class and score every epoch on them "
                        "instead of the test set (choosing a recipe); results.json says `evaluated_on`. With "
                        "--eval-only: score weights trained with the same V on those images")
    add_download_flag(p, "the official CIFAR-10")
    p.add_argument("--recorded-if-no-data", action="store_true",
                   help="with --eval-only: if no CIFAR-10 can be had, show the accuracy and curves recorded "
                        "beside --weights (marked 'recorded, not re-evaluated') instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common_args(p, "p3")
    args = p.parse_args(argv)
    if args.eval_only and args.weights is None:
        p.error("--eval-only needs --weights P.npz")
    if args.eval_only and args.model == "both":
        p.error("--eval-only needs --model small, small_bn or better (the weights of one network)")
    if args.weights is not None and not args.eval_only:  # silently training instead would surprise
        p.error("--weights is read only with --eval-only (training starts from fresh weights)")
    if args.ablation is not None and args.model != "better":
        p.error("--ablation belongs to --model better (part 3)")
    if args.recorded_if_no_data and not args.eval_only:
        p.error("--recorded-if-no-data belongs to --eval-only")
    for flag, value in (("--crop-padding", args.crop_padding), ("--cutout", args.cutout)):
        if value is not None and args.model != "better":
            p.error(f"{flag} belongs to --model better (part 3)")
        if value is not None and args.eval_only:
            p.error(f"{flag} belongs to training (not --eval-only)")
    if args.crop_padding is not None and args.crop_padding > 15:
        p.error(f"--crop-padding {args.crop_padding}: at most 15 pixels for 32x32 images")
    if args.cutout is not None and args.cutout > 32:
        p.error(f"--cutout {args.cutout}: at most 32 pixels for 32x32 images")
    if args.recipe not in (None, "default") and args.model != "better":
        p.error(f"--recipe {args.recipe} belongs to --model better (part 3)")
    if args.recipe is None and not args.eval_only:   # eval-only reads it from the weights' companion
        args.recipe = "default"
    if args.val_per_class is not None and args.recorded_if_no_data:
        p.error("--recorded-if-no-data shows test accuracies: not with --val-per-class")
    if args.tta is not None and args.compare:
        p.error("--tta belongs to training or --eval-only (not --compare)")
    if args.tta is not None and args.eval_only and args.val_per_class is None:
        p.error("--tta with --eval-only scores the validation split only (add --val-per-class V): the test set "
                "is read once, with the views the net was trained for")
    if args.val_per_class is not None and args.compare:
        p.error("--val-per-class belongs to training or --eval-only (not --compare)")
    if args.stop_after is not None and (args.eval_only or args.compare):
        p.error("--stop-after belongs to training (not --eval-only or --compare)")
    if args.stop_after is not None:
        from .recipe import AIRBENCH, RECIPES
        defaults = [AIRBENCH if args.recipe == "airbench" else RECIPES[m]
                    for m in (MODELS if args.model == "both" else (args.model,))]
        epochs = args.epochs or min(d["epochs"] for d in defaults)
        if args.stop_after > math.ceil(epochs):
            p.error(f"--stop-after {args.stop_after} is more than the schedule's {epochs} epochs")
    return args


def positive_epochs(text: str) -> int | float:
    """argparse type: a whole number of epochs >= 1, or a fractional one > 0 (9.9)."""
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        return positive_float(text)


def out_dir_for(args, model: str) -> Path:
    """--out is the folder for one model; with --model both, each model gets a subfolder of it."""
    return args.out / model if args.model == "both" else args.out


def recorded_recipe(flat, args):
    """The training run's own recipe from its recorded hyper-parameters (so evaluation uses its test-time
    views and net options, and its rationale says what it ran); None if they do not make a recipe."""
    from .recipe import AirbenchRecipe, Recipe
    if args.model != "better" or not isinstance(flat, dict):
        return None
    try:
        return (AirbenchRecipe if args.recipe == "airbench" else Recipe).from_flat(**flat)
    except (TypeError, ValueError):
        return None


def recipe_of(args, model: str):
    from .recipe import recipe_for
    return recipe_for(model, args.seed, recipe=getattr(args, "recipe", None) or "default", epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, label_smoothing=args.label_smoothing,
                      crop_padding=getattr(args, "crop_padding", None), cutout=getattr(args, "cutout", None),
                      tta=getattr(args, "tta", None))


def first_layer_filters(weights: dict):
    """HWIO filters of the first layer: (11, 11, 3, 64) for the small nets, the whitening (2, 2, 3, 24)."""
    return weights["conv1.weight"] if "conv1.weight" in weights else weights["whiten.weight"]


def draw_figures(out: Path, result: P3Result, weights: dict) -> dict:
    """The loss curve, the first-layer filters and (part 3) accuracy against time; {role: file name}."""
    from problems.common.plots import plot_loss_curves
    from scratchnet.viz import save_filter_grid
    figures = {}
    model = result.model
    epochs = range(1, len(result.train_loss) + 1)
    if result.train_loss:
        plot_loss_curves([(model, epochs, result.train_loss)], out / "loss.png",
                         title=f"P3 {model}: training loss per epoch")
        figures["loss"] = "loss.png"
    filters = first_layer_filters(weights)
    rows, cols = (4, 16) if filters.shape[-1] == 64 else (2, filters.shape[-1] // 2)
    save_filter_grid(out / "filters.png", filters, rows=rows, cols=cols, upscale=6 if filters.shape[0] > 4 else 16)
    figures["filters"] = "filters.png"
    if model == "better" and result.epoch_seconds:
        figures["accuracy_vs_time"] = draw_accuracy_vs_time(out, result)
    return figures


def draw_accuracy_vs_time(out: Path, result: P3Result) -> str:
    """Test accuracy after each epoch against cumulative training time: part 3 beside the committed part-1/2 runs
    (alone, and labelled so, when it was scored on the validation split)."""
    from itertools import accumulate

    from problems.common.plots import plot_accuracy_vs_time
    runs = [("part 3 (better)", list(accumulate(result.epoch_seconds)), result.test_accuracy)]
    if result.evaluated_on:
        plot_accuracy_vs_time(runs, out / "accuracy_vs_time.png", ylabel="validation accuracy",
                              title="P3: validation accuracy vs training time")
        return "accuracy_vs_time.png"
    for label, path in SMALL_RUNS:
        if path.is_file():
            try:
                r = P3Result.read(path)
            except ResultError as e:
                print(f"note: {e}; {label} left out of the accuracy-vs-time plot", file=sys.stderr)
                continue
            if r.epoch_seconds and r.test_accuracy:
                runs.append((label, list(accumulate(r.epoch_seconds)), r.test_accuracy))
    plot_accuracy_vs_time(runs, out / "accuracy_vs_time.png",
                          title="P3: test accuracy vs training time")
    return "accuracy_vs_time.png"


def write(out: Path, result: P3Result, weights: dict, save_weights: bool = True) -> None:
    """results.json and the figures in `out`, and weights.npz for a network just trained."""
    if save_weights:
        from scratchnet.io import save_npz
        save_npz(out / "weights.npz", weights)
    result.figures = draw_figures(out, result, weights)
    result.write(out / "results.json")


def check_inputs(args) -> None:
    """Every check that needs no data, before the data is loaded: bad input fails in a second."""
    from .result import read_companion
    from .run import better_extras, read_weights
    if args.backend == "cupy":
        from scratchnet.backend import array_module
        array_module("cupy")
    if args.eval_only:
        read_weights(args.weights)
        trained = read_companion(args.weights.with_suffix(".json"))
        recorded = trained.get("hyperparameters")
        name = recorded.get("recipe") if isinstance(recorded, dict) else None
        if args.recipe is None:  # the recipe fixes the net's options (batch-norm eps) and the test-time views
            args.recipe = name if name in RECIPE_NAMES and args.model == "better" else "default"
        args.recorded_recipe = recorded_recipe(recorded, args) if (name or "default") == args.recipe else None
        if args.val_per_class is not None:   # held-out images only if the weights never trained on them
            from .ablation import evaluated_on
            split = evaluated_on(args.val_per_class)
            if trained.get("evaluated_on") != split:
                raise UserError(f"--val-per-class {args.val_per_class}: {portable_path(args.weights)} was not "
                                f"trained with it (its companion says it was scored on "
                                f"{trained.get('evaluated_on') or 'the test set'}), so those images may be "
                                "ones it trained on")
    if args.model == "better" and args.ablation is not None:
        better_extras(args.ablation)


def train_one(args, model: str, data) -> P3Result:
    from . import run
    out = out_dir_for(args, model)
    result, weights = run.train(model, args.backend, recipe_of(args, model), data, out, resume=args.resume,
                                progress=not args.no_progress, ablation=args.ablation, data_dir=args.data_dir,
                                stop_after=args.stop_after)
    write(out, result, weights)
    stopped = f" (stopped after epoch {result.stopped_after} of {result.epochs})" if result.stopped_after else ""
    split = "validation" if result.evaluated_on else "test"
    print(f"P3 {model}: final {split} accuracy {result.final_test_accuracy:.4f}{stopped} "
          f"(error {result.final_test_error:.4f}) on {result.n_test} {split} images, {data.source}; "
          f"{result.seconds:.0f} s of training; results in {out / 'results.json'}")
    return result


def eval_only(args, data=None, no_data: str | None = None) -> P3Result:
    """Evaluate --weights on the test set; with data None (no CIFAR-10 to be had, `no_data` says why) show the
    accuracy and curves recorded beside the weights instead, marked as not re-evaluated."""
    from . import run
    args.out.mkdir(parents=True, exist_ok=True)
    recipe = getattr(args, "recorded_recipe", None) or recipe_of(args, args.model)
    if args.tta is not None:
        from dataclasses import replace
        recipe = replace(recipe, tta=args.tta)
    result, weights = run.evaluate_weights(args.model, args.backend, args.weights, recipe,
                                           data, no_data=no_data, ablation=args.ablation, data_dir=args.data_dir)
    write(args.out, result, weights, save_weights=False)
    acc = result.final_test_accuracy
    how = "evaluated" if data is not None else "recorded, not re-evaluated"
    split = "validation" if result.evaluated_on else "test"
    print(f"P3 {args.model} (eval only, {portable_path(args.weights)}): {split} accuracy {acc:.4f} "
          f"(error {1 - acc:.4f}) on {result.n_test} {split} images, {how}")
    return result


def compare(paths, out: Path) -> Path:
    """The with/without batch-norm loss plot of two results files, and comparison.json."""
    from problems.common.plots import plot_loss_curves

    from . import run
    comparison, curves = run.compare(paths, out)
    out.mkdir(parents=True, exist_ok=True)
    path = plot_loss_curves([(label, range(1, len(losses) + 1), losses) for label, losses in curves],
                            out / "loss_bn_comparison.png", title="Training loss with and without batch normalisation")
    comparison.write(out / "comparison.json")
    print(f"comparison plot: {path}")
    return path


def main(argv=None):
    args = parse_args(argv)
    if args.compare:
        compare(args.compare, args.out)
        return 0
    if args.backend == "numpy":
        cpu.tune()  # a run of scratchnet's CPU kernels: process-wide BLAS and malloc tuning (scratchnet.cpu)
    elif args.backend == "torch":
        cpu.keep_freed_memory()  # the twin gets the same malloc setting, which speeds PyTorch up as well
    check_inputs(args)
    if args.eval_only and args.recorded_if_no_data:
        from .cifar_download import cifar10_obtainable
        why = cifar10_obtainable(data_root(args.data_dir), download=args.download)
        if why is not None:
            print(f"note: {why}; showing the recorded results of {portable_path(args.weights)}", file=sys.stderr)
            eval_only(args, None, no_data=why)
            return 0
    from .run import load_data
    data = load_data(args.data_dir, download=args.download, limit_per_class=args.limit_per_class,
                     progress=not args.no_progress)
    if args.val_per_class is not None:  # the test images are dropped: a recipe search never sees them
        from .ablation import held_out
        data = held_out(data, None, args.val_per_class)
    if args.eval_only:
        eval_only(args, data)
        return 0
    models = MODELS if args.model == "both" else (args.model,)
    for model in models:
        train_one(args, model, data)
    if args.model == "both":
        compare([out_dir_for(args, m) / "results.json" for m in MODELS], args.out)
    return 0
