"""The report's frame, built from the fixture results: the cover's names (given and not), the References
section listing exactly what the sections cite, no absolute path and no set-up or machine talk inside
the P1-P5 sections, the data caveats said once, each section ending with its code excerpts (found by
function name), --full-code adding the library, and tables that never break with fewer than 3 rows on a
page."""
import html
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
import build_report  # noqa: E402
import frame  # noqa: E402
from references import WORKS  # noqa: E402
from report_fixtures import p1, p2, p3, p4, p5  # noqa: E402

from problems.p3.result import filters_sentence  # noqa: E402
from problems.p4.result import DISCUSSION, P4EotResult, eot_discussion  # noqa: E402

PROBLEMS = ["p1", "p2", "p3", "p4", "p5"]

from check_report import SETUP_PHRASES, answers, checks  # noqa: E402 - one list for the tests and the PDF check


def write_fixture(root: Path, better_whitening: bool = True) -> Path:
    for problem in (p1, p2, p4, p5):
        problem.write(root)
    p3.write(root)
    if better_whitening:         # the committed better net's first layer: fixed whitening filters (airbench)
        path = root / "p3" / "better" / "results.json"
        obj = json.loads(path.read_text())
        obj["initialisation"] = ("first layer: fixed 2x2 patch-whitening filters; 3x3 convs: He normal, "
                                 "then Dirac (identity)")
        obj["hyperparameters"]["label_smoothing"] = 0.2
        path.write_text(json.dumps(obj))
    return root


