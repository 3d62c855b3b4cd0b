"""Make docs/walkthrough.ipynb from docs/walkthrough.md: the markdown is the one source, the notebook is made.

    python docs/notebook.py            # (re)write docs/walkthrough.ipynb
    python docs/notebook.py --check    # exit status 1 if the committed notebook is not what the markdown makes

The rules, all of them:
- each ```python block becomes a code cell, unchanged;
- a line `![caption](figures/NAME.png)` becomes a code cell `figures.NAME()`, which draws that figure
  inline with docs/figures.py, from scratchnet's own ops (the markdown shows the committed PNG instead);
- the rest is markdown, one cell per heading (## or ###) and what follows it;
- a first code cell turns on inline figures and imports docs/figures.py.
The notebook is written without outputs, with fixed cell ids, so the same markdown always makes the same
bytes (tests/test_walkthrough_notebook.py checks that, and runs the notebook top to bottom).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
MARKDOWN = HERE / "walkthrough.md"
NOTEBOOK = HERE / "walkthrough.ipynb"

FENCE = re.compile(r"^```python\n(.*?)^```\n?", re.S | re.M)
FIGURE = re.compile(r"^!\[[^\]]*\]\(figures/([A-Za-z_][A-Za-z0-9_]*)\.png\)\s*$")
SETUP = ("%matplotlib inline\n"
         "import figures  # docs/figures.py: every figure below, drawn by scratchnet's own code")
METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}


def _markdown_and_figures(text: str):
    """Split prose into ('markdown', text) cells at headings and ('code', ...) cells at figure lines."""
    cells, lines = [], []

    def flush():
        block = "\n".join(lines).strip("\n")
        if block.strip():
            cells.append(("markdown", block))
        lines.clear()

    for line in text.split("\n"):
        figure = FIGURE.match(line)
        if figure:
            flush()
            cells.append(("code", f"figures.{figure.group(1)}()"))
        elif line.startswith(("## ", "### ")):
            flush()
            lines.append(line)
        else:
            lines.append(line)
    flush()
    return cells


def cells(markdown: str):
    """The (kind, source) cells the markdown makes, in order, the set-up cell first."""
    out, pos = [("code", SETUP)], 0
    for block in FENCE.finditer(markdown):
        out += _markdown_and_figures(markdown[pos:block.start()])
        out.append(("code", block.group(1).rstrip("\n")))
        pos = block.end()
    out += _markdown_and_figures(markdown[pos:])
    return out


def build(markdown: str) -> str:
    """The notebook's text (JSON, nbformat 4) for this markdown."""
    made = []
    for i, (kind, source) in enumerate(cells(markdown)):
        new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        made.append(new(source, id=f"cell-{i:03d}"))
    nb = nbformat.v4.new_notebook(cells=made, metadata=METADATA)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = build(MARKDOWN.read_text(encoding="utf-8"))
    if argv == ["--check"]:
        same = NOTEBOOK.exists() and NOTEBOOK.read_text(encoding="utf-8") == text
        print(f"{NOTEBOOK.name} is {'in sync with' if same else 'stale against'} {MARKDOWN.name}")
        return 0 if same else 1
    if argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    NOTEBOOK.write_text(text, encoding="utf-8")
    print(NOTEBOOK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
