"""P2's result: the fields of results/p2/results.json, checked on reading, and the text made from them.

Accuracies are fractions in [0, 1]; "mean-per-class accuracy" is the mean over breeds of each breed's
accuracy on its test images. Times are seconds. Per-split blocks hold the two splits of the Pets copy,
trainval (every fit and every cross-validation fold) and test (touched once, by the final predictions).
"""
from __future__ import annotations

import math
import re
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
    input_size: int | None = None       # the network's input, pixels per side (its centre crop)
    breed_counts: dict[str, list[int]] | None = None   # breed -> [right, test images], breeds with test images
    recorded: bool = False              # read from a recorded backbone table (--recorded-backbones), not run here

    def __post_init__(self):
        if self.available is not True:
            raise ResultError(f"backbone {self.model}: a scored backbone has available true")
        for breed, pair in (self.breed_counts or {}).items():
            if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
                raise ResultError(f"backbone {self.model}: breed_counts.{breed} must be [right, test images]")


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
class BackboneData:
    """The images a backbone table was computed on: the decoded images of each split (counts and a sha256 of
    their names and labels, in split-file order) and the limits that chose them; and how: flip-averaged
    features or not, the cross-validation folds and the seed. Two tables are comparable row for row only when
    all of these agree."""
    data_root: str
    n_train: int
    n_test: int
    n_classes: int
    limit_per_class: int | None
    max_breeds: int | None
    flip_averaged: bool
    folds: int                          # cross-validation folds that chose C
    seed: int
    trainval_sha256: str
    test_sha256: str

    def differences(self, other: "BackboneData") -> list[str]:
        """What differs between the images of `self` (recorded) and `other` (this run), in words; [] when
        they are the same images."""
        out = []
        pairs = (("test images", self.n_test, other.n_test), ("trainval images", self.n_train, other.n_train),
                 ("breeds", self.n_classes, other.n_classes))
        for what, a, b in pairs:
            if a != b:
                out.append(f"{a:,} {what} recorded, {b:,} in this run")
        if not out and (self.test_sha256 != other.test_sha256 or self.trainval_sha256 != other.trainval_sha256):
            out.append("as many images as this run, but not the same ones")
        if self.flip_averaged != other.flip_averaged:
            out.append("flip-averaged features " + ("recorded, plain ones in this run" if self.flip_averaged else
                                                    "in this run, plain ones recorded"))
        if self.folds != other.folds:
            out.append(f"C chosen by {self.folds}-fold cross-validation recorded, {other.folds}-fold in this run")
        if self.seed != other.seed:
            out.append(f"seed {self.seed} recorded, {other.seed} in this run")
        return out


@dataclass
class BackboneTiming:
    """How long one backbone of a recorded table took: feature extraction of both splits (that of the run
    that filled the feature cache) and the classifier's cross-validation, fit and prediction."""
    model: str
    images: int
    extraction_seconds: float
    images_per_second: float
    from_cache: bool
    fit_seconds: float


@dataclass
class RecordedBackbones(Result):
    """recorded/p2_backbones.json: the backbone table computed once (problems/p2_transfer.py
    --write-backbones), read back by --recorded-backbones instead of extracting every backbone's features."""
    problem: str                        # "p2_backbones"
    command: str
    data: BackboneData
    backbones: list[BackboneScore]
    timings: list[BackboneTiming]

    def __post_init__(self):
        if self.problem != "p2_backbones":
            raise ResultError(f"RecordedBackbones.problem: expected 'p2_backbones', got {self.problem!r}")
        if not self.backbones:
            raise ResultError("RecordedBackbones.backbones: expected at least one scored backbone")
        for b in self.backbones:
            if b.recorded:
                raise ResultError(f"RecordedBackbones: backbone {b.model} is itself marked recorded")

    def row(self, model: str) -> BackboneScore | None:
        return next((b for b in self.backbones if b.model == model), None)


