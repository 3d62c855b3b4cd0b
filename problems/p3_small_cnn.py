"""P3 parts 1-2: the small CIFAR-10 CNN and its batch-norm twin, trained by scratchnet.

    python problems/p3_small_cnn.py --backend numpy|cupy|torch --model small|small_bn|both
        [--epochs N] [--batch-size B] [--lr LR] [--data-dir D] [--out DIR] [--seed S] [--resume]
    python problems/p3_small_cnn.py --model small --eval-only --weights weights/p3_small.npz
    python problems/p3_small_cnn.py --compare A/results.json B/results.json [--out DIR]

With no arguments it trains both networks with scratchnet-numpy (parts 1 and 2) and draws the
with/without batch-norm loss plot. Per model it writes to DIR/<model>/ with --model both (the default;
DIR defaults to results/p3), or to DIR itself for a single model:
results.json, loss.png, filters.png (all 64 first-layer 11x11x3 filters, 4 x 16), weights.npz and a
checkpoint after every epoch (--resume continues from it with identical results).
`--backend torch` trains the identical network in PyTorch on the same batches (on the GPU when PyTorch sees
one, as --backend cupy would run; there in strict float32, no TF32, with deterministic cuDNN): a reference
only. results.json records the device (cpu or cuda).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratchnet import cpu  # noqa: E402 - standard library only: numpy is not loaded yet

cpu.choose_openblas_kernels()  # before numpy loads, which is when OpenBLAS reads it (scratchnet.cpu)

import numpy as np  # noqa: E402

from problems.common.cli import (UserError, add_common_args, command_line, data_root, fraction_below_one,
                                 portable_path, portable_text, positive_float, positive_int, run_main)
from scratchnet.io import load_npz, save_npz, write_json

MODELS = ("small", "small_bn")        # parts 1 and 2 ('both' trains these two)
ALL_MODELS = MODELS + ("better",)     # part 3
# Training recipe per model (scratchnet.train.TrainConfig fields). SGD with Nesterov momentum and a
# one-cycle schedule throughout; batch norm tolerates a larger learning rate, which is much of its benefit.
RECIPES = {
    "small": dict(epochs=15, batch_size=128, lr=0.02),
    "small_bn": dict(epochs=15, batch_size=128, lr=0.2),
    "better": dict(epochs=12, batch_size=512, lr=0.8, label_smoothing=0.2, crop_padding=2, crop_mode="reflect",
                   flip_mode="alternating", ema_decay=0.98, tta=2),
}
ARCHITECTURE = {
    "small": ["conv 11x11, 3->64, stride 1, no padding (32x32 -> 22x22), ReLU",
              "max pool 2x2, stride 2 (22x22 -> 11x11)",
              "conv 3x3, 64->128, stride 1, padding 1, ReLU",
              "conv 3x3, 128->128, stride 1, padding 1, ReLU",
              "global average pool (11x11 -> 1x1)", "linear 128->10, softmax"],
    "better": ["conv 2x2, 3->24, no padding, fixed patch-whitening filters (trained bias), GELU (32 -> 31)",
               "block 24->64: conv 3x3 (Dirac init) -> max pool 2 -> BN (frozen scale) -> GELU -> conv 3x3 -> BN -> GELU (31 -> 15)",
               "block 64->256: the same (15 -> 7)", "block 256->256: the same (7 -> 3)",
               "max pool 3x3 (3 -> 1), linear 256->10 (no bias, zero init), logits x 1/9, softmax"],
}
ARCHITECTURE["small_bn"] = [line.replace(", ReLU", ", batch norm, ReLU (no conv bias)")
                            for line in ARCHITECTURE["small"]]
INITIALISATION = ("He/Kaiming normal: every conv and linear weight ~ N(0, 2/fan_in), fan_in = kh*kw*C_in "
                  "or in_features; biases 0; batch norm gamma 1, beta 0 (running mean 0, var 1, momentum 0.1)")
BETTER_INITIALISATION = ("first layer: fixed 2x2 patch-whitening filters (eigenvectors of the training patches' "
                         "covariance scaled by 1/sqrt(eigenvalue + 5e-4), each also negated; bias 0, trained); "
                         "3x3 convs: He normal, then Dirac (identity) on the first min(C_in, C_out) filters; "
                         "batch norm scale frozen at 1, shift 0 (momentum 0.4); linear head zero, logits x 1/9")


REPO = Path(__file__).resolve().parents[1]
# The committed part-1/2 runs (drawn beside part 3 in its accuracy-vs-time plot) and part 3's ablation.
SMALL_RUNS = (("part 1 (small)", REPO / "weights" / "p3_small.json"),
              ("part 2 (small_bn)", REPO / "weights" / "p3_small_bn.json"))
DEFAULT_ABLATION = REPO / "weights" / "p3_better_ablation.json"
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


def initialisation_for(model: str) -> str:
    return BETTER_INITIALISATION if model == "better" else INITIALISATION


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("numpy", "cupy", "torch"), default="numpy",
                   help="scratchnet on numpy (CPU) or cupy (GPU), or the PyTorch reference (default: numpy)")
    p.add_argument("--model", choices=ALL_MODELS + ("both",), default="both",
                   help="small (part 1), small_bn (part 2), both (default: parts 1 and 2) or better (part 3)")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: the model's recipe (15; better: 12)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: 128 (better: 512)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate (default: 0.02 small, 0.2 small_bn, 0.8 better)")
    p.add_argument("--label-smoothing", type=fraction_below_one, default=None,
                   help="label smoothing of the cross-entropy targets (default: 0; better: 0.2)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    p.add_argument("--eval-only", action="store_true", help="evaluate --weights on the test set, redraw figures")
    p.add_argument("--weights", type=Path, help="weights .npz for --eval-only (e.g. weights/p3_small.npz)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"),
                   help="only draw the with/without batch-norm loss plot from two results files")
    p.add_argument("--ablation", type=Path, default=None,
                   help="part 3: ablation results to include (default: weights/p3_better_ablation.json, if present)")
    p.add_argument("--limit-per-class", type=positive_int, default=None,
                   help="use only the first K images per class of each split (smoke tests)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="fetch the official CIFAR-10 when the data root has none and the network answers "
                        "(default: on; --no-download forbids it)")
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
    return args


def out_dir_for(args, model: str) -> Path:
    """--out is the folder for one model; with --model both, each model gets a subfolder of it."""
    return args.out / model if args.model == "both" else args.out


def load_data(args):
    from problems.common.cifar_download import load_cifar10_for_cli
    return load_cifar10_for_cli(data_root(args.data_dir), download=args.download,
                                limit_per_class=args.limit_per_class, progress=not args.no_progress)


def device_of(learner) -> str:
    """'cpu' or 'cuda': where the learner's arithmetic ran (epoch times mean little without it)."""
    if hasattr(learner, "device"):  # the PyTorch reference
        return learner.device
    return "cpu" if learner.backend == "numpy" else "cuda"


