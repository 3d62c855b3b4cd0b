"""The committed airbench-recipe pair (recorded/p3_airbench_*.json): both read through P3's result type, ran
the same recipe, and docs/p3_better.md quotes their numbers as the files hold them."""
import json
from pathlib import Path

import pytest

from problems.p3.result import P3Result

REPO = Path(__file__).resolve().parents[1]
FILES = {"scratchnet": REPO / "recorded" / "p3_airbench_scratchnet.json",
         "torch": REPO / "recorded" / "p3_airbench_torch.json"}


def training_seconds(r: dict) -> float:
    """The epochs' training steps only (no evaluation): steps x batch / images per second, summed."""
    per, total, batch = r["steps_per_epoch"], r["total_steps"], r["hyperparameters"]["batch_size"]
    return sum(min(per, total - i * per) * batch / ips for i, ips in enumerate(r["images_per_second"]))


@pytest.fixture(scope="module")
def runs():
    return {side: json.loads(path.read_text()) for side, path in FILES.items()}


def test_both_read_as_p3_results_of_the_same_recipe(runs):
    for side, path in FILES.items():
        P3Result.read(path)
        assert runs[side]["backend"] == ("numpy" if side == "scratchnet" else "torch")
    a, b = (dict(runs[s]["hyperparameters"]) for s in FILES)
    assert a == b and a["recipe"] == "airbench"
    assert runs["scratchnet"]["total_steps"] == runs["torch"]["total_steps"] == 476


def test_the_docs_quote_the_recorded_pair(runs):
    doc = (REPO / "docs" / "p3_better.md").read_text()
    sn, pt = runs["scratchnet"], runs["torch"]
    row = lambda name, a, b: f"| {name} | {a} | {b} |"  # noqa: E731
    assert row("test accuracy, single view", f"{100 * sn['final_test_accuracy_without_tta']:.2f}%",
               f"{100 * pt['final_test_accuracy_without_tta']:.2f}%") in doc
    assert row("test accuracy, 6 views (TTA)", f"{100 * sn['final_test_accuracy']:.2f}%",
               f"{100 * pt['final_test_accuracy']:.2f}%") in doc
    assert row("training time", f"{training_seconds(sn):,.0f} s", f"{training_seconds(pt):,.0f} s") in doc
    assert f"{training_seconds(sn) / training_seconds(pt):.2f}x the twin's training time" in doc
