"""P3 part 3 ablation: what each trick of the better network's recipe is worth, measured with short runs.

    python problems/p3_better_ablation.py [--variants full no_whitening ...] [--epochs 4] [--seeds 2]
        [--limit-per-class 500] [--val-per-class 500] [--batch-size 256] [--lr 0.4] [--data-dir D] [--out DIR]
        [--seed S]

Each variant is the full recipe (problems/p3_small_cnn.py --model better) with one trick removed,
trained by scratchnet on the same subset with the same seeds, for the same short budget, and scored on a
validation split held out of the training set (the last --val-per-class images of each class), never on
the test set: the ablation chooses the recipe, so it must not look at the images the final accuracy is
read from. The runs train on the first --limit-per-class images of each class, disjoint from the split.

    full                the recipe (its plain, single-view accuracy also measures test-time augmentation)
    no_whitening        first layer: He-initialised 2x2 conv, trained, instead of fixed patch whitening
    no_dirac            3x3 convs He-initialised instead of identity (Dirac) initialised
    no_label_smoothing  cross-entropy on hard labels instead of 0.2 label smoothing
    no_ema              evaluate the raw weights instead of their exponential moving average
    random_flip         a coin flip per image and step instead of flips alternating between epochs
    no_logit_scale      no 1/9 factor on the logits

Short runs on a subset rank the tricks for the early phase of training only. Every variant runs with
--seeds seeds (seed, seed+1, ...; default 2), and the table gives each variant's mean and range over them,
so a difference can be read against the seed-to-seed range. Writes DIR/ablation.json (default
results/p3/ablation/) with a `variants` list (one entry per run), `evaluated_on`, a bar chart and a
discussion; `weights/p3_better_ablation.json` is a committed copy of one such run. Each run checkpoints
every epoch under DIR/runs/<variant>_seed<S>/ (with its settings) and leaves run.json there when it
finishes (the checkpoint is then deleted): after an interruption, the same command with --resume reuses the
finished runs and continues the interrupted one; a run folder made with other settings is an error.
"""
from __future__ import annotations

import argparse

from problems.common.cli import UserError, add_common_args, positive_float, positive_int
from problems.common.downloads import add_download_flag
from scratchnet import cpu

from .ablation import DEFAULT_VARIANTS, TRAIN_PER_CLASS, VAL_PER_CLASS, VARIANTS


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy", help="scratchnet's array library")
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(DEFAULT_VARIANTS),
                   help=f"which runs (default: {' '.join(DEFAULT_VARIANTS)})")
    p.add_argument("--epochs", type=positive_int, default=4, help="epochs per run (default: 4)")
    p.add_argument("--limit-per-class", type=positive_int, default=TRAIN_PER_CLASS,
                   help=f"training images per class, the first of each class (default: {TRAIN_PER_CLASS}, "
                        f"i.e. {10 * TRAIN_PER_CLASS:,})")
    p.add_argument("--val-per-class", type=positive_int, default=VAL_PER_CLASS,
                   help=f"validation images per class, the last of each class in the training set, never "
                        f"trained on (default: {VAL_PER_CLASS}, i.e. {10 * VAL_PER_CLASS:,})")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="default: 256 (half the recipe's 512, so a small subset still gives ~20 steps per epoch)")
    p.add_argument("--lr", type=positive_float, default=0.4,
                   help="peak learning rate (default: 0.4, the recipe's 0.8 scaled with the batch size)")
    p.add_argument("--seeds", type=positive_int, default=2,
                   help="run every variant with this many seeds (seed, seed+1, ...): each row is their mean, "
                        "beside their range (default: 2)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the runs that finished in DIR/runs/ and continue an interrupted one from its "
                        "last epoch (same flags needed)")
    add_download_flag(p, "the official CIFAR-10")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common_args(p, "p3/ablation", out_help="ablation.json, its figure and runs/ (per-run checkpoints)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from problems.common.plots import plot_ablation

    from . import ablation
    from .run import load_data
    if args.backend == "cupy":
        from scratchnet.backend import array_module
        array_module("cupy")  # fail fast, one line, before loading data
    else:
        cpu.tune()  # a run of scratchnet's CPU kernels: process-wide BLAS and malloc tuning (scratchnet.cpu)
    args.out.mkdir(parents=True, exist_ok=True)
    n_train = 10 * args.limit_per_class
    if n_train < args.batch_size:   # checked before the data loads: a bad budget costs no time
        raise UserError(f"--limit-per-class {args.limit_per_class} gives {n_train} training images, "
                        f"fewer than one batch of {args.batch_size}; raise it or lower --batch-size")
    data = load_data(args.data_dir, download=args.download, progress=not args.no_progress)  # the whole split
    result = ablation.run(data, args.variants, args.out, args.backend, args.epochs, args.batch_size, args.lr,
                          args.seed, args.seeds, args.resume, progress=not args.no_progress,
                          train_per_class=args.limit_per_class, val_per_class=args.val_per_class)
    runs = result.variants
    labels = [f"{r.variant}" + (f" (seed {r.seed})" if r.seed != args.seed else "") for r in runs]
    figure = plot_ablation(labels, [r.accuracy for r in runs], args.out / "ablation.png",
                           title=f"Ablation: final validation accuracy after {args.epochs} epochs",
                           ylabel="validation accuracy")
    result.figures = {"ablation": figure.relative_to(args.out).as_posix()}
    result.write(args.out / "ablation.json")
    print(result.discussion)
    print(f"P3 ablation: results in {args.out / 'ablation.json'}")
    return 0
