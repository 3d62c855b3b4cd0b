"""P2's result: the fields of results/p2/results.json, checked on reading, and the text made from them.

Accuracies are fractions in [0, 1]; "mean-per-class accuracy" is the mean over breeds of each breed's
accuracy on its test images. Times are seconds. Per-split blocks hold the two splits of the Pets copy,
trainval (every fit and every cross-validation fold) and test (touched once, by the final predictions).
"""
from __future__ import annotations

from dataclasses import dataclass

from problems.common.pretrained import Preprocessing
from problems.common.fmt import DASH, fmt_pct, is_missing
from problems.common.result import Result, ResultError


@dataclass
class ExtractorInfo(Result):
    """The feature extractor as the pretrained-model loader describes it."""
    name: str
    library: str
    weights: str
    feature_dim: int | None             # None when a torchvision net has no Linear head to read it from
    preprocessing: Preprocessing


@dataclass
class Coverage:
    """Which part of the listed images the numbers are about (the shared copy is partial)."""
    text: str
    test_listed: int
    test_present: int
    test_used: int
    train_listed: int
    train_used: int
    limit_per_class: int | None
    max_breeds: int | None


@dataclass
class SplitCounts:
    """One split's images: listed in its split file, present on disk, missing (per breed where any)."""
    listed: int
    present: int
    missing: int
    per_breed: dict[str, int]


@dataclass
class MissingImages:
    trainval: SplitCounts
    test: SplitCounts


@dataclass
class ReadLog(Result):
    """pets.ImageReadLog.summary(): images converted to RGB (by what they were) and undecodable ones skipped."""
    converted: dict[str, int]
    converted_files: list[str]
    n_converted: int
    skipped: list[str]
    n_skipped: int


@dataclass
class ImageDefects:
    trainval: ReadLog
    test: ReadLog


@dataclass
class Extraction:
    """One split's feature extraction; speed and time are those of the run that filled the cache."""
    images: int                         # images requested (undecodable ones included)
    seconds: float
    images_per_second: float
    from_cache: bool
    cache_file: str
    passes_per_image: int               # 2 with flip-averaging


@dataclass
class Extractions:
    trainval: Extraction
    test: Extraction


@dataclass
class CVPoint:
    """One C of the grid: mean and spread of the held-out folds' mean-per-class accuracy."""
    C: float
    cv_mean_per_class_accuracy: float
    cv_std: float


@dataclass
class CrossValidation:
    folds: int
    scoring: str
    class_weight: str
    grids: dict[str, list[CVPoint]]     # classifier -> its grid (classifiers whose C was cross-validated)


@dataclass
class ClassifierScore:
    """One linear classifier on the main model's features, scored on the test split."""
    classifier: str
    C: float
    C_source: str                       # "cv", or where the C was taken from
    mean_per_class_accuracy: float
    accuracy: float
    seconds: float                      # CV + final fit + prediction


@dataclass
class BreedScore:
    accuracy: float | None              # None for a breed without test images
    n_test: int
    n_train: int


@dataclass
class ConfusedPair:
    """Breeds a and b: errors both ways (a_as_b + b_as_a) and each one's test images."""
    a: str
    b: str
    errors: int
    a_as_b: int
    b_as_a: int
    n_a: int
    n_b: int


@dataclass
class BackboneScore:
    """A backbone that loaded: a classifier on its features."""
    model: str
    feature_dim: int
    classifier: str
    C: float
    mean_per_class_accuracy: float
    accuracy: float
    n_test: int
    available: bool = True

    def __post_init__(self):
        if self.available is not True:
            raise ResultError(f"backbone {self.model}: a scored backbone has available true")


@dataclass
class UnavailableBackbone:
    """A backbone that could not be loaded here, and why."""
    model: str
    available: bool
    reason: str

    def __post_init__(self):
        if self.available is not False:
            raise ResultError(f"backbone {self.model}: an unavailable backbone has available false")


