"""docs/walkthrough.ipynb: made from docs/walkthrough.md (one source), and it runs top to bottom in a fresh
Jupyter kernel within a minute, drawing every figure inline."""
import importlib.util
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

DOCS = Path(__file__).resolve().parents[1] / "docs"
NOTEBOOK = DOCS / "walkthrough.ipynb"
BUDGET_S = 60


def load_converter():
    spec = importlib.util.spec_from_file_location("walkthrough_notebook", DOCS / "notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_is_made_from_the_markdown():
    converter = load_converter()
    made = converter.build((DOCS / "walkthrough.md").read_text(encoding="utf-8"))
    assert NOTEBOOK.read_text(encoding="utf-8") == made, \
        "docs/walkthrough.ipynb is stale against docs/walkthrough.md: run python docs/notebook.py"


def test_notebook_holds_every_snippet_and_figure():
    """Every code block of the markdown is a cell, and every embedded figure is a cell that draws it."""
    text = (DOCS / "walkthrough.md").read_text(encoding="utf-8")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    snippets = [s.rstrip("\n") for s in re.findall(r"```python\n(.*?)```", text, flags=re.S)]
    figures = re.findall(r"^!\[[^\]]*\]\(figures/(\w+)\.png\)", text, flags=re.M)
    assert [c for c in code if c in snippets] == snippets
    assert [c for c in code if c.startswith("figures.")] == [f"figures.{name}()" for name in figures]
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code"), "committed without outputs"


def test_notebook_runs_top_to_bottom():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=BUDGET_S, kernel_name="python3",
                            resources={"metadata": {"path": str(DOCS)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    seconds = time.perf_counter() - start
    assert seconds < BUDGET_S, f"the notebook took {seconds:.0f} s, more than {BUDGET_S} s"

    stdout, drawn = "", 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            assert output.output_type != "error", cell.source
            stdout += output.get("text", "") if output.output_type == "stream" else ""
        if cell.source.startswith("figures."):
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), f"{cell.source} drew nothing"
            drawn += 1
    assert drawn == 7
    assert "[3. 5. 7.]" in stdout and "accuracy 100%" in stdout
