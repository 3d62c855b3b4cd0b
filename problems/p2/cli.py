"""P2: transfer learning on Oxford-IIIT Pet with penultimate CNN features and a linear classifier.

Each image -> the pretrained net's penultimate features (EfficientNet-Lite0: 1280-d pooled head
activations, after BN + ReLU6) -> unit L2 norm -> a linear classifier trained on the trainval split,
its regularisation strength C chosen by 5-fold cross-validation on trainval only -> test predictions.
Reports mean-per-class accuracy (the mean over breeds of each breed's accuracy), overall accuracy, a
per-breed table, the most-confused pairs and a confusion matrix, with the coverage of every number.

    python problems/p2_transfer.py [--model NAME] [--classifier logreg|svm|scratchnet]
                                   [--data-dir D] [--out DIR] [--seed S]
                                   [--write-backbones JSON | --recorded-backbones JSON]

The backbone table (logistic regression on Lite0, Lite1 and Lite2 features) costs each backbone's feature
extraction; --write-backbones records it once (recorded/p2_backbones.json), and --recorded-backbones reads the
rows other than --model's back, checking that they were computed on the same images with the same settings.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from problems.common.cli import (UserError, add_common_args, command_line, folder_path, output_file, positive_int,
                                 thread_count)
from problems.common.downloads import add_download_flag
from problems.common.fmt import fmt_pct
from problems.p2.linear_probe import CLASSIFIERS, plot_confusion, plot_cv_curve
from problems.p2.result import P2Result
from problems.p2.run import (DEFAULT_BACKBONES, DEFAULT_CACHE, DEFAULT_MODEL, PROBLEM, FeatureOptions,
                             run_and_table)


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, prog="p2_transfer.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"feature extractor (default {DEFAULT_MODEL}; tf_efficientnet_lite1/2 also work offline; "
                        "torchvision names need cached weights or the network)")
    p.add_argument("--classifier", choices=CLASSIFIERS, default="logreg",
                   help="main classifier: multinomial logistic regression (default), linear SVM, "
                        "or scratchnet's softmax regression")
    p.add_argument("--compare", default="svm,scratchnet",
                   help="comma list of other classifiers to report on the same features (default svm,scratchnet; "
                        "'' for none)")
    p.add_argument("--backbones", default=",".join(DEFAULT_BACKBONES),
                   help="comma list of models for the backbone table, each with logistic regression; "
                        "unavailable ones are listed with the reason (default: the three Lite models; '' for none)")
    table = p.add_mutually_exclusive_group()
    table.add_argument("--recorded-backbones", type=Path, default=None, metavar="JSON",
                       help="take the backbone table's rows other than --model's from this file (written by "
                            "--write-backbones) instead of extracting their features; they are marked recorded, and "
                            "rows recorded on other images or settings are listed but not ranked")
    table.add_argument("--write-backbones", type=output_file, default=None, metavar="JSON",
                       help="also write the backbone table of this run (every backbone's scores, the images and "
                            "the command) to this file, for --recorded-backbones")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False,
                   help="average each image's features with its mirror image's (default: off; 5-fold CV on "
                        "trainval gave no gain for Lite0 + logreg, 0.922 with flips vs 0.924 without)")
    p.add_argument("--folds", type=positive_int, default=5,
                   help="cross-validation folds on trainval, at least 2 (default 5; fewer if a breed has fewer images)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--threads", type=thread_count, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--cache-dir", type=folder_path, default=DEFAULT_CACHE,
                   help="where extracted features are cached (default .cache/features in the current folder)")
    p.add_argument("--limit-per-class", type=positive_int, default=None,
                   help="use at most this many images per breed and split (quick runs; default: all)")
    p.add_argument("--max-breeds", type=positive_int, default=None,
                   help="use only the first K breeds by class id (quick runs and tests; default: all 37)")
    add_download_flag(p, "the official Oxford-IIIT Pet")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_args(p, PROBLEM)
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error(f"--folds {args.folds}: cross-validation needs at least 2 folds")
    return args


def write_figures(r: P2Result, out: Path) -> None:
    """The confusion matrix and the CV curves, under the names in r.figures."""
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion(np.array(r.confusion_matrix, dtype=np.int64), r.class_names, out / r.figures["confusion_matrix"],
                   f"{r.model} + {r.classifier} (C={r.C:g}): mean-per-class accuracy "
                   f"{fmt_pct(r.mean_per_class_accuracy, 2)}\n{r.n_test:,} test images, {r.n_classes} breeds")
    grids = {kind: [vars(p) for p in grid] for kind, grid in r.cv.grids.items()}
    plot_cv_curve(grids, out / r.figures["cv_curve"],
                  f"{r.cv.folds}-fold CV on trainval ({r.n_train} images), {r.model} features")


def summary_lines(r: P2Result) -> list[str]:
    """The printout; every number in it is in results.json."""
    ext = {"trainval": r.extraction.trainval, "test": r.extraction.test}
    logs = (r.image_defects.trainval, r.image_defects.test)
    lines = [f"features: {r.model}, {r.feature_dim}-d, flip-averaged={r.flip_averaged}; "
             + "; ".join(f"{s} {e.images} images at {e.images_per_second:.1f} img/s with "
                         f"{e.passes_per_image} forward pass(es) per image"
                         f"{' (from the cache; speed of the run that filled it)' if e.from_cache else ''}"
                         for s, e in ext.items())
             + f"; {sum(g.n_converted for g in logs)} images converted to RGB, "
               f"{sum(g.n_skipped for g in logs)} undecodable skipped",
             f"min feature value {r.feature_min:.3g} (non-negative after ReLU6 + pooling)"]
    for c in r.classifiers:
        grid = r.cv.grids.get(c.classifier) if c.C_source == "cv" else None
        cv_best = (f"CV mean-per-class {max(p.cv_mean_per_class_accuracy for p in grid):.4f}" if grid
                   else c.C_source)
        lines.append(f"{c.classifier:>10}: C={c.C:g} ({cv_best}) "
                     f"-> test mean-per-class accuracy {c.mean_per_class_accuracy:.4f}, accuracy {c.accuracy:.4f} "
                     f"over {r.coverage.text}")
    lines.append("per-breed test accuracy (main classifier):")
    for name, row in sorted(r.per_breed.items(), key=lambda kv: (kv[1].accuracy is None, kv[1].accuracy or 0)):
        acc = "  n/a" if row.accuracy is None else f"{row.accuracy:.3f}"
        lines.append(f"  {name:28s} {acc}  (test {row.n_test:3d}, train {row.n_train:3d})")
    lines.append("most-confused pairs (errors both ways):")
    for p in r.most_confused_pairs[:5]:
        lines.append(f"  {p.a} <-> {p.b}: {p.errors} ({p.a_as_b} + {p.b_as_a})")
    lines.append("backbones:")
    for b in r.backbones:
        if b.available:
            lines.append(f"  {b.model:24s} dim {b.feature_dim:5d}  mean-per-class {b.mean_per_class_accuracy:.4f} "
                         f"accuracy {b.accuracy:.4f} (n_test {b.n_test})"
                         + (f"  recorded in {r.recorded_backbones.file}" if b.recorded else ""))
        else:
            lines.append(f"  {b.model:24s} unavailable: {b.reason}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    compare = [c for c in args.compare.split(",") if c.strip()]
    for c in compare:
        if c not in CLASSIFIERS:
            raise UserError(f"--compare names {c!r}; expected a comma list of {', '.join(CLASSIFIERS)}")
    result, table = run_and_table(
        data_dir=args.data_dir, model=args.model, classifier=args.classifier, compare=compare,
        backbones=[b.strip() for b in args.backbones.split(",") if b.strip()], folds=args.folds,
        limit_per_class=args.limit_per_class, max_breeds=args.max_breeds, download=args.download,
        features=FeatureOptions(args.cache_dir, args.batch_size, args.flip, args.threads, args.seed,
                                not args.no_progress),
        command=command_line(), recorded_backbones=args.recorded_backbones)
    write_figures(result, args.out)
    print("\n".join(summary_lines(result)))
    result.write(args.out / "results.json")
    print(f"wrote {args.out / 'results.json'}")
    if args.write_backbones:
        table.write(args.write_backbones)
        print(f"wrote {args.write_backbones} ({', '.join(b.model for b in table.backbones)})")
    return 0