@dataclass
class P2Result(Result):
    """Everything problems/p2 writes to results.json. The main classifier's numbers are repeated at the
    top level; `classifiers[0]` and `backbones[0]` are the main classifier and model."""
    problem: str
    command: str
    seed: int
    model: str
    model_info: ExtractorInfo
    feature_dim: int
    feature_min: float                  # smallest raw trainval feature (>= 0 after ReLU6 and pooling)
    flip_averaged: bool
    classifier: str
    C: float
    mean_per_class_accuracy: float
    accuracy: float
    n_train: int
    n_test: int
    n_classes_test: int                 # breeds with test images
    n_classes: int                      # breeds used (after --max-breeds)
    coverage: Coverage
    missing_images: MissingImages
    unlisted_files: int                 # image files in no split file, ignored
    image_defects: ImageDefects
    extraction: Extractions
    model_load_seconds: float
    cv: CrossValidation
    classifiers: list[ClassifierScore]
    per_breed: dict[str, BreedScore]    # in class-id order
    most_confused_pairs: list[ConfusedPair]
    confusion_matrix: list[list[int]]   # [true breed][predicted breed], test images
    backbones: list[BackboneScore | UnavailableBackbone]
    figures: dict[str, str]             # role -> file, relative to the results folder
    discussion: str
    data_root: str

    def __post_init__(self):
        k = self.n_classes
        if len(self.per_breed) != k or len(self.confusion_matrix) != k or any(
                len(row) != k for row in self.confusion_matrix):
            raise ResultError(f"P2Result: per_breed and confusion_matrix must cover the {k} breeds (n_classes)")
        if not self.classifiers or self.classifiers[0].classifier != self.classifier:
            raise ResultError(f"P2Result.classifiers: the first entry must be the main classifier {self.classifier}")

    @property
    def class_names(self) -> list[str]:
        return list(self.per_breed)

    def discussion_text(self) -> str:
        """The discussion paragraph, generated from the numbers above."""
        lines = [f"{self.model} penultimate features (L2-normalised{', flip-averaged' if self.flip_averaged else ''}) "
                 f"with {self.classifier} at C={self.C:g}, chosen by {self.cv.folds}-fold cross-validation on the "
                 f"{self.n_train} trainval images only, give a test mean-per-class accuracy of "
                 f"{self.mean_per_class_accuracy:.4f} (overall accuracy {self.accuracy:.4f}) "
                 f"over {self.coverage.text}."]
        by_kind = {c.classifier: c for c in self.classifiers}
        others = [c for kind, c in by_kind.items() if kind != self.classifier]
        scores = [c.mean_per_class_accuracy for c in by_kind.values()]
        if others:
            lines.append("On the same features: " + "; ".join(
                f"{c.classifier} (C={c.C:g}) {c.mean_per_class_accuracy:.4f}" for c in others) +
                f". The spread between the linear classifiers is {max(scores) - min(scores):.4f} (mean-per-class "
                "accuracy): on features this separable the choice of loss (softmax cross-entropy vs one-vs-rest "
                "squared hinge) matters less than the amount of regularisation, which the cross-validation picks; "
                "logistic regression also gives class probabilities, and scratchnet's softmax regression optimises "
                "the same objective as scikit-learn's with Adam instead of L-BFGS.")
        lines.append("Classes are weighted inversely to their trainval counts (class_weight='balanced') because "
                     "the metric weighs every breed equally while the partial copy holds 100 images for cats and "
                     "about 25 for most dog breeds; C is chosen by mean-per-class accuracy on held-out folds.")
        if self.most_confused_pairs:
            lines.append("Most confusions are between look-alike breeds: " + ", ".join(
                f"{p.a}/{p.b} ({p.errors})" for p in self.most_confused_pairs[:4]) + ".")
        worst = sorted((v.accuracy, n) for n, v in self.per_breed.items() if v.accuracy is not None)[:3]
        lines.append("Weakest breeds: " + ", ".join(f"{n} {a:.2f}" for a, n in worst) + ".")
        unavailable = [b.model for b in self.backbones if not b.available]
        if unavailable:
            lines.append("Backbones not available on this machine: " + ", ".join(unavailable) + ".")
        return " ".join(lines)


# ------------------------------------------------------------------------------------------- report text
def report_facts(d: P2Result) -> dict:
    """What the report's P2 section says beyond the raw fields: its sentences and the ranked tables."""
    out = {"classifiers": d.classifiers, "sentence": None, "compare": None, "coverage": d.coverage.text}
    dim = DASH if is_missing(d.feature_dim) else f"{d.feature_dim:,}"
    out["sentence"] = (f"With {d.classifier} on the {dim}-dimensional penultimate features of {d.model}, the test "
                       f"mean-per-class accuracy is {fmt_pct(d.mean_per_class_accuracy)} (overall accuracy "
                       f"{fmt_pct(d.accuracy)}) over {out['coverage'] or DASH}.")
    scored = [c for c in d.classifiers if not is_missing(c.mean_per_class_accuracy)]
    if len(scored) > 1:
        best = max(scored, key=lambda c: c.mean_per_class_accuracy)
        worst = min(scored, key=lambda c: c.mean_per_class_accuracy)
        spread = 100 * (best.mean_per_class_accuracy - worst.mean_per_class_accuracy)
        out["compare"] = (f"On the same features {best.classifier} scores highest "
                          f"({fmt_pct(best.mean_per_class_accuracy)}) and {worst.classifier} lowest "
                          f"({fmt_pct(worst.mean_per_class_accuracy)}), a spread of "
                          f"{DASH if is_missing(spread) else f'{spread:.1f}'} percentage points.")
    ranked = sorted(((v.accuracy, k, v) for k, v in d.per_breed.items() if not is_missing(v.accuracy)),
                    key=lambda t: (t[0], t[1]))
    out["weakest"] = [(k, v) for _, k, v in ranked[:5]]
    out["strongest"] = [(k, v) for _, k, v in ranked[::-1][:5]]
    out["n_breeds"] = len(d.per_breed)
    out["pairs"] = d.most_confused_pairs[:6]
    out["backbones"] = d.backbones
    out["from_cache"] = d.extraction.trainval.from_cache and d.extraction.test.from_cache
    return out


def headline(d: P2Result) -> str:
    """The report's cover-page line for P2."""
    return (f"{d.classifier} on {d.model} features: mean-per-class accuracy {fmt_pct(d.mean_per_class_accuracy)} "
            f"over {d.coverage.text}")
