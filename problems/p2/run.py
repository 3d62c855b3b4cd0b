"""P2's steps: the Pets splits -> each backbone's penultimate features -> linear classifiers -> P2Result.

`run(...)` is the whole problem; the steps it calls are `load_data`, `run_backbone` (features_for, then
`evaluate` per classifier) and the small builders of the result's blocks.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from problems.common.cli import UserError, data_root, portable_path, seed_everything
from problems.p2.linear_probe import (CLASSIFIERS, confusion_matrix, cross_validate_C, fit_predict, l2_normalize,
                                      mean_per_class_accuracy, most_confused_pairs, per_class_accuracy)
from problems.p2.penultimate import FeatureSet
from problems.p2.pets import PetsDataset, PetsSplit, download_pets, have_pets, load_pets, pets_obtainable
from problems.common.result import ResultError
from problems.p2.result import (BackboneData, BackboneScore, BackboneTiming, BreedScore, ClassifierScore,
                                ConfusedPair, Coverage, CrossValidation, CVPoint, Extraction, Extractions,
                                ImageDefects, MissingImages, ExtractorInfo, P2Result, ReadLog, RecordedBackbones,
                                RecordedSource, SplitCounts, UnavailableBackbone)

PROBLEM = "p2"
DEFAULT_MODEL = "tf_efficientnet_lite0"
DEFAULT_BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
DEFAULT_CACHE = Path(".cache") / "features"
CV_SCORING = "mean-per-class accuracy (balanced accuracy) on held-out folds of trainval"
FIGURES = {"confusion_matrix": "confusion_matrix.png", "cv_curve": "cv_curve.png"}


@dataclass(frozen=True)
class FeatureOptions:
    """How every backbone of one run extracts its features."""
    cache_dir: Path = DEFAULT_CACHE
    batch_size: int = 32
    flip: bool = False
    threads: int = 2
    seed: int = 0
    progress: bool = True


@dataclass
class PetsData:
    """The Pets copy and the (limited) splits this run uses; `folds` is what the split files allow."""
    dataset: PetsDataset
    splits: dict[str, PetsSplit]
    class_names: list[str]
    missing: dict                       # PetsDataset.missing_report()
    folds: int


@dataclass
class Fit:
    """One classifier on one backbone's features: its C (and CV table) and its test predictions."""
    classifier: str
    C: float
    C_source: str
    cv: list[CVPoint]
    y_pred: np.ndarray
    mean_per_class_accuracy: float
    accuracy: float
    seconds: float

    def score(self) -> ClassifierScore:
        return ClassifierScore(self.classifier, self.C, self.C_source, self.mean_per_class_accuracy, self.accuracy,
                               self.seconds)


@dataclass
class BackboneRun:
    """One backbone: its features of both splits, the labels of the images that decoded, and its fits."""
    model: str
    features: dict[str, FeatureSet]
    info: dict                          # model.scratchnet_info
    load_seconds: float
    y_train: np.ndarray
    y_test: np.ndarray
    folds: int                          # the CV folds the decoded trainval images allow
    fits: list[Fit] = field(default_factory=list)

    def score(self, class_names) -> BackboneScore:
        """The backbone table's row: logistic regression's test scores (the first classifier's when logreg was
        not fitted), with the per-breed counts its interval is made from."""
        f = next((f for f in self.fits if f.classifier == "logreg"), self.fits[0])
        right = np.bincount(self.y_test[f.y_pred == self.y_test], minlength=len(class_names))
        n = np.bincount(self.y_test, minlength=len(class_names))
        counts = {class_names[c]: [int(right[c]), int(n[c])] for c in range(len(class_names)) if n[c]}
        return BackboneScore(self.model, int(self.features["trainval"].features.shape[1]), f.classifier, f.C,
                             f.mean_per_class_accuracy, f.accuracy, int(len(self.y_test)), True,
                             int(self.info["preprocessing"]["center_crop"]), counts)

    def timing(self) -> BackboneTiming:
        tr, te = self.features["trainval"], self.features["test"]
        images, seconds = int(tr.kept.size + te.kept.size), tr.seconds + te.seconds
        f = next((f for f in self.fits if f.classifier == "logreg"), self.fits[0])
        return BackboneTiming(self.model, images, seconds, images / seconds if seconds > 0 else float("nan"),
                              tr.from_cache and te.from_cache, f.seconds)


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


