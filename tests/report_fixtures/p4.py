"""P4's fixture results for the report tests."""
from pathlib import Path

from .common import _png, _write


def _robust(kept_flags, names=("none", "hflip", "crop80", "rotate30", "grayscale")):
    return [{"transform": n, "target_prob": 0.9 if k else 0.001, "top1": 1, "top1_name": "goldfish" if k else "espresso",
             "top1_prob": 0.9 if k else 0.8, "target_kept": k} for n, k in zip(names, kept_flags)]


def _p4_image(name, eps, kept):
    return {"image": f"/x/{name}.png", "adv_png": f"{name}_adv.png", "target": {"class_id": 1, "name": "goldfish"},
            "eps": eps, "linf": int(eps), "psnr_db": 49.1, "clean_top1": {"class_id": 967, "name": "espresso"},
            "clean_prob": 0.95, "clean_correct": True, "clean_target_prob": 1e-5,
            "adv_top1": {"class_id": 1, "name": "goldfish"}, "adv_prob": 0.917, "adv_target_prob": 0.917,
            "success": True, "steps": 17, "seconds": 13.6, "frac_pixels_changed": 0.985,
            "frac_values_changed": 0.81, "robustness": _robust(kept)}


def write(root: Path) -> None:
    """P4's results under root, as its script writes them."""
    p4 = root / "p4"
    head = {"command": "problems/p4_adversarial.py", "model": {"name": "tf_efficientnet_lite0", "library": "timm"},
            "method": {"update": "ifgsm", "step_px": 0.25, "momentum": 0.5, "confidence": 0.9, "max_steps": 200,
                       "gradient_at": "8-bit"}, "noise_display": "grey = unchanged", "device": "cpu"}
    _write(p4 / "results.json", dict(head, eps=1.0, images=[_p4_image("coffee", 1.0, [True] + [False] * 4),
                                                             _p4_image("rocket", 1.0, [True, False, True, False, False])],
                                     summary={"total_steps": 34, "total_seconds": 27.2},
                                     figures={"attack": _png(p4 / "attack.png", 30, 40),
                                              "robustness": _png(p4 / "robustness.png", 50, 20)},
                                     discussion={"hflip": "Mirroring moves the noise."}))
    eot_img = _p4_image("coffee", 4.0, [True] * 5)
    eot_img["eps_tried"] = [{"eps": 2, "success": True, "all_transforms_kept": False, "steps": 100},
                            {"eps": 4, "success": True, "all_transforms_kept": True, "steps": 25}]
    _write(p4 / "results_eot.json", dict(head, eot={"samples_per_step": 4, "distribution": "flip, crop",
                                                    "eps_grid": [2, 4, 8, 16]}, images=[eot_img],
                                         figures={"attack": _png(p4 / "attack_eot.png"),
                                                  "robustness": _png(p4 / "robustness_eot.png")},
                                         discussion="EOT discussion."))
