"""A new user's first run: a clone with no results and no data, downloads off (issue: fresh machine).

The driver must answer P1, P4 (peppers ships with the project) and P5, show P3's recorded results, name
the fix for P2 in one table before and after the runs, exit 2, and write no machine path into the report
or the results. Helpers below it check the pieces (paths, the download policy, the plan) one by one.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from problems.common import downloads
from problems.common.assets import ASSETS, peppers_path
from problems.common.cli import portable_path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "report"))
from jobs import plan, readiness  # noqa: E402


def _absolute_paths(text: str, roots) -> list:
    """Absolute machine paths in `text`: any of `roots` (this checkout, the data root, the temp folder) or a
    quoted string that starts with '/' followed by a letter (a JSON value such as "/home/...")."""
    found = [r for r in roots if r in text]
    found += re.findall(r'"(/[A-Za-z][^"]*)"', text)
    return found


def _copy_checkout(dest: Path) -> None:
    """The files a clone would have: git's tracked and unignored files (in CI, HEAD of a clean clone)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.mark.slow
def test_a_fresh_clone_without_data_answers_what_it_can_and_names_the_fix(tmp_path):
    clone, data = tmp_path / "clone", tmp_path / "empty-data"
    clone.mkdir()
    data.mkdir()
    _copy_checkout(clone)
    assert not (clone / "results").exists()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SCRATCHNET_DATA=str(data), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "report/make_report.py", "--quick", "--no-download"], cwd=clone,
                          env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert proc.returncode == 2, out[-3000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    # one table before the runs, one after, each naming P2 missing with its fix
    before, after = out.index("before the runs:"), out.index("after the runs:")
    assert before < out.index("[report] python problems/p1_pretrained.py") < after
    for table in (out[before:out.index("\n[report] ", before)], out[after:]):
        assert re.search(r"P2\s+missing\s+no Oxford-IIIT Pet in DATA and downloads are off", table)
        assert "fix:" in table and "SCRATCHNET_DATA=/path/to/data make run" in table
        assert re.search(r"P3\s+recorded", table) and re.search(r"P1\s+answer", table)
    assert re.search(r"P1\s+answer\s+peppers.png from the copy shipped in problems/assets/", out)
    assert "P2 (missing)" in proc.stderr.splitlines()[-1] and proc.stderr.splitlines()[-1].startswith("error:")

    results = clone / "results"
    runs = json.loads((results / "report_runs.json").read_text())
    status = {r["name"]: r for r in runs["runs"]}
    assert status["p2"]["skip"] and status["p2"]["rc"] is None
    for name in ("p1", "p3_small", "p3_small_bn", "p3_compare", "p3_better", "p4", "p5"):
        assert status[name]["rc"] == 0, (name, status[name])
    p1 = json.loads((results / "p1/results.json").read_text())
    assert p1["image"] == "problems/assets/peppers.png" and p1["top"][0]["name"] == "bell pepper"
    p4 = json.loads((results / "p4/results.json").read_text())
    assert [e["image"] for e in p4["images"]][:2] == ["problems/assets/peppers.png", "skimage/data/coffee.png"]
    p3 = json.loads((results / "p3/small/results.json").read_text())
    recorded = json.loads((clone / "weights/p3_small.json").read_text())
    assert p3["evaluated"] is False and p3["final_test_accuracy"] == recorded["final_test_accuracy"]
    assert (results / "p3/small/filters.png").is_file() and (results / "p3/small/loss.png").is_file()

    html = (clone / "report/report.html").read_text()
    assert (clone / "report/report.pdf").stat().st_size > 10_000
    assert "as recorded</strong> when the network was trained (not re-evaluated" in html
    assert "no Oxford-IIIT Pet in DATA" in html                      # the P2 box says why it is missing
    roots = [str(clone), str(data), str(tmp_path), str(REPO), str(Path.home())]
    assert _absolute_paths(html, roots) == []
    for path in results.rglob("*.json"):
        assert _absolute_paths(path.read_text(), roots) == [], path


def test_committed_results_hold_no_machine_paths():
    roots = [str(REPO), str(Path.home()), "/work/", "/tmp/"]
    files = list((REPO / "weights").glob("*.json")) + list((REPO / "bench" / "results").glob("*.json"))
    assert files
    for path in files:
        assert _absolute_paths(path.read_text(), roots) == [], path


def test_portable_paths(tmp_path, monkeypatch):
    import skimage
    monkeypatch.setenv("SCRATCHNET_DATA", str(tmp_path / "data"))
    assert portable_path(REPO / "weights" / "p3_small.npz") == "weights/p3_small.npz"
    assert portable_path(tmp_path / "data" / "cifar10") == "DATA/cifar10"
    assert portable_path(tmp_path / "data") == "DATA"
    assert portable_path(tmp_path / "other" / "d", data_dir=str(tmp_path / "other")) == "DATA/d"
    assert portable_path(Path(skimage.__file__).parent / "data" / "coffee.png") == "skimage/data/coffee.png"
    assert portable_path("relative/x.png") == "relative/x.png"
    assert portable_path(tmp_path / "elsewhere" / "photo.png") == "photo.png"


def test_command_line_writes_no_absolute_path(tmp_path, monkeypatch):
    from problems.common.cli import command_line
    monkeypatch.setattr(sys, "argv", [str(REPO / "problems" / "p1_pretrained.py"), "--data-dir", str(tmp_path),
                                      "--image", str(tmp_path / "a b.png"), f"--out={REPO / 'results' / 'p1'}",
                                      "--maps", "3"])
    assert command_line() == "problems/p1_pretrained.py --data-dir DATA --image 'DATA/a b.png' --out=results/p1 --maps 3"


def test_peppers_ships_with_the_project(tmp_path):
    assert peppers_path(str(tmp_path)) == ASSETS / "peppers.png"      # data root without it
    assert (ASSETS / "SOURCE.md").read_text().count("peppers.png") >= 1
    (tmp_path / "peppers.png").write_bytes((ASSETS / "peppers.png").read_bytes())
    assert peppers_path(str(tmp_path)) == tmp_path / "peppers.png"    # the data root's copy wins


def test_download_policy_and_plan(tmp_path, monkeypatch):
    from cifar_helpers import make_tree
    from pets_helpers import make_mini_pets
    asked = []
    monkeypatch.setattr(downloads, "network_reachable", lambda host, **k: asked.append(host) or False)
    empty = readiness(str(tmp_path), download=True)
    assert asked == [downloads.HOSTS["pets"], downloads.HOSTS["cifar10"]]       # tried, host silent
    assert empty["p2"].state == "missing" and "does not answer" in empty["p2"].detail
    assert empty["p3"].state == "recorded" and empty["p1"].state == empty["p4"].state == "answer"
    asked.clear()
    off = readiness(str(tmp_path), download=False)
    assert asked == [] and "--no-download" in off["p2"].detail                   # never asks the network
    assert readiness(str(tmp_path), download=False, retrain=True)["p3"].state == "missing"

    monkeypatch.setattr(downloads, "network_reachable", lambda host, **k: True)
    online = readiness(str(tmp_path), download=True)
    assert online["p2"].state == online["p3"].state == "answer" and "downloaded" in online["p2"].detail

    jobs = {j.name: j for j in plan(tmp_path / "res", data_dir=str(tmp_path), download=False, ready=off)}
    assert jobs["p2"].skip == off["p2"].detail and "--no-download" in jobs["p2"].argv
    assert "--recorded-if-no-data" in jobs["p3_small"].argv and "--no-download" in jobs["p3_better"].argv
    assert "--recorded-if-no-data" not in jobs["p3_compare"].argv and jobs["p1"].skip is None

    monkeypatch.setattr(downloads, "network_reachable", lambda host, **k: pytest.fail("data present: no network"))
    make_mini_pets(tmp_path)
    make_tree(tmp_path, n_train=1, n_test=1)
    present = readiness(str(tmp_path), download=True)
    assert present["p2"].state == present["p3"].state == "answer" and "found" in present["p3"].detail
    jobs = {j.name: j for j in plan(tmp_path / "res", data_dir=str(tmp_path), ready=present)}
    assert "--recorded-if-no-data" not in jobs["p3_small"].argv and jobs["p2"].skip is None


def test_p3_recorded_results_without_cifar(tmp_path):
    env = dict(os.environ, SCRATCHNET_DATA=str(tmp_path / "none"), MPLBACKEND="Agg")
    base = [sys.executable, "problems/p3_small_cnn.py", "--model", "small", "--eval-only", "--weights",
            "weights/p3_small.npz", "--no-download", "--out", str(tmp_path / "out")]
    strict = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert strict.returncode == 2 and "downloads are off" in strict.stderr and "Traceback" not in strict.stderr
    r = subprocess.run(base + ["--recorded-if-no-data"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    recorded = json.loads((REPO / "weights" / "p3_small.json").read_text())
    assert res["evaluated"] is False and "not re-evaluated" in res["recorded_note"]
    assert res["final_test_accuracy"] == recorded["final_test_accuracy"]
    assert res["train_loss"] == recorded["train_loss"] and res["weights_file"] == "weights/p3_small.npz"
    assert "recorded, not re-evaluated" in r.stdout
    bad = subprocess.run([sys.executable, "problems/p3_small_cnn.py", "--recorded-if-no-data"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--recorded-if-no-data belongs to --eval-only" in bad.stderr


def test_p2_no_download_names_the_flag(tmp_path):
    r = subprocess.run([sys.executable, "problems/p2_transfer.py", "--no-download", "--data-dir", str(tmp_path),
                        "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "Oxford-IIIT Pet not found" in r.stderr and "--no-download" in r.stderr
