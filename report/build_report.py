"""Build the homework report (report.html + report.pdf) from the problems' results folders.

    python report/build_report.py [--results DIR] [--out DIR] [--author NAME] [--collaborators "A, B"]
                                  [--full-code] [--no-code] [--no-pdf]

Reads DIR (default results/): p1/, p2/, p3/{small,small_bn,better}/ + p3/comparison.json, p4/ (+
results_eot.json), p5/, and report_runs.json when make_report.py wrote one. Every number in the report is
read from those files; sentences that depend on a result are generated from it. A missing or failed part
shows a "not yet produced" box with the command that makes it. Jinja2 templates in report/templates/
give the HTML, WeasyPrint the PDF (A4, numbered pages). Each problem's section ends with excerpts of the
functions that carry its method (report/frame.py); Appendix B lists the code files, and prints them whole
(the scratchnet library included) with --full-code.
"""
from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:          # run as a script: make problems/ and report/ importable
    sys.path.insert(0, str(REPO))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from problems.common.cli import UserError, output_folder, portable_path, run_main  # noqa: E402
from problems.common.fmt import fmt_f, fmt_g, fmt_int, fmt_pct, fmt_sci, fmt_text, fmt_vec, plural  # noqa: E402
from problems.p1.result import P1Result  # noqa: E402
from problems.p2.result import P2Result, headline as p2_headline, report_facts as p2_facts  # noqa: E402
from problems.p3.bn_control import P3BNControl  # noqa: E402
from problems.p3.result import (P3Comparison, P3Result, ablation_facts as p3_ablation_facts,  # noqa: E402
                                p3_better_sentence, p3_bn_sentence, p3_facts)
from problems.p3.twin_check import P3TwinCheck, discussion as p3_twin_discussion  # noqa: E402
from problems.p4.result import P4EotResult, P4Result, p4_eot_facts, p4_table  # noqa: E402
from problems.p4.study_result import (P4Study, method_facts as p4_method_facts,  # noqa: E402
                                      sweep_facts as p4_sweep_facts)
from problems.p5.result import P5Result, derivation_markdown  # noqa: E402
from scratchnet.io import atomic_write  # noqa: E402
from jobs import RESULT_FILES, hint_commands  # noqa: E402
from references import Citations  # noqa: E402
import frame  # noqa: E402


# result key -> the problem's result type: load_section reads each results file only through its
# from_json, which checks every field (a renamed field fails there, naming it) and returns the typed
# result the templates read. None: read as a plain JSON object (a problem not yet converted).
RESULT_TYPES = {
    "p1": P1Result,
    "p2": P2Result,
    "p3_small": P3Result,
    "p3_small_bn": P3Result,
    "p3_compare": P3Comparison,
    "p3_bn_control": P3BNControl,
    "p3_twin_check": P3TwinCheck,
    "p3_better": P3Result,
    "p4": P4Result,
    "p4_eot": P4EotResult,
    "p4_study": P4Study,
    "p5": P5Result,
}

# Appendix B: the code that answers each problem, by group (report/frame.py; paths relative to the repository).
CODE = frame.CODE_FILES


# ------------------------------------------------------------------------------------------- loading
def field(data, name: str, default=None):
    """A field of a section's data, typed result (attribute) or plain JSON object (key) alike."""
    return data.get(name, default) if isinstance(data, dict) else getattr(data, name, default)


class Section(dict):
    """One result: {'key', 'ok', 'data', 'path', 'figs', 'missing': {'command', 'error', 'note'}}."""


def read_run_log(results: Path) -> dict | None:
    """DIR/report_runs.json (make_report.py's record of its runs), or None when it is absent or not in that
    shape: the report then says the results came from running the scripts directly."""
    path = results / "report_runs.json"
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
        return None
    runs = log.get("runs") if isinstance(log, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("produces", []), list)
                                             for r in runs):
        return None
    return log


def _runs(results: Path) -> dict:
    by_key = {}
    for run in (read_run_log(results) or {}).get("runs", []):
        for key in run.get("produces", []):
            by_key[str(key)] = run
    return by_key


