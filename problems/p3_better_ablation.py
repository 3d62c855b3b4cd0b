"""P3 part 3 ablation: what each trick of the better network's recipe is worth, measured with short runs.

    python problems/p3_better_ablation.py [--variants full no_whitening ...] [--epochs 4]
        [--limit-per-class 500] [--batch-size 256] [--lr 0.4] [--data-dir D] [--out DIR] [--seed S]

Each variant is the full recipe (problems/p3_small_cnn.py --model better) with one trick removed,
trained by scratchnet on the same subset with the same seed, for the same short budget:

    full                the recipe (its plain, single-view accuracy also measures test-time augmentation)
    no_whitening        first layer: He-initialised 2x2 conv, trained, instead of fixed patch whitening
    no_dirac            3x3 convs He-initialised instead of identity (Dirac) initialised
    no_label_smoothing  cross-entropy on hard labels instead of 0.2 label smoothing
    no_ema              evaluate the raw weights instead of their exponential moving average
    random_flip         a coin flip per image and step instead of flips alternating between epochs
    no_logit_scale      no 1/9 factor on the logits

Short runs on a subset rank the tricks for the early phase of training only, with one seed: read the
differences against the seed-to-seed spread (`--seeds 2` repeats the full recipe with the next seed).
Writes DIR/ablation.json (default results/p3/ablation/) with a `variants` list, a bar chart and a
discussion; `weights/p3_better_ablation.json` is a committed copy of one such run. Each run checkpoints
every epoch under DIR/runs/<variant>_seed<S>/ (with its settings) and leaves run.json there when it
finishes (the checkpoint is then deleted): after an interruption, the same command with --resume reuses the
finished runs and continues the interrupted one; a run folder made with other settings is an error.
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

from problems.common.cli import UserError, add_common_args, command_line, positive_float, positive_int, run_main
from scratchnet.io import write_json

# variant -> (what is removed, TrainConfig overrides, better_net overrides)
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


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy", help="scratchnet's array library")
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(DEFAULT_VARIANTS),
                   help=f"which runs (default: {' '.join(DEFAULT_VARIANTS)})")
    p.add_argument("--epochs", type=positive_int, default=4, help="epochs per run (default: 4)")
    p.add_argument("--limit-per-class", type=positive_int, default=500,
                   help="images per class in each split (default: 500, i.e. 5,000 train and 5,000 test)")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="default: 256 (half the recipe's 512, so a small subset still gives ~20 steps per epoch)")
    p.add_argument("--lr", type=positive_float, default=0.4,
                   help="peak learning rate (default: 0.4, the recipe's 0.8 scaled with the batch size)")
    p.add_argument("--seeds", type=positive_int, default=1,
                   help="repeat the full recipe with this many seeds (seed, seed+1, ...) to show the spread (default 1)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the runs that finished in DIR/runs/ and continue an interrupted one from its "
                        "last epoch (same flags needed)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="fetch the official CIFAR-10 when the data root has none and the network answers "
                        "(default: on; --no-download forbids it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common_args(p, "p3/ablation", out_help="ablation.json, its figure and runs/ (per-run checkpoints)")
    return p.parse_args(argv)


def run_variant(args, data, name: str, seed: int) -> dict:
    from dataclasses import asdict

    from problems.p3_small_cnn import RECIPES, make_learner
    from scratchnet.train import TrainConfig, fit
    removed, config_overrides, model_options = VARIANTS[name]
    recipe = dict(RECIPES["better"], epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed)
    config = TrainConfig(**{**recipe, **config_overrides})
    # One folder per run: its settings, a checkpoint after every epoch, and run.json once it has finished.
    run_dir = args.out / "runs" / f"{name}_seed{seed}"
    settings = json.loads(json.dumps({"config": asdict(config), "model_options": model_options,
                                      "backend": args.backend, "data": data.describe()}))  # as the JSON holds it
    done, settings_file = run_dir / "run.json", run_dir / "settings.json"
    if args.resume and settings_file.is_file():
        try:
            earlier_settings = json.loads(settings_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            earlier_settings = None
        if earlier_settings != settings:  # the checkpoint's TrainConfig alone does not cover the data
            raise UserError(f"{run_dir} holds a run made with other settings (data, backend or recipe); "
                            "use the same flags, or another --out, or drop --resume to start over")
        try:
            earlier = json.loads(done.read_text()) if done.is_file() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            earlier = None
        if isinstance(earlier, dict) and earlier.get("variant") == name and "final_test_accuracy" in earlier:
            print(f"  [{name}, seed {seed}] finished earlier: {done}")
            return earlier
        if done.is_file():
            print(f"  [{name}, seed {seed}] {done} is unreadable; running it again")
    write_json(settings_file, settings)
    log = lambda line: print(f"  [{name}, seed {seed}] {line}")  # noqa: E731
    t0 = time.perf_counter()
    learner = make_learner("better", args.backend, config, data, **model_options)
    try:
        history = asdict(fit(learner, data, config, out_dir=run_dir, resume=args.resume,
                             progress=not args.no_progress, log=log))
    except FloatingPointError as e:
        log(str(e))
        result = {"variant": name, "seed": seed, "removed": removed, "diverged": True, "error": str(e),
                  "final_test_accuracy": None, "seconds": time.perf_counter() - t0}
    except ValueError as e:  # a checkpoint made with another TrainConfig
        raise UserError(str(e)) from None
    else:
        result = {"variant": name, "seed": seed, "removed": removed, "diverged": False,
                  "final_test_accuracy": history["test_accuracy"][-1],
                  "final_test_accuracy_without_tta": history["final_test_accuracy_without_tta"],
                  "test_accuracy": history["test_accuracy"], "train_loss": history["train_loss"],
                  "seconds": sum(history["epoch_seconds"]),  # all epochs, also those before a resume
                  "config_overrides": config_overrides, "model_options": model_options}
    write_json(done, result)
    checkpoint = run_dir / "checkpoint.npz"
    if checkpoint.is_file():
        checkpoint.unlink()  # run.json now holds what the report needs; the checkpoint is ~24 MB
    return result


def discussion(runs: list, budget: str) -> str:
    full = [r for r in runs if r["variant"] == "full" and r["final_test_accuracy"] is not None]
    if not full:
        return "The full recipe did not finish, so no trick can be measured against it."
    base = full[0]["final_test_accuracy"]
    lines = [f"Short runs ({budget}); the full recipe reached {100 * base:.2f}% test accuracy."]
    if len(full) > 1:
        accs = [r["final_test_accuracy"] for r in full]
        lines.append(f"Seed-to-seed spread of the full recipe: {100 * (max(accs) - min(accs)):.2f} points "
                     f"over {len(accs)} seeds; smaller differences below are noise.")
    tta_off = full[0].get("final_test_accuracy_without_tta")
    if tta_off is not None:
        lines.append(f"Test-time augmentation (mirror + 1-pixel shifts) is worth {100 * (base - tta_off):+.2f} "
                     f"points ({100 * tta_off:.2f}% single-view).")
    for r in runs:
        if r["variant"] == "full":
            continue
        if r["final_test_accuracy"] is None:
            lines.append(f"Without {r['removed']}: training diverged.")
        else:
            lines.append(f"Without {r['removed']}: {100 * r['final_test_accuracy']:.2f}% "
                         f"({100 * (r['final_test_accuracy'] - base):+.2f} points).")
    lines.append("These rank the tricks for the first few epochs on a subset, with one seed each; the full "
                 "run's benefit can differ.")
    return " ".join(lines)


def main(argv=None):
    args = parse_args(argv)
    from problems.p3_small_cnn import load_data
    from problems.common.plots import plot_ablation
    if args.backend == "cupy":
        from scratchnet.backend import array_module
        array_module("cupy")  # fail fast, one line, before loading data
    else:
        cpu.tune()  # a run of scratchnet's CPU kernels: process-wide BLAS and malloc tuning (scratchnet.cpu)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_data(args)
    if len(data.train_y) < args.batch_size:
        raise UserError(f"--limit-per-class {args.limit_per_class} gives {len(data.train_y)} training images, "
                        f"fewer than one batch of {args.batch_size}; raise it or lower --batch-size")
    print(f"P3 ablation: {len(args.variants)} variants, {args.epochs} epochs each, {data.describe()}")
    runs = []
    for name in args.variants:
        seeds = range(args.seed, args.seed + (args.seeds if name == "full" else 1))
        runs += [run_variant(args, data, name, seed) for seed in seeds]
    budget = (f"{args.epochs} epochs on {len(data.train_y)} training images, batch {args.batch_size}, "
              f"peak lr {args.lr}, tested on {len(data.test_y)} images, {data.source}")
    labels = [f"{r['variant']}" + (f" (seed {r['seed']})" if r["seed"] != args.seed else "") for r in runs]
    figure = plot_ablation(labels, [r["final_test_accuracy"] for r in runs], args.out / "ablation.png",
                           title=f"Ablation: final test accuracy after {args.epochs} epochs")
    results = {"problem": "p3", "part": "better-net ablation", "backend": args.backend, "budget": budget,
               "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
               "n_train": int(len(data.train_y)), "n_test": int(len(data.test_y)), "data_source": data.source,
               "variants": runs, "command": command_line(),
               "figures": {"ablation": figure.relative_to(args.out).as_posix()},
               "discussion": discussion(runs, budget)}
    write_json(args.out / "ablation.json", results)
    print(results["discussion"])
    print(f"P3 ablation: results in {args.out / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