@dataclass
class RecordedSource:
    """Where the backbone table's recorded rows come from, and the images of both tables."""
    file: str
    command: str                        # the command that wrote the file
    recorded: BackboneData              # the images the recorded rows were computed on
    this_run: BackboneData              # the images of this run

    @property
    def differences(self) -> list[str]:
        return self.recorded.differences(self.this_run)

    @property
    def comparable(self) -> bool:
        return not self.differences


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
    recorded_backbones: RecordedSource | None = None   # where rows marked recorded come from (None: none are)

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
        """The discussion the script writes: every sentence of `discussion_parts`, generated from the numbers above."""
        return " ".join(t for t in discussion_parts(self).values() if t)


# ------------------------------------------------------------------------------------------- statistics
Z95 = 1.959963984540054           # the normal quantile of a two-sided 95% interval


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion k/n (95% for the default z); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class BreedCount:
    """One breed's test result: `correct` of its `n` test images, and the Wilson 95% interval of the accuracy."""
    name: str
    correct: int
    n: int
    low: float
    high: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.n


def breed_counts(d: P2Result) -> list[BreedCount]:
    """The breeds with test images, in class-id order, counted from the confusion matrix (row i: breed i's
    test images; the diagonal: those classified right)."""
    out = []
    for i, name in enumerate(d.per_breed):
        row = d.confusion_matrix[i]
        n = int(sum(row))
        if n:
            out.append(BreedCount(name, int(row[i]), n, *wilson_interval(int(row[i]), n)))
    return out


@dataclass(frozen=True)
class MeanInterval:
    """The mean-per-class accuracy (mean of the breeds' accuracies) with a 95% interval, as fractions."""
    mean: float
    low: float
    high: float
    half: float                     # half-width of the interval before clipping to [0, 1]
    n_breeds: int


def mean_per_class_interval(d: P2Result, z: float = Z95) -> MeanInterval | None:
    """Normal approximation over the test images: each breed's test images are an independent binomial sample,
    so the mean of K breed accuracies has variance (1/K^2) sum_k p_k (1 - p_k) / n_k. p_k is taken at the
    Agresti-Coull proportion (c_k + z^2/2) / (n_k + z^2), with n_k + z^2 in the denominator, so a breed with
    every test image right still adds its uncertainty (its plain estimate 1 would add none). It covers the
    sampling of test images only, not the choice of training images or of C."""
    return counts_interval([(b.correct, b.n) for b in breed_counts(d)], z)


def counts_interval(counts, z: float = Z95) -> MeanInterval | None:
    """mean_per_class_interval from (right, test images) per breed; breeds without test images are left out,
    None when none has any."""
    counts = [(c, n) for c, n in counts if n > 0]
    if not counts:
        return None
    k = len(counts)
    mean = sum(c / n for c, n in counts) / k
    var = 0.0
    for c, n in counts:
        n_t = n + z * z
        p_t = (c + z * z / 2) / n_t
        var += p_t * (1 - p_t) / n_t
    half = z * math.sqrt(var) / k
    return MeanInterval(mean, max(0.0, mean - half), min(1.0, mean + half), half, k)


def backbone_interval(b: BackboneScore) -> MeanInterval | None:
    """The 95% interval of a backbone row's mean-per-class accuracy (None without its per-breed counts)."""
    return counts_interval(list((b.breed_counts or {}).values()))


# ------------------------------------------------------------------------------------------- report text
ASSIGNMENT_FEATURE_RANGE = (2000, 6000)        # the assignment: "a layer with around 2000-6000 features"

CLASSIFIER_METHODS = {
    "logreg": "multinomial logistic regression (scikit-learn, L-BFGS)",
    "svm": "linear SVM, one-vs-rest squared hinge loss (scikit-learn LinearSVC)",
    "scratchnet": "softmax regression with logreg's objective, trained with scratchnet's Adam",
}