def resolve_figure(json_path: Path, value) -> Path | None:
    """A figure path from a results file: relative to the JSON's folder (the convention), else as written
    (absolute, or relative to the repository / working directory), else the file name next to the JSON."""
    if not value or not isinstance(value, str):
        return None
    p = Path(value)
    candidates = [p] if p.is_absolute() else [json_path.parent / p, REPO / p, Path.cwd() / p]
    candidates.append(json_path.parent / p.name)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    return None


def load_section(results: Path, key: str, runs: dict, hints: dict) -> Section:
    """Read one results file; a missing, unreadable or failed-this-run result becomes a 'missing' section."""
    sec = Section(key=key, ok=False, data=None, path=None, figs={}, missing=None, stale=None, rel=None)
    command = hints.get(key, "make report")
    run = runs.get(key)
    path = next((results / f for f in RESULT_FILES[key] if (results / f).is_file()), None)
    if run and run.get("rc") not in (0, None):
        sec["missing"] = {"command": command, "error": run.get("error") or f"exit status {run.get('rc')}",
                          "note": f"the last run of this part failed (exit status {run.get('rc')})"}
        return sec
    if path is None:
        note = run.get("skip") if run else None
        sec["missing"] = {"command": command, "error": None, "note": note}
        return sec
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if RESULT_TYPES.get(key) is not None:
            data = RESULT_TYPES[key].from_json(data)
            why = getattr(data, "unfit_for_report", lambda: None)()
            if why:
                raise ValueError(why)
    except (ValueError, OSError) as e:  # ResultError is a ValueError
        rel = path.relative_to(results).as_posix()
        sec["missing"] = {"command": command, "error": f"{rel}: unreadable results file ({e})", "note": None}
        return sec
    sec.update(ok=True, data=data, path=path, rel=str(path.relative_to(results)))
    figs = data.get("figures") if isinstance(data, dict) else getattr(data, "figures", None)
    figs = figs if isinstance(figs, dict) else {}
    sec["figs"] = {role: resolve_figure(path, v) for role, v in figs.items()}
    if run and run.get("skip"):
        sec["stale"] = (f"not re-run this time ({run['skip']}); shown from the earlier results in "
                        f"{Path(sec['rel']).parent.as_posix()}/")
    return sec


# ------------------------------------------------------------------------------------------- markdown
def markdown_to_html(text: str) -> str:
    """The Markdown subset the project's docs use: #-headings, paragraphs, indented/fenced code, pipe
    tables, '* '/'- ' lists, **bold**, *italic*, `code`."""
    def inline(s: str) -> str:
        s = html.escape(s, quote=False)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
        return s.replace("\\|", "|")

    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre class='math'>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
        elif line.startswith("    "):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            block = "\n".join(ln[4:] for ln in lines[i:j]).strip("\n")
            out.append("<pre class='math'>" + html.escape(block) + "</pre>")
            i = j
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)   # the doc's # is inside a report section
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip())[1:-1]]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            head = "".join(f"<th>{inline(c)}</th>" for c in rows[0]) if rows else ""
            body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            out.append(f"<table class='data'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif re.match(r"\s*[*-] ", line):
            items = []
            while i < len(lines) and lines[i].strip():
                if re.match(r"\s*[*-] ", lines[i]):
                    items.append(re.sub(r"^\s*[*-] ", "", lines[i]))
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("<ul>" + "".join(f"<li>{inline(t)}</li>" for t in items) + "</ul>")
        else:
            para = []
            while (i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "    ", "```"))
                   and not lines[i].lstrip().startswith("|") and not re.match(r"\s*[*-] ", lines[i])):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)


def p5_derivation() -> str | None:
    """P5's derivation (problems.p5.result.derivation_markdown) as HTML; None when its doc is missing."""
    text = derivation_markdown()
    return None if text is None else markdown_to_html(text)


