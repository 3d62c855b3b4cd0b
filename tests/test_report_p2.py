"""P2's results contract: what the script writes reads back through P2Result unchanged, and a results file
whose fields do not match costs the report's P2 section (naming the field), not a wrong PDF."""
import html
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from pets_helpers import make_mini_pets

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
import build_report  # noqa: E402
from report_fixtures import p2 as p2_fixture  # noqa: E402

from problems.common.cli import UserError  # noqa: E402
from problems.common.result import ResultError  # noqa: E402
from problems.p2 import run as p2_run  # noqa: E402
from problems.p2.penultimate import FeatureSet  # noqa: E402
from problems.p2.pets import ImageReadLog  # noqa: E402
from problems.p2.result import P2Result  # noqa: E402

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def fake_features(model_name, splits, opts):
    """Stands in for the torch backbone: 8 non-negative features per image, clustered by breed; any model but
    'fake' is unavailable, as a backbone without its package is."""
    if model_name != "fake":
        raise UserError(f"model {model_name} needs a package that is not installed")
    rng = np.random.default_rng(0)
    centers = rng.uniform(0, 6, (8, 8))
    out = {}
    for name, sp in splits.items():
        x = np.abs(centers[sp.labels] + 0.3 * rng.normal(size=(len(sp), 8))).astype(np.float32)
        out[name] = FeatureSet(x, np.ones(len(sp), bool), list(sp.names), ImageReadLog().summary(), 0.5,
                               2.0 * len(sp), False, opts.cache_dir / f"fake_{name}.npz")
    info = {"name": "fake", "library": "none", "weights": "random", "feature_dim": 8,
            "preprocessing": {"resize_short_side": 8, "interpolation": "bilinear", "center_crop": 8,
                              "scale": "pixels / 255 -> [0, 1]", "mean": [0.5] * 3, "std": [0.5] * 3, "text": "t"}}
    return out, info, 0.01


def test_script_output_round_trips_through_the_result_type(tmp_path, monkeypatch):
    from problems.p2.cli import main
    make_mini_pets(tmp_path)
    monkeypatch.setattr(p2_run, "features_for", fake_features)
    out = tmp_path / "out"
    assert main(["--data-dir", str(tmp_path), "--model", "fake", "--backbones", "fake,lite9", "--folds", "2",
                 "--compare", "svm,scratchnet", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"]) == 0
    written = json.loads((out / "results.json").read_text())
    r = P2Result.read(out / "results.json")
    assert r.to_json() == written                       # every field typed, none dropped or added
    assert r.class_names == ["Abyssinian", "Bengal", "basset_hound"] and r.n_classes == 3
    assert [c.classifier for c in r.classifiers] == ["logreg", "svm", "scratchnet"]
    assert [b.available for b in r.backbones] == [True, False] and "lite9" in r.backbones[1].reason
    assert r.discussion == r.discussion_text() and "Backbones not available on this machine: lite9." in r.discussion
    for rel in r.figures.values():
        assert (out / rel).is_file()
    facts = p2_fixture.result()
    assert P2Result.from_json(json.loads(json.dumps(facts.to_json()))) == facts


def test_fixture_facts_and_headline():
    from problems.p2.result import headline, report_facts
    r = p2_fixture.result()
    f = report_facts(r)
    assert f["sentence"].startswith("With logreg on the 1,280-dimensional penultimate features")
    assert "89.1%" in f["sentence"] and "a spread of 1.1 percentage points" in f["compare"]
    assert [k for k, _ in f["weakest"]] == ["boxer", "pug"] and f["from_cache"] is True
    assert headline(r).startswith("logreg on tf_efficientnet_lite0 features: mean-per-class accuracy 89.1% over 40")


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.__setitem__("mean_class_accuracy", d.pop("mean_per_class_accuracy")),
     "unknown field(s) mean_class_accuracy"),
    (lambda d: d.pop("coverage"), "missing field 'coverage'"),
    (lambda d: d["classifiers"][0].__setitem__("c_source", d["classifiers"][0].pop("C_source")),
     "P2Result.classifiers[0]: unknown field(s) c_source"),
    (lambda d: d.__setitem__("n_test", "40"), "P2Result.n_test: expected int"),
])
def test_mismatched_field_makes_the_p2_section_unreadable_naming_it(tmp_path, edit, words):
    root = tmp_path / "results"
    p2_fixture.write(root)
    path = root / "p2" / "results.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError, match=re.escape(words)):
        P2Result.read(path)
    text = html.unescape(build_report.build(root, tmp_path / "out", no_code=True, pdf=False)["html"].read_text())
    section = re.search(r'<section class="problem" id="p2">.*?</section>', text, flags=re.S).group(0)
    assert "unreadable results file" in section and words in section and "Not yet produced" in section
    assert "89.1%" not in text                           # nothing of the unreadable result is shown


def test_well_formed_fixture_fills_the_p2_section(tmp_path):
    root = tmp_path / "results"
    p2_fixture.write(root)
    text = html.unescape(build_report.build(root, tmp_path / "out", no_code=True, pdf=False)["html"].read_text())
    section = re.search(r'<section class="problem" id="p2">.*?</section>', text, flags=re.S).group(0)
    assert "Not yet produced" not in section and "Figure not found" not in section
    assert "89.1%" in section and "unavailable: package not installed" in section
    assert "features were read from the feature cache" in section and "(timm)" in section