def load_data(root: Path, download: bool = True, limit_per_class: int | None = None,
              max_breeds: int | None = None, folds: int = 5) -> PetsData:
    """The Pets copy under `root` (downloaded first if allowed and absent), limited and checked for CV before
    any features are extracted; prints what was found."""
    why = pets_obtainable(root, download)
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
    if max_breeds is not None and max_breeds > len(ds.class_names):
        raise UserError(f"--max-breeds {max_breeds}: the data has only {len(ds.class_names)} breeds")
    splits = {s: _limit(ds.splits[s], limit_per_class, max_breeds) for s in ("trainval", "test")}
    class_names = ds.class_names[:max_breeds] if max_breeds else ds.class_names
    folds = check_splits(splits, class_names, folds)
    print(f"data: {ds.root}; trainval {len(splits['trainval'])} / test {len(splits['test'])} images present "
          f"(listed {missing['trainval']['listed']} / {missing['test']['listed']}; missing on disk "
          f"{missing['trainval']['missing']} / {missing['test']['missing']}); {len(class_names)} breeds; "
          f"{len(ds.unlisted)} files in no split ignored")
    short = [b for b in ds.class_names if missing["trainval"]["per_breed"].get(b) or missing["test"]["per_breed"].get(b)]
    if short:
        print("missing on disk per breed (trainval/test): " + ", ".join(
            f"{b} {missing['trainval']['per_breed'].get(b, 0)}/{missing['test']['per_breed'].get(b, 0)}" for b in short))
    return PetsData(ds, splits, class_names, missing, folds)


def features_for(model_name: str, splits, opts: FeatureOptions):
    """Load the backbone and return ({split: FeatureSet}, its info, load seconds); UserError if it cannot be
    loaded."""
    import torch
    from problems.common.pretrained import load_pretrained, penultimate_features
    from problems.p2.penultimate import cached_features
    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    t0 = time.perf_counter()
    model, preprocess, _ = load_pretrained(model_name)
    load_s = time.perf_counter() - t0
    out = {}
    for name, sp in splits.items():
        out[name] = cached_features(model, preprocess, sp.paths, sp.names, penultimate_features,
                                    cache_dir=opts.cache_dir, tag=name, batch_size=opts.batch_size,
                                    flip=opts.flip, progress=opts.progress)
    return out, dict(model.scratchnet_info), load_s


def evaluate(kind, x_tr, y_tr, x_te, y_te, n_classes: int, folds: int, seed: int = 0, given_C=None) -> Fit:
    """C chosen by `folds`-fold CV on trainval (or `given_C`), fit, predict test."""
    t0 = time.perf_counter()
    if given_C is None:
        print(f"{kind}: choosing C by {folds}-fold CV on trainval ({len(y_tr)} images) ...",
              file=sys.stderr, flush=True)
        C, cv_table = cross_validate_C(kind, x_tr, y_tr, folds=folds, seed=seed)
    else:
        C, cv_table = given_C, []
    y_hat = fit_predict(kind, x_tr, y_tr, x_te, C, seed=seed)
    print(f"{kind}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return Fit(kind, C, "cv" if given_C is None else "logreg's CV choice (same objective)",
               [CVPoint(**row) for row in cv_table], y_hat, mean_per_class_accuracy(y_te, y_hat, n_classes),
               float(np.mean(y_hat == y_te)), time.perf_counter() - t0)


def run_backbone(name: str, kinds, data: PetsData, folds: int, opts: FeatureOptions) -> BackboneRun:
    """Features of backbone `name`, then each classifier in `kinds` fitted on trainval and scored on test."""
    feats, info, load_s = features_for(name, data.splits, opts)
    tr, te = feats["trainval"], feats["test"]
    y_tr = data.splits["trainval"].labels[tr.kept]
    y_te = data.splits["test"].labels[te.kept]
    folds = check_labels(y_tr, len(y_te), data.class_names, folds, "that could be decoded")
    x_tr, x_te = l2_normalize(tr.features), l2_normalize(te.features)
    out = BackboneRun(name, feats, info, load_s, y_tr, y_te, folds)
    for kind in kinds:
        # scratchnet's softmax regression minimises logreg's objective (same C scale), so once logreg's
        # C is cross-validated it is reused instead of repeating the costly CV with a slower optimiser
        done = {f.classifier: f.C for f in out.fits}
        given = done.get("logreg") if kind == "scratchnet" else None
        out.fits.append(evaluate(kind, x_tr, y_tr, x_te, y_te, len(data.class_names), folds, opts.seed, given))
    return out