def visible(page: str) -> str:
    """The text a reader sees, tags and the style block removed."""
    page = re.sub(r"<style[^>]*>.*?</style>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def answer_parts(page: str) -> dict:
    """Each problem's section as HTML, without the code excerpts that end it."""
    parts = {}
    for i, key in enumerate(PROBLEMS):
        end = f'id="{PROBLEMS[i + 1]}"' if i + 1 < len(PROBLEMS) else 'id="references"'
        body = page.split(f'id="{key}"')[1].split(end)[0]
        parts[key] = body.split('<div class="section-code"')[0]
    return parts


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture report with a PDF, author and collaborators given."""
    root = write_fixture(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("report")
    info = build_report.build(root, out, author="Ada Lovelace", collaborators="Alan Turing; Grace Hopper")
    return root, out, info, info["html"].read_text()


def test_cover_names_as_given(built):
    _, _, _, page = built
    text = visible(page)
    assert "Author: Ada Lovelace" in text and "Collaborators: Alan Turing, Grace Hopper" in text
    cover = visible(page.split('<nav class="toc">')[0])
    assert "Built " not in cover and "revision" not in cover and "make report" not in cover


def test_cover_names_not_given_are_not_invented(tmp_path):
    root = write_fixture(tmp_path / "results")
    text = visible(build_report.build(root, tmp_path / "out", no_code=True, pdf=False)["html"].read_text())
    assert "Author: not given" in text and "Collaborators: none named" in text
    assert build_report.main(["--results", str(root), "--out", str(tmp_path / "cli"), "--no-pdf", "--no-code",
                              "--author", " Ada  Lovelace ", "--collaborators", "Alan Turing,, "]) == 0
    text = visible((tmp_path / "cli" / "report.html").read_text())
    assert "Author: Ada Lovelace" in text and "Collaborators: Alan Turing" in text
    assert frame.people("", " , ") == {"author": "not given", "collaborators": "none named",
                                       "author_given": False, "collaborators_given": False}


def test_references_list_exactly_what_is_cited(built):
    _, _, _, page = built
    body, refs = page.split('id="references"')[0], page.split('id="references"')[1].split('id="runs"')[0]
    listed = [int(n) for n in re.findall(r'<li value="(\d+)">', refs)]
    assert listed == list(range(1, len(listed) + 1))
    def cited(part):
        prose = visible(re.sub(r"<(code|pre)[^>]*>.*?</\1>", " ", part, flags=re.S))   # code indexes lists: x[0]
        return {int(n) for group in re.findall(r"\[(\d+(?:, \d+)*)\]", prose) for n in group.split(", ")}
    assert set(listed) <= cited(body)                               # every work listed is cited ...
    assert cited(body.split('id="p5"')[0]) <= set(listed)          # ... and every [n] is listed (P5's vectors
    assert listed                                                   # like [0, 0, 1] are not citations)
    texts = visible(refs)
    for key in ["cifar10", "batchnorm", "he_init", "label_smoothing", "airbench", "nesterov",     # P3
                "fgsm", "ifgsm", "mifgsm", "eot", "imagenet", "pets"]:                              # P4, data
        assert WORKS[key] in texts, key


def test_citations_sit_where_the_work_is_used(built):
    _, _, _, page = built
    parts = {k: visible(v) for k, v in answer_parts(page).items()}
    assert re.search(r"Part 2: the same network with batch normalisation \[\d+\]", parts["p3"])
    assert re.search(r"Nesterov momentum 0\.9 \[\d+\]", parts["p3"])
    assert re.search(r"airbench recipe for fast CIFAR-10 training \[\d+\]", parts["p3"])
    assert re.search(r"Expectation over transformation \(EOT\) \[\d+\]", parts["p4"])
    assert re.search(r"ifgsm, momentum 0\.5 \[\d+, \d+\] \[\d+\]", parts["p4"])


def test_no_absolute_path_anywhere(built):
    root, out, _, page = built
    text = visible(page)
    for folder in (str(root), str(out), str(REPO), str(Path.home())):
        assert folder not in page, folder
    assert not re.search(r"(?<![\w.])/(tmp|work|home|root|usr|Users)/", text)


@pytest.mark.parametrize("key", PROBLEMS)
def test_no_setup_or_machine_talk_in_the_answers(built, key):
    _, _, _, page = built
    text = visible(answer_parts(page)[key])
    found = [p for p in SETUP_PHRASES if p.lower() in text.lower()]
    assert found == [], f"{key.upper()}: {found}"


def test_data_caveats_said_once_on_the_cover(built):
    _, _, _, page = built
    cover = visible(page.split('id="p1"')[0])
    assert "About the data" in cover
    assert "saved as a JPEG, a lossy format" in cover and "not exactly comparable" in cover
    assert "Oxford-IIIT Pet used in P2 is incomplete: 2,176 of the 3,680" in cover
    answers = visible("".join(answer_parts(page).values()))
    assert "JPEG copy (lossy)" not in answers and "lossy JPEG copy" not in answers


def test_data_notes_follow_the_results():
    sections = {"p3_small": {"ok": True, "data": {"data_source": "pickled batches (original)", "n_test": 10}},
                "p2": {"ok": False, "data": None}}
    assert frame.data_notes(sections) == []


def test_each_section_ends_with_its_code(built):
    _, _, _, page = built
    for i, key in enumerate(PROBLEMS):
        end = f'id="{PROBLEMS[i + 1]}"' if i + 1 < len(PROBLEMS) else 'id="references"'
        section = page.split(f'<section class="problem" id="{key}"')[1].split(end)[0]
        assert f'id="code-{key}"' in section
        code = section.split(f'id="code-{key}"')[1]
        assert "Appendix B" in visible(code)                                   # the pointer to the rest
        for rel, names in frame.EXCERPTS[key]:
            for name in names:
                short = name.split(".")[-1]
                assert re.search(rf"(def|class)\s+{short}\b", visible(code)), f"{key}: {rel} {name}"
        assert "no function or class" not in code and "file not found" not in code
    p3 = visible(page.split('id="code-p3"')[1].split('id="p4"')[0])
    for name in ["conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward",
                 "batchnorm_forward", "batchnorm_backward", "train_step"]:
        assert f"def {name}(" in p3, name
    assert 'class="k"' in page.split('id="code-p3"')[1] or not frame.highlighter()[1]   # highlighted


def test_excerpts_follow_the_code(tmp_path):
    (tmp_path / "m.py").write_text("import os\n\n\n@staticmethod\ndef f(x):\n    return x\n\n\nclass C:\n"
                                   "    def g(self):\n        return 1\n")
    ex = frame.source_of("m.py", "f", tmp_path)
    assert (ex["first"], ex["last"]) == (4, 6) and ex["source"].startswith("@staticmethod\ndef f(x):")
    ex = frame.source_of("m.py", "C.g", tmp_path)
    assert ex["source"] == "def g(self):\n    return 1" and (ex["first"], ex["last"]) == (10, 11)
    assert frame.source_of("m.py", "h", tmp_path)["problem"] == "no function or class h in this file"
    assert frame.source_of("nope.py", "f", tmp_path)["problem"] == "file not found"


def test_full_code_adds_the_library(tmp_path):
    root = write_fixture(tmp_path / "results")
    default = build_report.build(root, tmp_path / "a", pdf=False)["html"].read_text()
    full = build_report.build(root, tmp_path / "b", pdf=False, full_code=True)["html"].read_text()
    assert "def _topological_order(" in visible(full) and "def _topological_order(" not in visible(default)
    assert "Appendix B. Code files" in visible(default) and "scratchnet/autograd.py" in default
    assert len(full) > 3 * len(default)
    none = build_report.build(root, tmp_path / "c", pdf=False, no_code=True)["html"].read_text()
    assert 'id="code-p3"' not in none and 'id="code"' not in none


def test_fixture_pdf_is_short(built):
    _, _, info, _ = built
    assert info["pages"] <= 45


def test_tables_never_break_with_fewer_than_3_rows(tmp_path):
    """A 30-row table that starts with room for only a row or two at the bottom of a page: the break leaves
    at least 3 rows on each page; a 5-row table in the same place moves whole."""
    weasyprint = pytest.importorskip("weasyprint")
    pypdf = pytest.importorskip("pypdf")
    css = (REPO / "report" / "templates" / "style.css").read_text()

    def pages(n_rows, spacer_mm):
        rows = "".join(f"<tr><td>row{i:02d}</td></tr>" for i in range(1, n_rows + 1))
        doc = (f"<html><head><style>{css}</style></head><body><div style='height:{spacer_mm}mm'></div>"
               f"<table class='data'><thead><tr><th>head</th></tr></thead><tbody>{rows}</tbody></table>"
               "</body></html>")
        path = tmp_path / "t.pdf"
        weasyprint.HTML(string=doc).write_pdf(path)
        return [re.findall(r"row\d\d", p.extract_text() or "") for p in pypdf.PdfReader(str(path)).pages]

    for spacer in (244, 247, 250, 253):
        split = [p for p in pages(30, spacer) if p]
        assert sum(map(len, split)) == 30 and all(len(p) >= 3 for p in split), (spacer, split)
    for spacer in (235, 245):
        assert len([p for p in pages(5, spacer) if p]) == 1


def test_p3_filter_caption_follows_the_first_layer():
    fixed = p3.result("better", [1.0], [0.5])
    fixed.initialisation = "first layer: fixed 2x2 patch-whitening filters"
    assert "not learned" in filters_sentence(fixed)
    trained = p3.result("small", [1.0], [0.5])
    assert "not learned" not in filters_sentence(trained) and "edges" not in filters_sentence(trained)


def test_p4_text_follows_the_data():
    for name, text in DISCUSSION.items():       # the mechanism only: whether it broke is said from the results
        assert not re.search(r"most cases|target is lost|usually wins|eps 2 survives|dog-like|demo images",
                             text), name
    e = p4.eot_result()
    obj = e.to_json()
    entry = obj["images"][0]
    entry["eps_tried"] = [{"eps": 2, "success": True, "all_transforms_kept": False, "steps": 5, "seconds": 1.0},
                          {"eps": 4, "success": True, "all_transforms_kept": True, "steps": 7, "seconds": 1.0}]
    entry["success"] = True
    obj["images"].append({**entry, "image": "DATA/rocket.png", "success": False,
                          "eps_tried": [{**t, "all_transforms_kept": False, "success": False}
                                        for t in entry["eps_tried"]]})
    text = eot_discussion(P4EotResult.from_json(obj))
    assert "4/255 for" in text and "where eps 2 did not suffice" in text
    assert "No eps of the grid made the target survive every transform for rocket" in text


def test_check_script_passes_the_fixture_pdf_where_it_should_and_fails_machine_talk(built):
    _, _, info, _ = built
    results = {what: (passed, detail) for passed, what, detail in checks(info["pdf"], 45)}
    for what in ("at most 45 pages", "cover: author line", "cover: collaborators line", "references listed",
                 "no absolute paths", "P3: the batch-norm control", "P3: part 3 single view beside test-time augmentation"):
        assert results[what][0], (what, results[what])
    assert results["cover: author line"][1] == "Ada Lovelace"
    assert not checks(info["pdf"], 5)[0][0]                # the page limit can fail
    footer = "P3. Training CNNs on CIFAR-10 with scratchnet\npage 7 of 30"
    body = answers([f"Part 1 trained with pip install torch on this machine\nCode for P3\n.npz\n{footer}"])["p3"]
    assert "pip install" in body and ".npz" not in body    # the code excerpts are not part of the answer
    assert [p for p in SETUP_PHRASES if p.lower() in body.lower()] == ["pip install", "this machine", "on this machine"]
