"""P2's fixture results for the report tests: a synthetic P2Result, written as the script writes it."""
from pathlib import Path

from problems.common.pretrained import Preprocessing
from problems.p2.result import (BackboneData, BackboneScore, BreedScore, ClassifierScore, ConfusedPair, Coverage,
                                CrossValidation, CVPoint, Extraction, Extractions, ImageDefects, MissingImages,
                                ExtractorInfo, P2Result, ReadLog, RecordedSource, SplitCounts)

from .common import _png

INPUT_SIZE = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite1": 240, "tf_efficientnet_lite2": 260}


def backbone(model: str, counts: dict, recorded: bool = False, C: float = 10.0) -> BackboneScore:
    """A scored backbone row whose scores follow from its per-breed counts {breed: [right, test images]}."""
    right, n = sum(c for c, _ in counts.values()), sum(m for _, m in counts.values())
    mpca = sum(c / m for c, m in counts.values()) / len(counts)
    return BackboneScore(model, 1280, "logreg", C, mpca, right / n, n, True, INPUT_SIZE.get(model), dict(counts),
                         recorded)


def data(**changes) -> BackboneData:
    """The images of the fixture's run (two breeds), as a backbone table records them."""
    fields = dict(data_root="DATA/pets", n_train=40, n_test=40, n_classes=2, limit_per_class=None, max_breeds=2,
                  flip_averaged=True, folds=5, seed=0, trainval_sha256="a" * 64, test_sha256="b" * 64)
    return BackboneData(**{**fields, **changes})


def source(**changes) -> RecordedSource:
    """Recorded rows' source: recorded on the fixture run's images unless `changes` say otherwise."""
    return RecordedSource("recorded/p2_backbones.json", "problems/p2_transfer.py --write-backbones "
                          "recorded/p2_backbones.json", data(**changes), data())


def result(figures: dict | None = None) -> P2Result:
    """Two breeds (as with --max-breeds 2), two classifiers, Lite0 run here and Lite1/Lite2 recorded on the same
    images (all three within each other's intervals); `figures` as the script names them. The numbers agree with
    each other: the accuracies follow from the confusion matrix and the per-breed counts."""
    mpca = (17 / 17 + 18 / 23) / 2
    log = ReadLog(converted={"PNG-in-.jpg RGBA": 1}, converted_files=["Abyssinian_5.jpg: PNG-in-.jpg RGBA"],
                  n_converted=1, skipped=[], n_skipped=0)
    r = P2Result(
        problem="p2", command="problems/p2_transfer.py", seed=0, model="tf_efficientnet_lite0",
        model_info=ExtractorInfo(name="tf_efficientnet_lite0", library="timm", weights="ImageNet-1k", feature_dim=1280,
                             preprocessing=Preprocessing(256, "bicubic", 224, "pixels / 255 -> [0, 1]", [0.5] * 3,
                                                         [0.5] * 3, "resize")),
        feature_dim=1280, feature_min=0.0, flip_averaged=True, classifier="logreg", C=10.0,
        mean_per_class_accuracy=mpca, accuracy=0.875, n_train=40, n_test=40, n_classes_test=2, n_classes=2,
        coverage=Coverage("40 test images of 3669 listed (1.1%), 2 of 37 breeds", 3669, 2011, 40, 3680, 40,
                          None, 2),
        missing_images=MissingImages(SplitCounts(3680, 2176, 1504, {"pug": 66}),
                                     SplitCounts(3669, 2011, 1658, {"pug": 85})),
        unlisted_files=29, image_defects=ImageDefects(log, ReadLog({}, [], 0, [], 0)),
        extraction=Extractions(Extraction(40, 1.5, 26.7, True, "lite0_trainval.npz", 2),
                               Extraction(40, 1.5, 26.7, True, "lite0_test.npz", 2)),
        model_load_seconds=1.5,
        cv=CrossValidation(5, "balanced accuracy", "balanced",
                           {"logreg": [CVPoint(1.0, 0.85, 0.01), CVPoint(10.0, 0.89, 0.01)],
                            "svm": [CVPoint(0.3, 0.88, 0.02)]}),
        classifiers=[ClassifierScore("logreg", 10.0, "cv", mpca, 0.875, 9.3),
                     ClassifierScore("svm", 0.3, "cv", 0.8801, 0.88, 0.2)],
        per_breed={"pug": BreedScore(1.0, 17, 17), "boxer": BreedScore(18 / 23, 23, 23)},
        most_confused_pairs=[ConfusedPair("pug", "boxer", 5, 0, 5, 17, 23)],
        confusion_matrix=[[17, 0], [5, 18]],
        backbones=[backbone("tf_efficientnet_lite0", {"pug": [17, 17], "boxer": [18, 23]}),
                   backbone("tf_efficientnet_lite1", {"pug": [16, 17], "boxer": [19, 23]}, recorded=True),
                   backbone("tf_efficientnet_lite2", {"pug": [17, 17], "boxer": [20, 23]}, recorded=True)],
        figures=figures or {"confusion_matrix": "confusion_matrix.png", "cv_curve": "cv_curve.png"},
        discussion="", data_root="DATA/pets", recorded_backbones=source())
    r.discussion = r.discussion_text()
    return r


def write(root: Path) -> None:
    """P2's results under root, as its script writes them."""
    p2 = root / "p2"
    result({"confusion_matrix": _png(p2 / "cm.png", 50, 50), "cv_curve": _png(p2 / "cv.png")}).write(
        p2 / "results.json")