def read_recorded(path) -> RecordedBackbones:
    """The recorded backbone table at `path` (--recorded-backbones); UserError with one line when it is missing
    or is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--recorded-backbones {path}: no such file; write one with --write-backbones {path}")
    try:
        return RecordedBackbones.read(path)
    except ResultError as e:
        raise UserError(f"--recorded-backbones {path}: not a recorded backbone table ({e}); write one with "
                        f"--write-backbones {path}") from None


def _digest(split: PetsSplit, kept: np.ndarray) -> str:
    """sha256 of the decoded images of a split: their names and labels, in split-file order."""
    pairs = [[n, int(y)] for n, y, k in zip(split.names, split.labels.tolist(), kept) if k]
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def backbone_data(main: BackboneRun, data: PetsData, opts: FeatureOptions, limit_per_class, max_breeds,
                  data_dir: str | None) -> BackboneData:
    """The images (and settings) this run's backbone rows are computed on."""
    return BackboneData(portable_path(data.dataset.root, data_dir), int(len(main.y_train)), int(len(main.y_test)),
                        len(data.class_names), limit_per_class, max_breeds, opts.flip, main.folds, opts.seed,
                        _digest(data.splits["trainval"], main.features["trainval"].kept),
                        _digest(data.splits["test"], main.features["test"].kept))


def other_backbones(names, main: BackboneRun, data: PetsData, opts: FeatureOptions,
                    recorded: RecordedBackbones | None = None) -> tuple[list, list[BackboneRun]]:
    """The backbone table's rows after the main model's: logistic regression on each one's features (taken
    from `recorded` where it has the backbone, marked recorded), or why it is unavailable here; and the
    backbones run here."""
    rows, runs = [], []
    for b in names:
        if b == main.model:
            continue
        row = recorded.row(b) if recorded else None
        if row is not None:
            rows.append(BackboneScore(**{**vars(row), "recorded": True}))
            continue
        if recorded:
            print(f"backbone {b}: not in the recorded table; extracting its features", file=sys.stderr)
        try:
            runs.append(run_backbone(b, ["logreg"], data, main.folds, opts))
        except UserError as e:
            rows.append(UnavailableBackbone(b, False, str(e)))
            print(f"backbone {b}: not available ({e})", file=sys.stderr)
            continue
        rows.append(runs[-1].score(data.class_names))
    return rows, runs


def extraction_stats(feats: dict[str, FeatureSet]) -> Extractions:
    def one(f: FeatureSet) -> Extraction:
        return Extraction(int(f.kept.size), f.seconds, f.images_per_second, f.from_cache, portable_path(f.cache_path),
                          f.passes_per_image)
    return Extractions(one(feats["trainval"]), one(feats["test"]))


def per_breed_scores(y_tr, y_te, y_hat, class_names) -> dict[str, BreedScore]:
    k = len(class_names)
    acc_k = per_class_accuracy(y_te, y_hat, k)
    n_te_k = np.bincount(y_te, minlength=k)
    n_tr_k = np.bincount(y_tr, minlength=k)
    return {class_names[c]: BreedScore(None if np.isnan(acc_k[c]) else float(acc_k[c]), int(n_te_k[c]),
                                       int(n_tr_k[c])) for c in range(k)}


def run(**kwargs) -> P2Result:
    """The whole problem (see run_and_table); returns the result (discussion included, nothing written)."""
    return run_and_table(**kwargs)[0]