def _and(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _breeds(n: int) -> str:
    return f"{n} breed is" if n == 1 else f"{n} breeds are"


def _pct(x) -> str:
    return fmt_pct(x, 2)


def _span(values, fmt=str) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if lo == hi else f"{fmt(lo)}\u2013{fmt(hi)}"


def rank_sentence(scores, unit: str = "mean-per-class accuracy") -> str | None:
    """How named scores (fractions) rank, ties called ties: scores equal as printed (percent, 2 decimals) tie,
    and a tie for the top is never reported as one of them "scoring highest". None for fewer than two scores."""
    scored = [(n, s) for n, s in scores if not is_missing(s)]
    if len(scored) < 2:
        return None
    groups: dict[str, list[str]] = {}
    for name, s in sorted(scored, key=lambda t: -t[1]):   # rounding keeps the order: equal prints are adjacent
        groups.setdefault(_pct(s), []).append(name)
    order = [n for n, _ in scored]
    groups = {k: sorted(v, key=order.index) for k, v in groups.items()}   # a tie's names in the given order
    keys = list(groups)
    if len(keys) == 1:
        return (f"{_and(groups[keys[0]])} tie: {'both' if len(scored) == 2 else 'all'} score {keys[0]} "
                f"{unit}.")
    spread = f"{float(keys[0][:-1]) - float(keys[-1][:-1]):.2f} percentage points"
    top, bottom = groups[keys[0]], groups[keys[-1]]
    if len(keys) == 2 and len(top) == 1 and len(bottom) == 1:
        return f"{top[0]} scores higher ({keys[0]}) than {bottom[0]} ({keys[-1]}), by {spread} of {unit}."

    def part(key, word, verb):
        names = groups[key]
        return (f"{names[0]}{verb} {word} ({key})" if len(names) == 1
                else f"{_and(names)} tie for {word} ({key} each)")
    middle = [f"{_and(groups[k])} {k}" for k in keys[1:-1]]
    return _and([part(keys[0], "highest", " scores"), *middle,
                 part(keys[-1], "lowest", "" if len(top) == 1 else " scores")]) + \
        f": a spread of {spread} of {unit}."


_LITE = re.compile(r"(?:tf_)?efficientnet_lite(\d)$")


def backbone_name(model: str) -> str:
    """The short name the report gives a backbone: 'tf_efficientnet_lite0' -> 'Lite0'; others as they are."""
    m = _LITE.match(model)
    return f"Lite{m.group(1)}" if m else model


def backbone_label(b) -> str:
    """The backbone table's name for a row, with its input size: 'Lite0 (224 px)'."""
    size = getattr(b, "input_size", None)
    return backbone_name(b.model) + (f" ({size} px)" if size else "")


def _interval_text(b: BackboneScore, ci: MeanInterval) -> str:
    return f"{backbone_name(b.model)} {_pct(b.mean_per_class_accuracy)} ({_pct(ci.low)}\u2013{_pct(ci.high)})"


def backbone_ranking(rows: list[BackboneScore]) -> str | None:
    """How comparable backbones rank on mean-per-class accuracy, ties called ties: a backbone whose 95% interval
    overlaps the top scorer's ties with it. Rows without per-breed counts fall back to rank_sentence (a tie is
    then an equal score as printed). None for fewer than two rows."""
    if len(rows) < 2:
        return None
    cis = [backbone_interval(b) for b in rows]
    if any(ci is None for ci in cis):
        return rank_sentence([(backbone_name(b.model), b.mean_per_class_accuracy) for b in rows])
    order = sorted(zip(rows, cis), key=lambda t: -t[0].mean_per_class_accuracy)
    top, top_ci = order[0]
    tied = [(b, ci) for b, ci in order[1:] if ci.high >= top_ci.low]
    below = [(b, ci) for b, ci in order[1:] if ci.high < top_ci.low]
    if not below:
        scores = _and([_interval_text(b, ci) for b, ci in order])
        return (f"{_and([backbone_name(b.model) for b, _ in order])} tie within the uncertainty: their "
                f"mean-per-class accuracies with their 95% intervals, {scores}, overlap: the differences are within "
                "this test set's uncertainty.")
    lower = _and([_interval_text(b, ci) for b, ci in below])
    if not tied:
        return (f"{backbone_name(top.model)} scores highest, {_pct(top.mean_per_class_accuracy)} mean-per-class "
                f"accuracy (95% interval {_pct(top_ci.low)}\u2013{_pct(top_ci.high)}); "
                f"{'the interval' if len(below) == 1 else 'each interval'} of {lower} lies below it.")
    return (f"{_and([backbone_name(b.model) for b, _ in [order[0], *tied]])} tie for highest within the "
            f"uncertainty ({_and([_interval_text(b, ci) for b, ci in [order[0], *tied]])}: overlapping 95% "
            f"intervals); {'the interval' if len(below) == 1 else 'each interval'} of {lower} lies below "
            f"{backbone_name(top.model)}'s.")


def comparable_backbones(d: P2Result) -> list[BackboneScore]:
    """The scored rows of the backbone table that are scored on this run's images: those run here, and the
    recorded ones when they were recorded on the same images."""
    same = d.recorded_backbones is not None and d.recorded_backbones.comparable
    return [b for b in d.backbones if b.available and (not b.recorded or same)]


def recorded_sentence(d: P2Result) -> str | None:
    """Where the rows marked recorded come from, and whether they are comparable with this run's rows."""
    rec = [b for b in d.backbones if b.available and b.recorded]
    src = d.recorded_backbones
    if not rec or src is None:
        return None
    names, one = _and([backbone_name(b.model) for b in rec]), len(rec) == 1
    if src.comparable:
        return (f"The {names} {'row was' if one else 'rows were'} computed once by the same procedure on the "
                f"same {src.this_run.n_test:,} test and {src.this_run.n_train:,} trainval images, with the same "
                f"settings (marked recorded in the table).")
    return (f"The recorded {names} {'row was' if one else 'rows were'} not computed on this run's images with "
            f"its settings ({'; '.join(src.differences)}), so {'it is' if one else 'they are'} listed for reference "
            f"only and not ranked against {backbone_name(d.model)}.")


def feature_size_sentence(d: P2Result) -> str:
    """What the feature dimension (read from the result) means next to the assignment's 2,000-6,000."""
    dim, (lo, hi) = d.feature_dim, ASSIGNMENT_FEATURE_RANGE
    k = d.n_classes_test or d.n_classes
    where = "below" if dim < lo else ("above" if dim > hi else "within")
    text = (f"The features are {dim:,}-dimensional, the width of {d.model}'s last feature layer (fixed by the "
            f"architecture), {where} the assignment's \u201caround 2,000\u20136,000\u201d")
    if where == "below":
        text += (", a range that fits the penultimate layers of larger networks (2,048 for ResNet-50, 4,096 for "
                 "VGG-16's fully connected layers). For the linear classifier it means ")
    else:
        text += ". For the linear classifier it means "
    text += (f"{k} \u00d7 ({dim:,} + 1) = {k * (dim + 1):,} weights learned from {d.n_train:,} training images "
             f"(about {d.n_train / max(k, 1):.0f} per breed)")
    if where == "below":
        text += ("; fewer dimensions give it fewer weights to fit from so few images, at the price of a smaller "
                 "description of each image")
    scored = [b for b in d.backbones if b.available]
    dims = sorted({b.feature_dim for b in scored})
    if len(scored) > 1 and dims == [dim]:
        sizes = sorted({b.input_size for b in scored if b.input_size})
        lite = all(_LITE.match(b.model) for b in scored)
        text += f". Every backbone of the backbone table has {dim:,}-dimensional features"
        if lite:
            text += (" (EfficientNet-Lite keeps its last layer's width as it scales up); they differ in depth, in "
                     "the width of their inner layers" + (f" and in input size ({_span(sizes)} pixels)"
                                                          if len(sizes) > 1 else ""))
        text += ", so the effect of a wider feature layer is not measured here"
    elif len(dims) > 1:
        text += (". The backbones of the backbone table have " + _and([f"{x:,}" for x in dims]) +
                 "-dimensional features")
    return text + "."


def data_sentence(d: P2Result, brief: bool = False) -> str:
    """Which images the test numbers are about, in plain words, and what that means for them. brief: without the
    counts of the partial copy, which the report's "About the data" gives once (the report's P2 section)."""
    te, tv, cov = d.missing_images.test, d.missing_images.trainval, d.coverage
    n_test = {name: b.n_test for name, b in d.per_breed.items() if b.n_test}
    partial = bool(te.missing or tv.missing)
    if brief:
        text = ("The test set is the reduced one described under About the data" if partial else
                f"All {te.listed:,} images of the data set's official test split are used")
    elif partial:
        text = (f"The copy of the data set used is partial: it holds {te.present:,} of the {te.listed:,} images of "
                f"the official test split and {tv.present:,} of the {tv.listed:,} trainval images")
    else:
        text = f"All {te.listed:,} test and {tv.listed:,} trainval images of the data set's official splits are used"
    if cov.test_used != te.present or cov.train_used != tv.present:
        limits = []
        if cov.max_breeds:
            limits.append(f"the first {cov.max_breeds} breeds")
        if cov.limit_per_class:
            limits.append(f"at most {cov.limit_per_class} images per breed")
        text += (f"; this run uses {cov.test_used:,} test and {cov.train_used:,} trainval images of it"
                 + (f" ({' and '.join(limits)})" if limits else ""))
    hit = [name for name, m in te.per_breed.items() if m and name in n_test]
    rest = [name for name in n_test if name not in hit]
    if hit and rest:
        text += (f". {_breeds(len(hit))} missing test images and {'keeps' if len(hit) == 1 else 'keep'} "
                 f"{_span([n_test[b] for b in hit])}{' each' if len(hit) > 1 else ''}, the other {len(rest)} "
                 f"{'has' if len(rest) == 1 else 'have'} {_span([n_test[b] for b in rest])}: the mean-per-class "
                 "accuracy weighs each reduced breed, measured on few images, as much as the others, which widens "
                 "its interval, and no score here is comparable image for image with published results on the "
                 "full test split")
    elif hit:
        text += (f". Every breed is missing test images and keeps {_span(list(n_test.values()))}: no score here "
                 "is comparable image for image with published results on the full test split")
    elif n_test:
        text += f"; each breed has {_span(list(n_test.values()))} test images"
    return text + "."


def discussion_parts(d: P2Result) -> dict[str, str | None]:
    """The P2 text, sentence by sentence (key -> sentence or None): the report places each one, the script's
    `discussion` joins them. Every number is read from the result."""
    ci = mean_per_class_interval(d)
    breeds = breed_counts(d)
    parts: dict[str, str | None] = {}
    flip = ", flip-averaged" if d.flip_averaged else ""
    acc_k = sum(b.correct for b in breeds)
    acc_n = sum(b.n for b in breeds)
    acc_lo, acc_hi = wilson_interval(acc_k, acc_n)
    parts["result"] = (
        f"{d.classifier} at C = {d.C:g} (chosen by {d.cv.folds}-fold cross-validation on the {d.n_train:,} "
        f"trainval images only) on {d.model}'s {d.feature_dim:,}-dimensional penultimate features (L2-normalised"
        f"{flip}) gives a test mean-per-class accuracy of {_pct(d.mean_per_class_accuracy)}"
        + (f" (95% interval {_pct(ci.low)}\u2013{_pct(ci.high)}, \u00b1{100 * ci.half:.2f} points)" if ci else "")
        + f" and an overall accuracy of {_pct(d.accuracy)}"
        + (f" ({acc_k:,} of {acc_n:,} test images; Wilson 95% interval {_pct(acc_lo)}\u2013{_pct(acc_hi)})"
           if acc_n else "")
        + f" over {d.n_classes_test} breeds.")
    parts["interval"] = (
        f"The mean-per-class interval is a normal approximation over the test images: each breed's accuracy is a "
        f"binomial proportion on its own test images, and the variance of the mean of the {ci.n_breeds} breeds' "
        "accuracies is the sum of theirs divided by the number of breeds squared (each taken at the "
        "Agresti\u2013Coull proportion, so that breeds with every image right still count); it covers the choice "
        "of test images only, not that of the training images or of C." if ci else None)
    parts["compare"] = None
    ranked = rank_sentence([(c.classifier, c.mean_per_class_accuracy) for c in d.classifiers])
    if ranked:
        parts["compare"] = f"On the same features, {ranked}"
        if ci:
            parts["compare"] += (f" For scale, a single score's 95% interval is \u00b1{100 * ci.half:.2f} "
                                 "points.")
    parts["features"] = feature_size_sentence(d)
    n_train = [b.n_train for b in d.per_breed.values() if b.n_train]
    parts["weighting"] = None
    if d.cv.class_weight == "balanced" and n_train:
        parts["weighting"] = (
            f"Classes are weighted inversely to their training counts (class_weight='balanced') because the metric "
            f"weighs every breed equally while the breeds have {_span(n_train)} training images each; C is chosen "
            f"by cross-validation, scoring {d.cv.scoring}.")
    errors = acc_n - acc_k
    pairs = d.most_confused_pairs[:4]
    parts["confusions"] = None
    if pairs and errors:
        in_pairs = sum(p.errors for p in pairs)
        share = f"all {errors:,}" if in_pairs == errors else f"{in_pairs:,} of the {errors:,}"
        parts["confusions"] = (
            "The most frequent confusions (errors counted both ways) are "
            + ", ".join(f"{p.a}/{p.b} ({p.errors})" for p in pairs)
            + f": {'this pair accounts' if len(pairs) == 1 else f'these {len(pairs)} pairs account'} for {share} "
            "test errors.")
    parts["weakest"] = parts["breeds"] = None
    if breeds:
        top = max(b.accuracy for b in breeds)
        worst = sorted((b for b in breeds if b.accuracy < top), key=lambda b: (b.accuracy, b.name))[:3]
        widths = [100 * (b.high - b.low) for b in breeds]
        perfect = [b.name for b in breeds if b.correct == b.n]
        parts["weakest"] = ("Weakest breeds: " + "; ".join(
            f"{b.name} {_pct(b.accuracy)} ({b.correct} of {b.n}, Wilson 95% interval {_pct(b.low)}\u2013"
            f"{_pct(b.high)})" for b in worst) + ".") if worst else None
        parts["breeds"] = (
            f"With {_span([b.n for b in breeds])} test images per breed the per-breed intervals are "
            f"{_span(widths, lambda w: f'{w:.2f}')} points wide"
            + (f"; {len(perfect)} of the {len(breeds)} breeds {'has' if len(perfect) == 1 else 'have'} every "
               "test image right" if perfect else "")
            + ".")
    scored = comparable_backbones(d)
    ranked = backbone_ranking(scored)
    parts["backbones"] = (f"Across backbones ({scored[0].classifier} on each one's features), {ranked}"
                          if ranked else None)
    parts["recorded"] = recorded_sentence(d)
    parts["data"] = data_sentence(d)
    return parts


def _weights_text(weights: str) -> str:
    """The pretrained weights as the report names them: the data set they were trained on ('ImageNet-1k'), not
    the file or package they came from."""
    m = re.match(r"ImageNet[\w-]*", weights or "")
    return f"{m.group(0)} classification weights" if m else (weights or DASH)


def _breed_groups(breeds: list[BreedCount]) -> list[tuple[str, list[BreedCount]]]:
    """The per-breed table's row groups: every breed when there are at most 10; else the weakest 5 and the
    strongest 5, or every breed tied for the best accuracy when 5 or more tie (no arbitrary pick among ties)."""
    ranked = sorted(breeds, key=lambda b: (b.accuracy, b.name))
    if len(breeds) <= 10:
        return [(f"all {len(breeds)} breeds, weakest first", ranked)] if breeds else []
    top = [b for b in breeds if b.correct * ranked[-1].n == ranked[-1].correct * b.n]
    if len(top) >= 5:
        what = ("with every test image right" if ranked[-1].correct == ranked[-1].n else
                f"tied for the best accuracy, {_pct(ranked[-1].accuracy)}")
        strongest = (f"the {len(top)} breeds {what}", sorted(top, key=lambda b: (-b.n, b.name)))
    else:
        strongest = (f"strongest 5 of {len(breeds)} breeds", sorted(breeds, key=lambda b: (-b.accuracy, b.name))[:5])
    return [(f"weakest 5 of {len(breeds)} breeds", ranked[:5]), strongest]


@dataclass(frozen=True)
class BackboneRow:
    """One row of the report's backbone table (scores as fractions; None where the backbone was not scored)."""
    label: str
    input_size: int | None
    feature_dim: int | None
    mean_per_class_accuracy: float | None
    low: float | None
    high: float | None
    accuracy: float | None
    note: str


def backbone_rows(d: P2Result) -> list[BackboneRow]:
    """The backbone table: every backbone with its input size, feature dimension, scores and 95% interval of the
    mean-per-class accuracy, the main model marked, recorded rows marked (and those recorded on other images
    marked as not comparable)."""
    comparable = d.recorded_backbones is not None and d.recorded_backbones.comparable
    rows = []
    for b in d.backbones:
        if not b.available:
            rows.append(BackboneRow(backbone_name(b.model), None, None, None, None, None, None, "not scored"))
            continue
        ci = backbone_interval(b)
        note = ("main model" if b.model == d.model and not b.recorded else
                "recorded" if comparable or not b.recorded else "recorded on other images: not compared")
        rows.append(BackboneRow(backbone_label(b), b.input_size, b.feature_dim, b.mean_per_class_accuracy,
                                ci.low if ci else None, ci.high if ci else None, b.accuracy, note))
    return rows


def report_facts(d: P2Result) -> dict:
    """What the report's P2 section says beyond the raw fields: its sentences and the ranked tables."""
    text = discussion_parts(d)
    breeds = breed_counts(d)
    ranked = sorted(breeds, key=lambda b: (b.accuracy, b.name))
    text = {**text, "data": data_sentence(d, brief=True)}
    return {"text": text, "sentence": text["result"], "compare": text["compare"], "classifiers": d.classifiers,
            "methods": CLASSIFIER_METHODS, "interval": mean_per_class_interval(d),
            "library": (d.model_info.library or "").split(" ")[0],
            "weights": _weights_text(d.model_info.weights),
            "weakest": ranked[:5], "strongest": sorted(breeds, key=lambda b: (-b.accuracy, b.name))[:5],
            "breed_groups": _breed_groups(breeds),
            "n_breeds": len(d.per_breed),
            "pairs": d.most_confused_pairs[:6], "backbones": d.backbones, "backbone_rows": backbone_rows(d),
            "from_cache": d.extraction.trainval.from_cache and d.extraction.test.from_cache}


def headline(d: P2Result) -> str:
    """The report's cover-page line for P2."""
    return (f"{d.classifier} on {d.model} features: mean-per-class accuracy {_pct(d.mean_per_class_accuracy)} "
            f"on {d.n_test:,} test images of {d.n_classes_test} breeds")