def make_learner(model: str, backend: str, config, data=None, **model_options):
    """The scratchnet network (numpy/cupy) or its PyTorch reference twin, behind one learner interface."""
    if backend == "torch":
        if model == "better":
            raise UserError("--backend torch has the part 1-2 networks only; use --backend numpy or cupy for better")
        from problems.common.torch_reference import TorchLearner, default_device
        return TorchLearner(model, config, device=default_device())
    from scratchnet import models
    from scratchnet.train import ScratchnetLearner
    if model == "better":
        whitening = None
        use_whitening = model_options.pop("whitening", True)  # False: the ablation's He-init first layer
        if data is not None and use_whitening:  # eval-only loads the saved filters instead
            from scratchnet.data.augment import channel_stats, normalize
            mean, std = channel_stats(data.train_x)
            whitening = models.patch_whitening_filters(normalize(data.train_x[:5000], mean, std), seed=config.seed)
        net = models.better_net(whitening, seed=config.seed, **model_options)
    else:
        net = models.small_cnn(batch_norm=(model == "small_bn"), seed=config.seed)
    return ScratchnetLearner(net, config, backend)


def layer_table_for(model: str) -> list:
    """Per-layer output shapes, parameters and FLOPs (one image) of the scratchnet network `model`."""
    from scratchnet import models
    net = models.better_net() if model == "better" else models.small_cnn(batch_norm=(model == "small_bn"))
    return models.layer_table(net)


def config_for(args, model: str):
    from scratchnet.train import TrainConfig
    recipe = dict(RECIPES[model], seed=args.seed)
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                      ("label_smoothing", "label_smoothing")):
        if getattr(args, flag) is not None:
            recipe[key] = getattr(args, flag)
    return TrainConfig(**recipe)


