"""The homework report: builds from a small fixture results set (JSONs + tiny PNGs written to tmp_path),
fills every placeholder, has every section in the PDF, and shows "not yet produced" for what is missing
or failed. The driver records commands and failures without stopping."""
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
import build_report  # noqa: E402
import make_report  # noqa: E402
from jobs import Job  # noqa: E402

SECTION_TITLES = ["P1. A pretrained CNN", "P2. Transfer learning", "P3. Training CNNs on CIFAR-10",
                  "P4. Adversarial examples", "P5. A hard-threshold RNN", "Appendix A.", "Appendix B. Code"]


def _png(path: Path, w=48, h=32):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path.name


def _write(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


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


def make_fixture(root: Path) -> Path:
    """A complete, small results set in the scripts' formats (figures relative to each JSON's folder)."""
    p1 = root / "p1"
    maps = [{"depth": d, "layer": l, "channel": c, "shape": s, "mean_activation": 1.0}
            for d, l, s in (("early", "bn1", [112, 112]), ("middle", "blocks.3.2.bn1", [14, 14]), ("late", "bn2", [7, 7]))
            for c in (3, 5)]
    _write(p1 / "results.json", {
        "command": "problems/p1_pretrained.py", "model": {"name": "tf_efficientnet_lite0", "library": "timm",
                                                          "weights": "ImageNet-1k"},
        "preprocessing": {"text": "resize 256, crop 224"}, "image": "/d/peppers.png", "image_size": [512, 384],
        "top": [{"rank": 1, "class_id": 945, "name": "bell pepper", "prob": 0.6756},
                {"rank": 2, "class_id": 943, "name": "cucumber", "prob": 0.0536},
                {"rank": 3, "class_id": 582, "name": "grocery store", "prob": 0.0073}],
        "feature_maps": maps, "feature_map_rule": "strongest mean activation",
        "layers": {"early": "bn1", "middle": "blocks.3.2.bn1", "late": "bn2"},
        "figures": {d: _png(p1 / f"fm_{d}.png", 100, 20) for d in ("early", "middle", "late")},
        "discussion": {"early": "Edges.", "middle": "Textures.", "late": "Abstract.", "summary": "Deeper is coarser."}})
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
    w = {"U": [[1.0, 1.0]] * 3, "W": [[0.0, 1.0, 0.0]] * 3, "b_h": [-0.5, -1.5, -2.5], "v": [1.0, -1.0, 1.0],
         "b_y": -0.5, "h_0": [0.0, 0.0, 0.0]}
    lw = {k: (np.array(v) * 5.123).tolist() for k, v in w.items()}
    _write(root / "p5" / "results.json", {
        "command": "problems/p5_rnn_adder.py --learn", "weights": w,
        "example": {"a": "100111", "b": "110010", "sum": "1011001", "correct": True, "input_1": [1, 1, 1, 0, 0, 1, 0],
                    "input_2": [0, 1, 0, 0, 1, 1, 0], "output": [1, 0, 0, 1, 1, 0, 1],
                    "steps": [{"t": t, "x_t": [1, 0], "h_t": [1, 0, 0], "y_t": 1} for t in range(7)]},
        "additions": [], "verified_bits": 10, "pairs_checked": 1048576, "errors": 0,
        "random_checks": [{"bits": 64, "pairs_checked": 200, "errors": 0}],
        "proof_all_lengths": True, "proof_states": {"[0, 0, 0]": 0, "[1, 1, 0]": 1}, "min_margin": 0.5,
        "figures": {}, "seeds": 2, "perfect_seeds": 1, "success_rate": 0.5, "learn_method": "sigmoid",
        "learn_runs": [{"seed": 0, "steps_run": 2000, "final_loss": 0.22, "errors_exhaustive": 598576,
                        "proof_all_lengths": False, "perfect": False, "proof_reason": "state (0, 0, 1) wrong"},
                       {"seed": 1, "steps_run": 450, "final_loss": 0.007, "errors_exhaustive": 0,
                        "proof_all_lengths": True, "perfect": True}],
        "learned": {"seed": 1, "weights": lw, "min_margin": 0.61, "states": {"[0, 0, 0]": 0, "[0, 0, 1]": 1}},
        "discussion": "P5 discussion text."})
    return root


def pdf_text(pdf: Path) -> str | None:
    """The PDF's text with pypdf or poppler's pdftotext, whichever is installed (None: neither)."""
    try:
        from pypdf import PdfReader
        return "\n".join(page.extract_text() or "" for page in PdfReader(str(pdf)).pages)
    except ImportError:
        pass
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                              check=True).stdout
    return None