# ------------------------------------------------------------------------------------------- code
def code_appendix(no_code: bool = False, full_code: bool = False) -> list:
    """Appendix B: [{'title', 'files': [{'path', 'lines', 'found', 'excerpted', 'html'}]}]; the files' whole
    source ('html', highlighted) only with full_code; [] with no_code."""
    return [] if no_code else frame.code_files(full_code)


def git_revision() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


# ------------------------------------------------------------------------------------------- render
def make_env():
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=fmt_pct, f=fmt_f, g=fmt_g, int=fmt_int, sci=fmt_sci, vec=fmt_vec, text=fmt_text,
                       basename=lambda p: Path(str(p)).name)
    return env


def gather(results: Path, no_code: bool = False, full_code: bool = False, author=None, collaborators=None) -> dict:
    """Everything the templates need: one Section per result plus facts derived from them."""
    runs = _runs(results)
    hints = hint_commands(results)
    sec = {key: load_section(results, key, runs, hints) for key in RESULT_FILES}
    highlight, code_css = frame.highlighter()
    ctx = {"s": sec, "hints": hints, "results_dir": portable_path(results), "runs": None, "derivation": p5_derivation(),
           "code": code_appendix(no_code, full_code), "full_code": full_code and not no_code,
           "excerpts": {} if no_code else {k: frame.excerpts(k, highlight) for k in frame.EXCERPTS},
           "code_css": code_css if not no_code else "", "revision": git_revision(),
           "date": datetime.date.today().isoformat(), "people": frame.people(author, collaborators),
           "data_notes": frame.data_notes(sec)}
    ctx["runs"] = read_run_log(results)
    return ctx


SECTIONS = [("p1", "P1. A pretrained CNN: classification and feature maps", "p1.html.j2"),
            ("p2", "P2. Transfer learning on Oxford-IIIT Pet", "p2.html.j2"),
            ("p3", "P3. Training CNNs on CIFAR-10 with scratchnet", "p3.html.j2"),
            ("p4", "P4. Adversarial examples", "p4.html.j2"),
            ("p5", "P5. A hard-threshold RNN that adds binary numbers", "p5.html.j2")]


def figure_src(out_dir: Path):
    """Template helper: a figure's path as the HTML in out_dir refers to it (relative, so the HTML also
    opens in a browser)."""
    def src(path):
        if path is None:
            return None
        return Path(os.path.relpath(path, out_dir)).as_posix()
    return src


TEXT_WIDTH_MM = 176          # A4 minus the page margins in style.css


def figure_width(max_height_mm: float = 205, max_width_mm: float = TEXT_WIDTH_MM):
    """Template helper: a CSS width for a figure that keeps its aspect ratio and fits both the text width and
    `max_height_mm` (CSS max-width + max-height together would stretch the image instead)."""
    def width(path, max_h=max_height_mm, max_w=max_width_mm):
        try:
            from PIL import Image
            with Image.open(path) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - an unreadable image still gets a sane width
            return f"width: {max_w}mm"
        return f"width: {min(max_w, max_h * w / h):.1f}mm"
    return width


def glance(s: dict) -> list:
    """Cover-page rows (problem, headline result) generated from whatever results exist."""
    rows = []
    def ok(key):
        return s[key]["data"] if s[key]["ok"] else None
    d = ok("p1")
    if d and d.top:
        rows.append(("P1", d.headline()))
    d = ok("p2")
    if d:
        rows.append(("P2", p2_headline(d)))
    parts = [(label, ok(key)) for label, key in (("part 1", "p3_small"), ("part 2 (BN)", "p3_small_bn"),
                                                  ("part 3", "p3_better"))]
    parts = [f"{label} {fmt_pct(d.final_test_accuracy, 2)}" for label, d in parts if d]
    if parts:
        rows.append(("P3", "CIFAR-10 test accuracy: " + ", ".join(parts)))
    d = ok("p4")
    if d and d.images:
        rows.append(("P4", d.headline()))
    e = ok("p4_eot")
    if e and e.images:
        rows.append(("P4 EOT", p4_eot_facts(e).sentence))
    d = ok("p5")
    if d:
        rows.append(("P5", d.headline()))
    return rows


