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

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
import build_report  # noqa: E402
import make_report  # noqa: E402
from jobs import Job  # noqa: E402
from report_fixtures import p1, p2, p3, p4, p5  # noqa: E402

SECTION_TITLES = ["P1. A pretrained CNN", "P2. Transfer learning", "P3. Training CNNs on CIFAR-10",
                  "P4. Adversarial examples", "P5. A hard-threshold RNN", "Appendix A.", "Appendix B. Code"]


def make_fixture(root: Path) -> Path:
    """A complete, small results set in the scripts' formats (figures relative to each JSON's folder)."""
    for problem in (p1, p2, p3, p4, p5):
        problem.write(root)
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
    assert "67.56%" in text and "bell pepper" in text                # P1 probabilities: percent, 2 decimals
    assert "ifgsm, momentum 0.5" in text
    assert "89.13%" in text                           # P2 mean-per-class accuracy 0.8913
    assert "93.12%" in text and "whitened first layer" in text and "no EMA" in text
    assert "4 epochs on 5000 images" in text and "more than the seed-to-seed range" in text   # made from the rows
    assert "Figure not found" not in text                 # accuracy vs wall time included
    assert "lower than the plain network's 1.200" in text
    assert "hflip</strong> broke the attack on all 2 images" in text
    assert "crop80</strong> broke the attack on 1 of 2 images" in text
    assert "survives all transforms for 1 of 1 images, at eps 4/255" in text
    assert "1,048,576" in text and "1 of 2 seeds" in text
    code = re.sub(r"<[^>]+>", "", text)                                  # the code, its highlighting removed
    assert "def conv2d_forward(" in code and "scratchnet/kernels/conv.py" in text   # the P3 code excerpts


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
    assert "unreadable results file" in text and "P4Result: missing field" in text   # P4 refused by its type
    assert "bell pepper" in text and "1,048,576" in text and "survives all transforms for 1 of 1" in text


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
    assert all(j.argv[-2:] == ["--seed", "7"] for name, j in seeded.items()
               if name != "p3_compare" and "--from-recorded" not in j.argv)   # these draw no random numbers
