"""P2's fixture results for the report tests."""
from pathlib import Path

from .common import _png, _write


def write(root: Path) -> None:
    """P2's results under root, as its script writes them."""
    p2 = root / "p2"
    _write(p2 / "results.json", {
        "command": "problems/p2_transfer.py", "model": "tf_efficientnet_lite0",
        "model_info": {"library": "timm", "weights": "ImageNet-1k", "preprocessing": {"text": "resize"}},
        "feature_dim": 1280, "flip_averaged": True, "classifier": "logreg", "C": 10.0,
        "mean_per_class_accuracy": 0.8912, "accuracy": 0.8899, "n_train": 2176, "n_test": 2011,
        "n_classes_test": 37, "coverage": {"text": "2011 test images of 3669 listed (54.8%), 37 of 37 breeds"},
        "missing_images": {"test": {"listed": 3669, "present": 2011}},
        "extraction": {"trainval": {"from_cache": True}, "test": {"from_cache": True}},
        "cv": {"folds": 5, "scoring": "balanced accuracy", "class_weight": "balanced"},
        "classifiers": [{"classifier": "logreg", "C": 10.0, "mean_per_class_accuracy": 0.8912, "accuracy": 0.8899,
                         "seconds": 9.3},
                        {"classifier": "svm", "C": 0.3, "mean_per_class_accuracy": 0.8801, "accuracy": 0.88,
                         "seconds": 0.2}],
        "per_breed": {"pug": {"accuracy": 0.95, "n_test": 20, "n_train": 20},
                      "boxer": {"accuracy": 0.6, "n_test": 20, "n_train": 20}},
        "most_confused_pairs": [{"a": "boxer", "b": "pug", "errors": 5, "a_as_b": 3, "b_as_a": 2}],
        "backbones": [{"model": "tf_efficientnet_lite0", "feature_dim": 1280, "mean_per_class_accuracy": 0.8912,
                       "available": True},
                      {"model": "tf_efficientnet_lite2", "available": False, "reason": "package not installed"}],
        "figures": {"confusion_matrix": _png(p2 / "cm.png", 50, 50), "cv_curve": _png(p2 / "cv.png")},
        "discussion": "P2 discussion text."})