def render_html(ctx: dict, out_dir: Path) -> str:
    """Render every section on its own, so one malformed results file costs one section, not the report."""
    env = make_env()
    helpers = dict(field=field, src=figure_src(out_dir), width=figure_width(), p1_facts=P1Result.facts, p2_facts=p2_facts, p3_facts=p3_facts,
                   p3_ablation_facts=p3_ablation_facts, p3_twin_discussion=p3_twin_discussion,
                   p3_bn_sentence=p3_bn_sentence, p3_better_sentence=p3_better_sentence, p4_table=p4_table,
                   p4_eot_facts=p4_eot_facts, p4_method_facts=p4_method_facts,
                   p4_sweep_facts=p4_sweep_facts, p5_facts=P5Result.facts, plural=plural)
    citations = Citations()
    helpers["cite"] = citations.cite
    for note in ctx.get("data_notes", []):      # the cover's "About the data" is read first: its works come first
        citations.cite(note["dataset"])
    env.globals.update(helpers)
    bodies = []
    for key, title, template in SECTIONS:
        try:
            body = env.get_template(template).render(ctx, title=title, anchor=key)
        except Exception as e:  # noqa: BLE001 - any template/data error must only cost this section
            body = env.get_template("broken.html.j2").render(
                title=title, anchor=key, error=f"{type(e).__name__}: {e}")
        bodies.append({"key": key, "title": title, "html": body, "code": ctx["excerpts"].get(key)})
    try:
        rows = glance(ctx["s"])
    except Exception as e:  # noqa: BLE001 - the cover summary must never stop the report
        rows = [("note", f"summary unavailable ({type(e).__name__}: {e})")]
    return env.get_template("report.html.j2").render(ctx, sections=bodies, glance=rows,
                                                     references=citations.cited())


def build(results: Path, out_dir: Path, no_code: bool = False, pdf: bool = True, full_code: bool = False,
          author=None, collaborators=None) -> dict:
    """Write out_dir/report.html (and report.pdf); returns {'html', 'pdf', 'pages'}. author, collaborators:
    the cover's names (a string, comma-separated, or a list); none given is printed as such."""
    results = Path(results).resolve()
    if not results.is_dir():
        raise UserError(f"results folder {results} does not exist; run the problems first "
                        "(python report/make_report.py) or pass --results DIR")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = gather(results, no_code, full_code, author, collaborators)
    text = render_html(ctx, out_dir)
    html_path = out_dir / "report.html"
    atomic_write(html_path, lambda f: f.write(text), mode="w")
    out = {"html": html_path, "pdf": None, "pages": None}
    if pdf:
        import logging

        from weasyprint import HTML
        logging.getLogger("weasyprint").setLevel(logging.ERROR)   # font-subsetting chatter
        doc = HTML(string=text, base_url=str(out_dir)).render()
        pdf_path = out_dir / "report.pdf"
        atomic_write(pdf_path, doc.write_pdf)
        out.update(pdf=pdf_path, pages=len(doc.pages))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--results", type=Path, default=REPO / "results",
                   help="results root written by the problem scripts (default: results/)")
    p.add_argument("--out", type=output_folder, default=HERE, help="where report.html and report.pdf go (default: report/)")
    p.add_argument("--author", default=None, help="the author's name for the cover (default: printed as not given)")
    p.add_argument("--collaborators", default=None,
                   help="comma-separated names of collaborators for the cover (default: printed as none named)")
    p.add_argument("--full-code", action="store_true",
                   help="print every code file whole in Appendix B, the scratchnet library included (default: "
                        "each section's function excerpts and a list of the files)")
    p.add_argument("--no-code", action="store_true", help="leave all code out (quick previews, tests)")
    p.add_argument("--no-pdf", action="store_true", help="write the HTML only")
    args = p.parse_args(argv)
    out = build(args.results, args.out, no_code=args.no_code, pdf=not args.no_pdf, full_code=args.full_code,
                author=args.author, collaborators=args.collaborators)
    print(f"wrote {out['html']}" + (f" and {out['pdf']} ({out['pages']} pages)" if out["pdf"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