def leaks(html_text: str) -> list:
    """Unfilled placeholders or Python/NumPy values that slipped into the visible text."""
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|pre)[^>]*>.*?</\1>", " ", html_text, flags=re.S))
    return re.findall(r"\{\{|\{%|\bNone\b|\bnan\b|\bNaN\b|\bUndefined\b|<built-in|object at 0x", visible)


@pytest.fixture(scope="module")
def full_build(tmp_path_factory):
    """The fixture results and the full report (code appendix included), built once for this module."""
    root = make_fixture(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("report")
    info = build_report.build(root, out)
    return root, out, info


def test_report_builds_every_section_and_placeholder(full_build):
    root, out, info = full_build
    text = html.unescape(info["html"].read_text())
    assert info["pdf"].read_bytes()[:5] == b"%PDF-"
    assert info["pages"] > 10                         # five problems, each from a new page, plus the code
    assert leaks(text) == []
    assert "Not yet produced" not in text and "could not be read" not in text
    for title in SECTION_TITLES:
        assert title in text
    # numbers come from the files, sentences are generated from them
    assert "0.676" in text and "bell pepper" in text
    assert "ifgsm, momentum 0.5" in text
    assert "89.1%" in text                            # P2 mean-per-class accuracy 0.8912
    assert "93.12%" in text and "whitened first layer" in text and "no EMA" in text
    assert "4 epochs on 5000 images" in text and "Dirac init matters most." in text
    assert "Figure not found" not in text                 # accuracy vs wall time included
    assert "lower than the plain network's 1.200" in text
    assert "hflip</strong> broke the attack on all 2 images" in text
    assert "crop80</strong> broke the attack on 1 of 2 images" in text
    assert "survives all transforms for 1 of 1 images, at eps 4/255" in text
    assert "1,048,576" in text and "1 of 2 seeds" in text
    assert "def " in text and "scratchnet/kernels/conv.py" in text       # the code appendix


def test_pdf_has_sections_and_page_numbers(full_build):
    _, _, info = full_build
    text = pdf_text(info["pdf"])
    if text is None:
        pytest.skip("neither pypdf nor pdftotext is installed; the HTML test covers the content")
    flat = " ".join(text.split())
    for title in SECTION_TITLES:
        assert title in flat, title
    assert f"page 1 of {info['pages']}" in flat
    assert "Not yet produced" not in flat


def test_missing_problem_shows_box_with_command(tmp_path):
    root = make_fixture(tmp_path / "results")
    shutil.rmtree(root / "p4")
    (root / "p5" / "results.json").unlink()
    info = build_report.build(root, tmp_path / "out", no_code=True)
    text = info["html"].read_text()
    assert info["pdf"].is_file() and leaks(text) == []
    boxes = re.findall(r'<div class="missing">(.*?)</div>', text, flags=re.S)
    p4 = [b for b in boxes if "problems/p4_adversarial.py" in b]
    assert len(p4) == 2 and all("Not yet produced" in b for b in p4)       # the plain attack and EOT
    assert any("Not yet produced" in b and "problems/p5_rnn_adder.py" in b for b in boxes)
    assert "bell pepper" in text                                          # the others are still there


def test_empty_results_folder_gives_a_report_of_boxes(tmp_path):
    (tmp_path / "results").mkdir()
    info = build_report.build(tmp_path / "results", tmp_path / "out", no_code=True)
    text = info["html"].read_text()
    assert info["pdf"].is_file() and leaks(text) == []
    assert text.count("Not yet produced") >= 8


def test_failed_run_shows_its_error_line_not_stale_results(tmp_path):
    root = make_fixture(tmp_path / "results")
    (root / "report_runs.json").write_text(json.dumps({"runs": [
        {"name": "p1", "command": "python problems/p1_pretrained.py", "produces": ["p1"], "rc": 2,
         "error": "error: default image data/peppers.png not found", "skip": None, "seconds": 1.0}]}))
    text = html.unescape(build_report.build(root, tmp_path / "out", no_code=True, pdf=False)["html"].read_text())
    assert "error: default image data/peppers.png not found" in text
    assert "bell pepper" not in text.split('id="p2"')[0].split('id="p1"')[1]   # old P1 results not shown
    assert "failed (exit 2)" in text


def test_malformed_results_cost_only_their_section(tmp_path):
    root = make_fixture(tmp_path / "results")
    data = json.loads((root / "p4" / "results.json").read_text())
    del data["method"]
    (root / "p4" / "results.json").write_text(json.dumps(data))
    (root / "p2" / "results.json").write_text("{not json")
    text = build_report.build(root, tmp_path / "out", no_code=True, pdf=False)["html"].read_text()
    assert "could not be read" in text and "unreadable results file" in text
    assert "bell pepper" in text and "1,048,576" in text


def test_transform_verdicts_follow_the_table():
    rows = [{"robustness": _robust([True, False, True, True, False])},
            {"robustness": _robust([True, False, False, True, False])}]
    t = build_report.p4_table(rows)
    verdict = {s["transform"]: s["verdict"] for s in t["summary"]}
    assert verdict["hflip"].startswith("broke the attack on all 2")
    assert verdict["crop80"].startswith("broke the attack on 1 of 2")
    assert verdict["rotate30"].startswith("did not break the attack")
    assert t["overall"] == ("Hflip, grayscale broke the attack on every image; crop80 broke it on some images "
                            "only; the target survived rotate30 on every image.")


def test_bn_sentence_says_which_loss_is_lower():
    small = {"train_loss": [2.0, 1.0], "final_test_accuracy": 0.5}
    bn = {"train_loss": [1.5, 1.2], "final_test_accuracy": 0.6}
    s = build_report.p3_bn_sentence(small, bn)
    assert "1.200, higher than the plain network's 1.000" in s and "+10.0 percentage points" in s
    assert build_report.p3_bn_sentence(None, bn) is None


def test_markdown_subset():
    h = build_report.markdown_to_html("## Title\n\nSome **bold** and `code`.\n\n    x = 1\n\n| a | b |\n|---|---|\n"
                                      "| 1 | 2 |\n\n* one\n* two\n")
    assert "<h4>Title</h4>" in h and "<strong>bold</strong>" in h and "<code>code</code>" in h
    assert "<pre class='math'>x = 1</pre>" in h and "<td>2</td>" in h and "<li>two</li>" in h


def test_driver_records_failure_and_continues(tmp_path):
    bad = Job("p1", ["-c", "import sys; print('working'); print('error: no such image', file=sys.stderr); "
                           "sys.exit(2)"], ["p1"])
    rec = make_report.run_job(bad, tmp_path / "logs" / "p1.log")
    assert rec["rc"] == 2 and rec["error"] == "error: no such image"
    assert "working" in (tmp_path / "logs" / "p1.log").read_text()
    needy = Job("p3_compare", ["-c", "pass"], ["p3_compare"], needs=[tmp_path / "absent.json"])
    rec = make_report.run_job(needy, tmp_path / "logs" / "c.log")
    assert rec["rc"] is None and "absent.json" in rec["skip"]


def test_build_cli_bad_results_folder(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "report" / "build_report.py"), "--results",
                           str(tmp_path / "nope"), "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: results folder") and "Traceback" not in proc.stderr


def test_plan_follows_the_flags(tmp_path):
    from jobs import plan
    default = {j.name: j for j in plan(tmp_path / "res", repo=tmp_path)}      # an empty 'repository'
    assert default["p2"].skip is None                                          # extracts features if uncached
    assert all("--seed" not in j.argv for j in default.values())
    assert "--eval-only" in default["p3_small"].argv and "weights/p3_small.npz" in default["p3_small"].skip
    assert "--eot" in default["p4"].argv and "--learn" in default["p5"].argv
    retrain = {j.name: j for j in plan(tmp_path / "res", retrain=True, quick=True, data_dir="D", repo=tmp_path)}
    assert retrain["p3_both"].produces == ["p3_small", "p3_small_bn", "p3_compare"]
    assert retrain["p2"].skip is None and "--eot" not in retrain["p4"].argv
    assert retrain["p1"].argv[-2:] == ["--data-dir", "D"]
    seeded = {j.name: j for j in plan(tmp_path / "res", seed=7, repo=tmp_path)}
    assert all(j.argv[-2:] == ["--seed", "7"] for name, j in seeded.items() if name != "p3_compare")