def run_and_table(*, data_dir: str | None = None, model: str = DEFAULT_MODEL, classifier: str = "logreg",
                  compare=("svm", "scratchnet"), backbones=DEFAULT_BACKBONES, folds: int = 5,
                  limit_per_class: int | None = None, max_breeds: int | None = None, download: bool = True,
                  features: FeatureOptions = FeatureOptions(), command: str = "",
                  recorded_backbones: Path | None = None) -> tuple[P2Result, RecordedBackbones]:
    """The whole problem: `model`'s features, `classifier` and the `compare` ones on them, then logistic
    regression on each of `backbones` (read from the recorded table `recorded_backbones` where it has them).
    Returns the result (discussion included, nothing written) and the backbone table of the backbones run
    here, as --write-backbones records it."""
    unknown = [c for c in (classifier, *compare) if c not in CLASSIFIERS]
    if unknown:
        raise ValueError(f"unknown classifier(s) {unknown}; expected {', '.join(CLASSIFIERS)}")
    recorded = read_recorded(recorded_backbones) if recorded_backbones is not None else None
    seed = features.seed
    seed_everything(seed)
    data = load_data(data_root(data_dir), download, limit_per_class, max_breeds, folds)
    kinds = [classifier] + [c for c in compare if c != classifier]
    main = run_backbone(model, kinds, data, data.folds, features)
    best = main.fits[0]
    y_tr, y_te = main.y_train, main.y_test
    k = len(data.class_names)
    raw = main.features["trainval"].features
    missing = data.missing
    n_te, n_tr = len(y_te), len(y_tr)
    classes_te = int(np.unique(y_te).size)
    coverage = _coverage(n_te, classes_te, missing["test"]["listed"], len(data.dataset.class_names))
    cm = confusion_matrix(y_te, best.y_pred, k)
    others, runs = other_backbones(backbones, main, data, features, recorded)
    table = [main.score(data.class_names)] + others
    this_data = backbone_data(main, data, features, limit_per_class, max_breeds, data_dir)
    source = None
    if recorded is not None and any(getattr(b, "recorded", False) for b in others):
        source = RecordedSource(portable_path(recorded_backbones), recorded.command, recorded.data, this_data)
        if source.differences:
            print("note: the recorded backbone rows are not comparable with this run: " + "; ".join(
                source.differences), file=sys.stderr)
        elif (old := recorded.row(model)) is not None and (
                old.mean_per_class_accuracy != table[0].mean_per_class_accuracy or old.C != table[0].C):
            print(f"warning: {model} scores {table[0].mean_per_class_accuracy:.4f} (C={table[0].C:g}) here but "
                  f"{old.mean_per_class_accuracy:.4f} (C={old.C:g}) in {source.file}, on the same images",
                  file=sys.stderr)
    result = P2Result(
        problem=PROBLEM, command=command, seed=seed, model=model, model_info=ExtractorInfo.from_json(main.info),
        feature_dim=int(raw.shape[1]), feature_min=float(raw.min()), flip_averaged=features.flip,
        classifier=classifier, C=best.C, mean_per_class_accuracy=best.mean_per_class_accuracy,
        accuracy=best.accuracy, n_train=n_tr, n_test=n_te, n_classes_test=classes_te, n_classes=k,
        coverage=Coverage(coverage, missing["test"]["listed"], missing["test"]["present"], n_te,
                          missing["trainval"]["listed"], n_tr, limit_per_class, max_breeds),
        missing_images=MissingImages(SplitCounts(**missing["trainval"]), SplitCounts(**missing["test"])),
        unlisted_files=len(data.dataset.unlisted),
        image_defects=ImageDefects(*(ReadLog.from_json(main.features[s].read_log) for s in ("trainval", "test"))),
        extraction=extraction_stats(main.features), model_load_seconds=main.load_seconds,
        cv=CrossValidation(main.folds, CV_SCORING, "balanced", {f.classifier: f.cv for f in main.fits if f.cv}),
        classifiers=[f.score() for f in main.fits],
        per_breed=per_breed_scores(y_tr, y_te, best.y_pred, data.class_names),
        most_confused_pairs=[ConfusedPair(**p) for p in most_confused_pairs(cm, data.class_names, top=10)],
        confusion_matrix=cm.tolist(), backbones=table, figures=dict(FIGURES), discussion="",
        data_root=portable_path(data.dataset.root, data_dir), recorded_backbones=source)
    result.discussion = result.discussion_text()
    run_here = [main] + runs
    table_here = RecordedBackbones("p2_backbones", command, this_data,
                                   [r.score(data.class_names) for r in run_here], [r.timing() for r in run_here])
    return result, table_here
