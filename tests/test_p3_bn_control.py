"""P3's batch-norm control: the 2 x 2 of {plain, batch norm} x {0.02, 0.2}, its text following the numbers,
its CLI (training the missing cells, redrawing a recorded result, refusing mismatched runs) and its place in
the report and in the report driver's plan."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from problems.p3.bn_control import P3BNControl, discussion

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
from cifar_helpers import make_pickles  # noqa: E402
from report_fixtures import p3 as fixture  # noqa: E402
from report_fixtures.common import built_html  # noqa: E402


def _run(*args, data=None):
    env = dict(os.environ, MPLBACKEND="Agg", **({"SCRATCHNET_DATA": str(data)} if data else {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def test_text_splits_the_headline_gap_into_equal_lr_and_larger_lr():
    c = fixture.bn_control()
    text = " ".join(c.discussion)
    assert "At the same peak learning rate 0.02, batch norm lowers the test error from 30.00% to 27.00% (3.00 points)" in text
    assert "At the same peak learning rate 0.2, batch norm lowers the test error from 35.00% to 22.00%" in text
    # 8 points in all: 3 at equal lr, 5 from raising the batch-norm net's lr
    assert "test error 8.00 points lower than part 1" in text
    assert "3.00 points lower than the plain network's" in text and "another 5.00 points lower" in text


def test_text_follows_the_data_when_batch_norm_loses_at_equal_lr_and_when_a_run_diverged():
    c = fixture.bn_control()
    worse = [cell for cell in c.cells]
    worse[2].final_test_error = 0.33            # batch norm at 0.02 now worse than plain at 0.02
    text = " ".join(discussion(worse, c.lrs))
    assert "batch norm raises the test error from 30.00% to 33.00%" in text
    assert "3.00 points higher than the plain network's" in text and "another 11.00 points lower" in text
    text = " ".join(fixture.bn_control(plain_high_diverged=True).discussion)
    assert "At peak learning rate 0.2 the plain network diverged (epoch 1, step 40)" in text
    assert "from 0.02 to 0.2 raises the test error" not in text   # no claim about a run that has no error


def test_cli_trains_the_missing_cells_redraws_recorded_and_refuses_mismatches(tmp_path):
    data = tmp_path / "data"
    make_pickles(data, n_per_batch=60, n_test=15)   # 300 training images: two steps of the recipes' batch 128
    flags = ["--epochs", "1", "--no-progress", "--data-dir", str(data)]
    for model in ("small", "small_bn"):
        r = _run("problems/p3_small_cnn.py", "--model", model, *flags, "--out", str(tmp_path / model))
        assert r.returncode == 0, r.stderr
    heads = [str(tmp_path / m / "results.json") for m in ("small", "small_bn")]
    r = _run("problems/p3_bn_control.py", "--headline", *heads, *flags, "--out", str(tmp_path / "ctl"))
    assert r.returncode == 0, r.stderr
    result = P3BNControl.read(tmp_path / "ctl" / "results.json")
    assert [(c.model, c.lr, c.role) for c in result.cells] == [
        ("small", 0.02, "part 1 run"), ("small", 0.2, "control run"),
        ("small_bn", 0.02, "control run"), ("small_bn", 0.2, "part 2 run")]
    assert (tmp_path / "ctl" / "bn_control.png").stat().st_size > 1000
    assert (tmp_path / "ctl" / "runs" / "small_lr0.2" / "results.json").is_file()
    # a second run reuses the finished cells, with the same numbers
    r = _run("problems/p3_bn_control.py", "--headline", *heads, *flags, "--out", str(tmp_path / "ctl"))
    assert r.returncode == 0 and r.stdout.count("reusing") == 2
    assert P3BNControl.read(tmp_path / "ctl" / "results.json").cells == result.cells
    # the recorded result, redrawn
    r = _run("problems/p3_bn_control.py", "--from-recorded", str(tmp_path / "ctl" / "results.json"),
             "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    again = P3BNControl.read(tmp_path / "again" / "results.json")
    assert again.cells == result.cells and again.recorded_from
    # runs of the wrong model or lr in place of part 1: refused in one line
    r = _run("problems/p3_bn_control.py", "--headline", heads[1], heads[0], *flags, "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "the control needs small at lr 0.02" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"problem": "p3"})])
def test_a_missing_or_corrupt_recorded_file_is_one_line_and_exit_2(tmp_path, content):
    path = tmp_path / "rec.json"
    if content is not None:
        path.write_text(content)
    r = _run("problems/p3_bn_control.py", "--from-recorded", str(path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_report_shows_the_control_table_and_text_and_a_box_when_it_is_missing(tmp_path):
    results = tmp_path / "results"
    fixture.write(results)
    html = built_html(results, tmp_path / "out")
    assert "Controlled comparison: both networks at both learning rates" in html
    assert "At the same peak learning rate 0.02, batch norm lowers the test error" in html
    assert "27.00%" in html and "control run" in html
    (results / "p3" / "bn_control" / "results.json").unlink()
    html = built_html(results, tmp_path / "out2")
    assert "the controlled batch-norm comparison" in html and "Not yet produced" in html


def test_driver_redraws_the_recorded_control_and_trains_it_with_retrain(tmp_path):
    import jobs
    plain = {j.name: j for j in jobs.plan(tmp_path / "results")}
    argv = plain["p3_bn_control"].argv
    assert argv[:3] == ["problems/p3_bn_control.py", "--from-recorded", jobs.P3_BN_CONTROL]
    retrain = {j.name: j for j in jobs.plan(tmp_path / "results", retrain=True)}
    argv = retrain["p3_bn_control"].argv
    assert "--from-recorded" not in argv and "--headline" in argv
    names = [j.name for j in jobs.plan(tmp_path / "results", retrain=True)]
    assert names.index("p3_both") < names.index("p3_bn_control")   # the diagonal cells come first


def test_a_diverged_cell_is_recorded_with_the_epochs_it_finished(tmp_path, monkeypatch):
    import numpy as np

    from problems.p3 import bn_control, run
    from scratchnet.io import save_npz
    history = {"train_loss": [2.0, 1.8], "test_loss": [1.9, 1.7], "test_accuracy": [0.3, 0.35]}
    save_npz(tmp_path / "checkpoint.npz", {"meta": np.array(json.dumps({"epoch": 2, "history": history}))})

    def diverge(*args, **kwargs):
        raise run.Diverged("training diverged at epoch 3, step 258 (loss nan); lower --lr")
    monkeypatch.setattr(run, "train", diverge)
    cell = bn_control.train_cell("small", 0.2, None, None, tmp_path, False, None)
    assert cell.diverged == "epoch 3, step 258" and cell.final_test_error is None
    assert cell.train_loss == [2.0, 1.8] and cell.test_accuracy == [0.3, 0.35]
    assert bn_control.completed_history(tmp_path / "nowhere") == {}
