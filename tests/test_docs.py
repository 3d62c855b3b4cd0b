"""Every ```python block of the teaching walkthrough and of the performance guide runs, in order, in one
namespace per document: they cannot go stale. The performance guide's tables quote bench/results/*.json."""
import json
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC = DOCS / "walkthrough.md"
PERFORMANCE = DOCS / "performance.md"
RESULTS = DOCS.parent / "bench" / "results"


def blocks(doc=DOC):
    return re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)


def run_blocks(doc):
    namespace = {}
    for i, code in enumerate(blocks(doc)):
        try:
            exec(compile(code, f"{doc.name} block {i + 1}", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message says which block broke
            pytest.fail(f"{doc.name} block {i + 1} failed: {type(e).__name__}: {e}\n{code}")
    return namespace


def test_walkthrough_has_code():
    assert len(blocks()) >= 10


def test_walkthrough_snippets_run(capsys):
    run_blocks(DOC)
    out = capsys.readouterr().out
    assert "[3. 5. 7.]" in out
    assert "accuracy 100%" in out


def test_performance_guide_snippets_run(capsys):
    """The speed sections that left the walkthrough keep their snippets (sum_blocks, F(2, 3), a Winograd
    tile and layer against the reference, the fused SGD kernel) and still run them."""
    assert len(blocks(PERFORMANCE)) >= 5
    run_blocks(PERFORMANCE)
    out = capsys.readouterr().out
    assert "285.0" in out
    assert out.count("True") >= 6


def test_walkthrough_links_to_performance_guide():
    text = DOC.read_text()
    assert "(performance.md)" in text
    assert "## 8." not in text  # speed and GPU live in performance.md, not in the course text


def _table(text, header_start):
    """Rows (lists of cells) of the markdown table whose header line starts with header_start."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


@pytest.mark.parametrize("results, header, fields", [
    ("train_step.json", "| net | batch | scratchnet | PyTorch, same process",
     ["batch", "scratchnet_ms", "torch_ms", "ratio", "torch_default_malloc_ms", "scratchnet_im2col_ms"]),
    ("train_step_cupy.json", "| net | batch | scratchnet | PyTorch, float32",
     ["batch", "scratchnet_ms", "torch_ms", "torch_tf32_ms", "speed_vs_torch"]),
])
def test_performance_tables_quote_bench_results(results, header, fields):
    """Each table cell is the committed bench result's number (blank where the JSON has null): rerunning
    the bench without updating docs/performance.md fails here."""
    runs = {row["net"]: row for row in json.loads((RESULTS / results).read_text())}
    table = _table(PERFORMANCE.read_text(), header)
    assert {row[0] for row in table} == set(runs)
    for net, *cells in table:
        for field, cell in zip(fields, cells, strict=True):
            value = runs[net][field]
            assert (cell == "" if value is None else float(cell) == value), \
                f"performance.md quotes {field}={cell!r} for {net}; {results} has {value}"
