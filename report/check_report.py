"""Check a built report PDF the way a grader reads it: length, cover, references, and in each answer (the
P1-P5 sections without their code excerpts) no set-up or machine talk, no absolute path, and the items the
assignment asks for.

    python report/check_report.py [--pdf report/report.pdf] [--max-pages 45]

Prints one line per check (ok / FAIL and what was found) and exits 1 if any check fails, 2 on bad input.
It reads only the PDF's text, so it checks what the reader gets, whatever produced it.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from problems.common.cli import UserError, run_main  # noqa: E402

# Set-up, tooling and machine talk: it belongs in Appendix A at most, never in an answer.
SETUP_PHRASES = ["make report", "make run", "pip install", "offline default", "this machine", "on this machine",
                 "shared copy", "two-core", "2 cores", "scratchnet-numpy", "numpy backend", "code revision",
                 "report_runs.json", "site-packages", "PyPI", "SCRATCHNET_DATA", "--eval-only", "weights/p3_",
                 ".npz", "results folder", "feature cache", "not available on this machine", "recorded/", ".json"]
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(tmp|work|home|root|usr|Users)/")

TITLES = {"p1": "P1. A pretrained CNN", "p2": "P2. Transfer learning", "p3": "P3. Training CNNs",
          "p4": "P4. Adversarial examples", "p5": "P5. A hard-threshold RNN"}

# What each answer must contain, as (what, pattern) on its text with line breaks and hyphenation undone.
REQUIRED = {
    "p1": [("top-3 classes with probabilities", r"Top-3 classes.*?%.*?%.*?%"),
           ("feature maps at three depths", r"early layer.*middle layer.*late layer"),
           ("discussion of the maps", r"Discussion")],
    "p2": [("mean-per-class accuracy with an interval", r"mean-per-class accuracy of \d+\.\d\d% \(95% interval"),
           ("feature dimension", r"\d[\d,]*-dimensional"),
           ("backbone table with three measured backbones", r"(Lite0|lite0).*(Lite1|lite1).*(Lite2|lite2)")],
    "p3": [("the toolbox named", r"scratchnet"),
           ("part 1 test error", r"Part 1.*?error \d+\.\d\d%"),
           ("part 2 test error", r"Part 2.*?error \d+\.\d\d%"),
           ("the batch-norm control", r"Controlled comparison"),
           ("both filter grids", r"Part 1.*filters.*Part 2.*filters"),
           ("part 3 single view beside test-time augmentation", r"single view"),
           ("loss curves", r"loss per epoch")],
    "p4": [("the space shuttle target", r"space shuttle"),
           ("the assignment's update rule compared", r"assignment's update rule|probability.gradient"),
           ("robustness to flip, crop, rotation, greyscale", r"(?i)flip.*crop.*rot.*gr[ae]yscale"),
           ("success against eps", r"(?i)against eps|vs\.? eps|per eps")],
    "p5": [("the weights", r"The weights"), ("the verification", r"Verification")],
}


def _join(text: str) -> str:
    """Hyphenated line breaks joined, all whitespace runs one space."""
    return re.sub(r"\s+", " ", text.replace("\u2010\n", "").replace("-\n", "-"))


def pdf_pages(path: Path) -> list[str]:
    """The text of each page of the PDF."""
    try:
        import pypdf
        return [p.extract_text() or "" for p in pypdf.PdfReader(str(path)).pages]
    except Exception as e:  # pypdf raises many kinds on a damaged file
        raise UserError(f"{path}: not a readable PDF ({type(e).__name__})") from None


def answers(pages: list[str]) -> dict:
    """Each problem's answer text: the pages whose running footer names its section (the line before
    'page N of M'), footers removed, cut where 'Code for Pn' begins."""
    out = {key: [] for key in TITLES}
    for page in pages:
        lines = page.rstrip().splitlines()
        if len(lines) < 2 or not re.fullmatch(r"page \d+ of \d+", lines[-1].strip()):
            continue
        for key, title in TITLES.items():
            if lines[-2].startswith(title):
                out[key].append("\n".join(lines[:-2]))
    result = {}
    for key, parts in out.items():
        body = _join("\n".join(parts))
        cut = body.find(f"Code for {key.upper()}")
        result[key] = body[:cut] if cut >= 0 else ""
    return result


def checks(pdf: Path, max_pages: int) -> list[tuple[bool, str, str]]:
    """[(passed, check, detail)] for the report at `pdf`."""
    pages = pdf_pages(pdf)
    text = _join("\n".join(pages))
    out = [(len(pages) <= max_pages, f"at most {max_pages} pages", f"{len(pages)} pages")]
    cover = _join(pages[0]) if pages else ""
    for label in ("Author:", "Collaborators:"):
        m = re.search(re.escape(label) + r" ([^:]{1,80}?) (Collaborators|Date):", cover)
        out.append((m is not None, f"cover: {label[:-1].lower()} line", m.group(1) if m else "not found"))
    refs = _join("\n".join(p for p in pages if re.search(r"\nReferences\s*\npage \d+ of \d+\s*$", p)))
    entries = re.findall(r"\b(\d+)\. ", refs)
    out.append((len(set(entries)) >= 5, "references listed", f"{len(set(entries))} entries"))
    paths = ABSOLUTE_PATH.findall(text)
    out.append((not paths, "no absolute paths", ", ".join(sorted(set(paths))) or "none"))
    parts = answers(pages)
    for key, body in parts.items():
        if not body:
            out.append((False, f"{key.upper()}: answer found", "heading or code part not found"))
            continue
        talk = [p for p in SETUP_PHRASES if p.lower() in body.lower()]
        out.append((not talk, f"{key.upper()}: no set-up or machine talk", ", ".join(talk) or "none"))
        cited = re.findall(r"\[\d+(?:, ?\d+)*\]", body)
        out.append((bool(cited), f"{key.upper()}: cites its sources", f"{len(cited)} citations"))
        missing_box = "Not yet produced" in body or "Figure not found" in body
        out.append((not missing_box, f"{key.upper()}: no 'not yet produced' box", "found" if missing_box else "none"))
        for what, pattern in REQUIRED[key]:
            found = re.search(pattern, body, flags=re.S)
            out.append((found is not None, f"{key.upper()}: {what}", "present" if found else "missing"))
    percents = re.findall(r"\b\d+\.\d%|\b\d+\.\d{3,}%", "".join(parts.values()))
    out.append((not percents, "percentages with 2 decimals", ", ".join(sorted(set(percents))[:8]) or "all"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pdf", type=Path, default=HERE / "report.pdf", help="the report (default: report/report.pdf)")
    p.add_argument("--max-pages", type=int, default=45, help="page limit (default 45)")
    args = p.parse_args(argv)
    if not args.pdf.is_file():
        raise UserError(f"{args.pdf} does not exist; build the report first (make run)")
    results = checks(args.pdf, args.max_pages)
    for passed, what, detail in results:
        print(f"{'ok  ' if passed else 'FAIL'}  {what}: {detail}")
    failed = sum(not passed for passed, _, _ in results)
    print(f"{len(results) - failed} of {len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