def describe_recipe(c) -> dict:
    aug = []
    if c.crop_padding:
        aug.append(f"random crop ({c.crop_padding} px {c.crop_mode} padding)")
    if c.flip:
        aug.append(f"horizontal flip ({c.flip_mode})")
    return {
        "optimizer": f"SGD, Nesterov momentum {c.momentum}, weight decay {c.weight_decay} (coupled L2)",
        "schedule": (f"one-cycle: linear warm-up from 0.1x to the peak lr {c.lr} over the first "
                     f"{100 * c.warmup_fraction:.0f}% of steps, then linear decay to 0") if c.schedule == "onecycle"
                    else c.schedule,
        "augmentation": " + ".join(aug) or "none",
        "label_smoothing": c.label_smoothing,
        "weight_averaging": f"EMA of the weights, decay {c.ema_decay}" if c.ema_decay else "none",
        "test_time_augmentation": ["none", "mirror", "mirror + 1-pixel shifts"][c.tta],
    }


def first_layer_filters(weights: dict):
    """HWIO filters of the first layer: (11, 11, 3, 64) for the small nets, the whitening (2, 2, 3, 24)."""
    return weights["conv1.weight"] if "conv1.weight" in weights else weights["whiten.weight"]


def draw_figures(out: Path, model: str, history: dict, weights: dict) -> dict:
    from problems.common.plots import plot_loss_curves
    from scratchnet.viz import save_filter_grid
    figures = {}
    epochs = range(1, len(history["train_loss"]) + 1)
    if history["train_loss"]:
        plot_loss_curves([(model, epochs, history["train_loss"])], out / "loss.png",
                         title=f"P3 {model}: training loss per epoch")
        figures["loss"] = "loss.png"
    filters = first_layer_filters(weights)
    rows, cols = (4, 16) if filters.shape[-1] == 64 else (2, filters.shape[-1] // 2)
    save_filter_grid(out / "filters.png", filters, rows=rows, cols=cols, upscale=6 if filters.shape[0] > 4 else 16)
    figures["filters"] = "filters.png"
    if model == "better" and history.get("epoch_seconds"):
        figures["accuracy_vs_time"] = draw_accuracy_vs_time(out, history)
    return figures


def draw_accuracy_vs_time(out: Path, history: dict) -> str:
    """Test accuracy after each epoch against cumulative training time: part 3 beside the committed part-1/2 runs."""
    from itertools import accumulate

    from problems.common.plots import plot_accuracy_vs_time
    runs = [("part 3 (better)", list(accumulate(history["epoch_seconds"])), history["test_accuracy"])]
    for label, path in SMALL_RUNS:
        if path.is_file():
            r = json.loads(path.read_text())
            if r.get("epoch_seconds") and r.get("test_accuracy"):
                runs.append((label, list(accumulate(r["epoch_seconds"])), r["test_accuracy"]))
    plot_accuracy_vs_time(runs, out / "accuracy_vs_time.png",
                          title="P3: test accuracy vs training wall time (scratchnet-numpy, 2 cores)")
    return "accuracy_vs_time.png"


def better_extras(ablation_path: Path | None) -> dict:
    """Part 3's results-file extras: the design rationale and, when its file exists, the ablation table."""
    extras = {"rationale": RATIONALE, "design_notes": "docs/p3_better.md"}
    if ablation_path is None:  # not asked for: the committed ablation, when the checkout has it
        ablation_path = DEFAULT_ABLATION if DEFAULT_ABLATION.is_file() else None
    elif not ablation_path.is_file():
        why = "is a folder" if ablation_path.is_dir() else "does not exist"
        raise UserError(f"ablation file {ablation_path} {why}; expected the ablation.json written by "
                        "problems/p3_better_ablation.py")
    if ablation_path is not None:
        expected = "the ablation.json written by problems/p3_better_ablation.py (a 'variants' list)"
        try:
            ab = json.loads(ablation_path.read_text())
            extras["ablation"] = [
                {"variant": v["variant"] + (f" (seed {v['seed']})" if v["seed"] != ab.get("seed") else ""),
                 "test_accuracy": v.get("final_test_accuracy"),
                 "note": "removed: " + v["removed"] + ("; diverged" if v.get("diverged") else "")}
                for v in ab["variants"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"ablation file {ablation_path} is not {expected}") from None
        extras["ablation_budget"] = ab.get("budget")
        extras["ablation_discussion"] = ab.get("discussion")
        extras["ablation_file"] = portable_path(ablation_path)
    return extras


def train_one(args, model: str, data) -> dict:
    from scratchnet.train import fit
    out = out_dir_for(args, model)
    out.mkdir(parents=True, exist_ok=True)
    config = config_for(args, model)
    t0 = time.perf_counter()  # before the learner: the better net's whitening filters are part of training
    learner = make_learner(model, args.backend, config, data)
    print(f"P3 {model}: {args.backend} backend, {data.describe()}")
    try:
        history = fit(learner, data, config, out_dir=out, resume=args.resume, progress=not args.no_progress)
    except ValueError as e:  # e.g. a checkpoint made with other settings
        raise UserError(str(e)) from None
    except FloatingPointError as e:  # the loss went inf/nan: the learning rate (or the data) is unusable
        raise UserError(str(e)) from None
    seconds = time.perf_counter() - t0
    weights = learner.weights()
    save_npz(out / "weights.npz", weights)
    from dataclasses import asdict
    hist = asdict(history)
    results = {
        "problem": "p3", "model": model, "backend": args.backend, "device": device_of(learner), "epochs": config.epochs,
        **hist,
        "final_test_accuracy": hist["test_accuracy"][-1], "final_test_error": 1 - hist["test_accuracy"][-1],
        "seconds": sum(hist["epoch_seconds"]), "seconds_this_invocation": seconds,
        "command": command_line(), "hyperparameters": {k: v for k, v in asdict(config).items()},
        **describe_recipe(config), "normalisation": "per-channel mean/std of the training set",
        "initialisation": initialisation_for(model), "architecture": ARCHITECTURE[model],
        "first_conv_padding": 0, "parameters": learner.num_parameters(), "data_source": data.source,
        "data_dir": portable_path(data.directory, args.data_dir), "n_train": int(len(data.train_y)), "n_test": int(len(data.test_y)),
        "weights_file": "weights.npz", "layers": layer_table_for(model),
    }
    if model == "better":
        results.update(better_extras(args.ablation))
    results["figures"] = draw_figures(out, model, hist, weights)
    results["discussion"] = discussion(results)
    write_json(out / "results.json", results)
    print(f"P3 {model}: final test accuracy {results['final_test_accuracy']:.4f} "
          f"(error {results['final_test_error']:.4f}) on {results['n_test']} test images, {data.source}; "
          f"{results['seconds']:.0f} s of training; results in {out / 'results.json'}")
    return results


def discussion(r: dict) -> str:
    lossy = " on the lossy JPEG copy of CIFAR-10" if "lossy" in r["data_source"] else ""
    return (f"The {r['model']} network reached {100 * r['final_test_accuracy']:.1f}% test accuracy{lossy} after "
            f"{r['epochs']} epochs ({r['seconds'] / 60:.1f} min of training with the {r['backend']} backend). "
            f"The first-layer filters are shown contrast-stretched one by one; trained 11x11 filters typically "
            f"show oriented edges and colour blobs, the low-level features every CNN learns first.")


HISTORY_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_seconds", "images_per_second")


def _numbers(value) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def read_companion(path: Path) -> dict:
    """The results JSON saved beside a weights file (its training history and timings), {} if there is none;
    UserError when it is there but not such a file."""
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
    return trained


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


def check_inputs(args) -> None:
    """Every check that needs no data, before the data is loaded: bad input fails in a second."""
    if args.backend == "cupy":
        from scratchnet.backend import array_module
        array_module("cupy")
    if args.backend == "torch" and args.model == "better":
        make_learner("better", "torch", None)  # raises the one-line error
    if args.eval_only:
        read_weights(args.weights)
        read_companion(args.weights.with_suffix(".json"))
    if args.model == "better" and args.ablation is not None:
        better_extras(args.ablation)


def eval_only(args, data=None, no_data: str | None = None) -> dict:
    """Evaluate --weights on the test set; with data None (no CIFAR-10 to be had, `no_data` says why) show the
    accuracy and curves recorded beside the weights instead, marked as not re-evaluated."""
    model = args.model
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    weights = read_weights(args.weights)
    learner = make_learner(model, args.backend, config_for(args, model))
    try:
        learner.load_weights(weights)
    except ValueError as e:
        raise UserError(f"weights {args.weights} do not fit model {model}: {e}") from None
    trained = read_companion(args.weights.with_suffix(".json"))  # checked before the evaluation
    hist = {k: trained.get(k, []) for k in HISTORY_KEYS}
    results = {**trained, "problem": "p3", "model": model, "backend": args.backend, "eval_only": True,
               "weights_file": portable_path(args.weights), "command": command_line(), **hist,
               "initialisation": trained.get("initialisation", initialisation_for(model)),
               "architecture": ARCHITECTURE[model], "layers": layer_table_for(model)}
    if data is not None:
        from scratchnet.data.augment import channel_stats
        from scratchnet.train import evaluate
        mean, std = channel_stats(data.train_x)
        test_loss, test_acc = evaluate(learner, data.test_x, data.test_y, mean, std)
        results.update(evaluated=True, final_test_accuracy=test_acc, final_test_error=1 - test_acc,
                       final_test_loss=test_loss, data_source=data.source,
                       data_dir=portable_path(data.directory, args.data_dir), n_test=int(len(data.test_y)))
    else:
        acc = trained.get("final_test_accuracy")
        if not _numbers([acc]):
            raise UserError(f"{no_data}; and {args.weights.with_suffix('.json')} records no test accuracy to "
                            "show instead")
        results.update(evaluated=False, final_test_accuracy=acc, final_test_error=1 - acc,
                       recorded_note="recorded when the weights were made, not re-evaluated "
                                     f"({portable_text(no_data, args.data_dir)})")
    if model == "better":
        results.update(better_extras(args.ablation))
    results["figures"] = draw_figures(out, model, hist, weights)
    results["discussion"] = discussion({**results, "epochs": trained.get("epochs", 0),
                                        "seconds": trained.get("seconds", 0.0)})
    write_json(out / "results.json", results)
    acc = results["final_test_accuracy"]
    how = "evaluated" if data is not None else "recorded, not re-evaluated"
    print(f"P3 {model} (eval only, {portable_path(args.weights)}): test accuracy {acc:.4f} "
          f"(error {1 - acc:.4f}) on {results.get('n_test')} test images, {how}")
    return results


def compare(paths, out: Path) -> Path:
    from problems.common.plots import plot_loss_curves
    curves = []
    for path in paths:
        if path.is_dir():
            raise UserError(f"results file {path} is a folder; expected a P3 results.json")
        if not path.is_file():
            raise UserError(f"results file {path} does not exist; expected a P3 results.json")
        try:
            r = json.loads(path.read_text())
            losses = r["train_loss"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise UserError(f"{path} is not a P3 results.json (expected a 'train_loss' list)") from None
        if not isinstance(losses, list) or not losses or not _numbers(losses) or not np.isfinite(losses).all():
            raise UserError(f"{path}: 'train_loss' must be a non-empty list of finite numbers, one per epoch")
        model = r.get("model")
        label = (model if isinstance(model, str) else path.parent.name) + (" (batch norm)" if model == "small_bn" else "")
        curves.append((label, range(1, len(losses) + 1), losses))
    out.mkdir(parents=True, exist_ok=True)
    path = plot_loss_curves(curves, out / "loss_bn_comparison.png",
                            title="Training loss with and without batch normalisation")
    write_json(out / "comparison.json", {"problem": "p3", "compared": [portable_path(p) for p in paths],
                                         "figures": {"bn_comparison": "loss_bn_comparison.png"},
                                         "final_train_loss": {c[0]: c[2][-1] for c in curves if c[2]},
                                         "discussion": "Training loss per epoch of the two P3 networks on one axis."})
    print(f"comparison plot: {path}")
    return path


def main(argv=None):
    args = parse_args(argv)
    if args.compare:
        compare(args.compare, args.out)
        return 0
    if args.backend == "numpy":
        cpu.tune()  # a run of scratchnet's CPU kernels: process-wide BLAS and malloc tuning (scratchnet.cpu)
    check_inputs(args)
    if args.eval_only and args.recorded_if_no_data:
        from problems.common.cifar_download import cifar10_obtainable
        why = cifar10_obtainable(data_root(args.data_dir), download=args.download)
        if why is not None:
            print(f"note: {why}; showing the recorded results of {portable_path(args.weights)}", file=sys.stderr)
            eval_only(args, None, no_data=why)
            return 0
    data = load_data(args)
    if args.eval_only:
        eval_only(args, data)
        return 0
    models = MODELS if args.model == "both" else (args.model,)
    for model in models:
        train_one(args, model, data)
    if args.model == "both":
        compare([out_dir_for(args, m) / "results.json" for m in MODELS], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
