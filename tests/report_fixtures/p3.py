"""P3's fixture results for the report tests."""
import json
from pathlib import Path

from .common import _png, _write


def _p3(model, losses, accs, folder: Path, extra=None):
    figs = {"loss": _png(folder / "loss.png", 60, 40), "filters": _png(folder / "filters.png", 96, 24)}
    r = {"problem": "p3", "model": model, "backend": "numpy", "epochs": len(losses), "train_loss": losses,
         "train_accuracy": [0.3] * len(losses), "test_loss": [l + 0.1 for l in losses], "test_accuracy": accs,
         "final_test_accuracy": accs[-1], "final_test_error": 1 - accs[-1], "seconds": 120.0,
         "command": f"problems/p3_small_cnn.py --model {model}",
         "hyperparameters": {"epochs": len(losses), "batch_size": 128, "lr": 0.02, "momentum": 0.9,
                             "weight_decay": 0.0005, "label_smoothing": 0.0, "seed": 0},
         "optimizer": "SGD, Nesterov momentum 0.9", "schedule": "one-cycle", "augmentation": "random crop",
         "weight_averaging": "none", "test_time_augmentation": "none", "normalisation": "per-channel",
         "initialisation": "He normal", "architecture": ["conv 11x11, 3->64", "linear 128->10"],
         "parameters": 246026, "data_source": "JPEG copy (lossy)", "n_train": 50000, "n_test": 10000,
         "figures": figs, "discussion": f"The {model} network discussion."}
    r.update(extra or {})
    _write(folder / "results.json", r)


def write(root: Path) -> None:
    """P3's results under root, as its script writes them."""
    p3 = root / "p3"
    _p3("small", [2.0, 1.5, 1.2], [0.40, 0.50, 0.55], p3 / "small")
    _p3("small_bn", [1.6, 1.1, 0.9], [0.50, 0.60, 0.66], p3 / "small_bn")
    _p3("better", [1.2, 0.8], [0.80, 0.9312], p3 / "better",
        {"rationale": ["whitened first layer", "EMA of the weights"],
         "ablation": [{"variant": "no EMA", "test_accuracy": 0.92, "note": "one run"}], "parameters": 1971352,
         "ablation_budget": "4 epochs on 5000 images", "ablation_discussion": "Dirac init matters most."})
    better = json.loads((p3 / "better" / "results.json").read_text())
    better["figures"]["accuracy_vs_time"] = _png(p3 / "better" / "accuracy_vs_time.png")
    _write(p3 / "better" / "results.json", better)
    _write(p3 / "comparison.json", {"figures": {"bn_comparison": _png(p3 / "loss_bn_comparison.png")},
                                    "discussion": "Training loss per epoch."})
