"""The committed airbench-recipe pairs (recorded/p3_airbench_*.json, seeds 0 and 1): all read through P3's
result type, each pair ran the same recipe and seed on both sides, and docs/p3_better.md quotes their
numbers, and the means over the seeds, as the files hold them."""
import json
from pathlib import Path

import pytest

from problems.p3.result import P3Result

REPO = Path(__file__).resolve().parents[1]
SIDES = ("scratchnet", "torch")
SEEDS = (0, 1)
FILES = {(side, seed): REPO / "recorded" / f"p3_airbench_{side}{'' if seed == 0 else f'_seed{seed}'}.json"
         for seed in SEEDS for side in SIDES}


def training_seconds(r: dict) -> float:
    """The epochs' training steps only (no evaluation): steps x batch / images per second, summed."""
    per, total, batch = r["steps_per_epoch"], r["total_steps"], r["hyperparameters"]["batch_size"]
    return sum(min(per, total - i * per) * batch / ips for i, ips in enumerate(r["images_per_second"]))


@pytest.fixture(scope="module")
def runs():
    return {key: json.loads(path.read_text()) for key, path in FILES.items()}


def test_all_read_as_p3_results_of_the_same_recipe(runs):
    for (side, seed), path in FILES.items():
        P3Result.read(path)
        assert runs[side, seed]["backend"] == ("numpy" if side == "scratchnet" else "torch")
        assert runs[side, seed]["hyperparameters"]["seed"] == seed
        assert runs[side, seed]["total_steps"] == 476
    settings = [{k: v for k, v in r["hyperparameters"].items() if k != "seed"} for r in runs.values()]
    assert all(s == settings[0] for s in settings) and settings[0]["recipe"] == "airbench"


def pct(x):
    return f"{100 * x:.2f}%"


def test_the_docs_quote_the_recorded_pairs_and_their_means(runs):
    doc = (REPO / "docs" / "p3_better.md").read_text()
    cells = lambda f: [f(runs[side, seed]) for seed in SEEDS for side in SIDES]  # noqa: E731
    mean = lambda f, side: sum(f(runs[side, seed]) for seed in SEEDS) / len(SEEDS)  # noqa: E731
    for name, key in (("test accuracy, single view", "final_test_accuracy_without_tta"),
                      ("test accuracy, 6 views (TTA)", "final_test_accuracy")):
        values = [pct(v) for v in cells(lambda r: r[key])]
        means = [pct(mean(lambda r: r[key], side)) for side in SIDES]
        assert f"| {name} | " + " | ".join(values + means) + " |" in doc
    times = [f"{t:,.0f} s" for t in cells(training_seconds)]
    assert "| training time | " + " | ".join(times) + " | | |" in doc
    for seed in SEEDS:
        ratio = training_seconds(runs["scratchnet", seed]) / training_seconds(runs["torch", seed])
        assert f"seed {seed}: {ratio:.2f}x the twin's training time" in doc
    gap = mean(lambda r: r["final_test_accuracy"], "torch") - mean(lambda r: r["final_test_accuracy"], "scratchnet")
    assert f"mean TTA gap {100 * gap:+.2f} points" in doc


def test_the_docs_run_table_is_the_committed_better_net():
    """docs/p3_better.md's "The run": one row per epoch of weights/p3_better.json, the last with the slow
    weights' test-time-augmented and single-view accuracies, and its training time without evaluation."""
    r = json.loads((REPO / "weights" / "p3_better.json").read_text())
    doc = (REPO / "docs" / "p3_better.md").read_text()
    run = doc[doc.index("## The run"):doc.index("## The earlier run")]
    n = len(r["train_loss"])
    for i in range(n - 1):
        assert (f"| {i + 1} | {r['train_loss'][i]:.4f} | {pct(r['train_accuracy'][i])} | "
                f"{pct(r['test_accuracy'][i])} | {r['epoch_seconds'][i]:.1f} |") in run
    assert (f"| {n} | {r['train_loss'][-1]:.4f} | {pct(r['train_accuracy'][-1])} | "
            f"**{pct(r['final_test_accuracy'])}** (slow weights, 6 views; "
            f"{pct(r['final_test_accuracy_without_tta'])} single view) | {r['epoch_seconds'][-1]:.1f} ") in run
    seconds = training_seconds(r)
    assert f"{seconds:,.0f} s ({seconds / 60:.1f} min)" in run and f"{sum(r['epoch_seconds']):,.0f} s" in run
    assert f"**Against the 92% target: {pct(r['final_test_accuracy'])}" in run


def test_the_docs_quote_the_twins_own_hour():
    """The twin's 28-epoch run (recorded/p3_airbench_torch_e28.json): the same recipe and seed as the committed
    net, only longer, and docs/p3_better.md quotes its accuracies and training time."""
    twin = json.loads((REPO / "recorded" / "p3_airbench_torch_e28.json").read_text())
    ours = json.loads((REPO / "weights" / "p3_better.json").read_text())
    P3Result.from_json(twin)
    assert twin["backend"] == "torch" and twin["epochs"] == 28 and ours["epochs"] == 22
    same = lambda hp: {k: v for k, v in hp.items() if k != "epochs"}  # noqa: E731
    assert same(twin["hyperparameters"]) == same(ours["hyperparameters"])
    doc = (REPO / "docs" / "p3_better.md").read_text()
    seconds = training_seconds(twin)
    assert (f"reached {pct(twin['final_test_accuracy'])} ({pct(twin['final_test_accuracy_without_tta'])} single view) "
            f"in {seconds:,.0f} s ({seconds / 60:.1f} min)") in " ".join(doc.split())
    assert f"training accuracy at {pct(twin['train_accuracy'][-1])}" in " ".join(doc.split())
