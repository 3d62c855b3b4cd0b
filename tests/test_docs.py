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
    ("train_step_intel-avx512.json", "| net | batch | scratchnet | PyTorch, faster layout",
     ["batch", "scratchnet_ms", "torch_ms", "torch_layout", "ratio", "torch_nchw_ms", "torch_default_malloc_ms",
      "scratchnet_peak_step_mb", "torch_peak_step_mb"]),
    ("train_step_amd-zen4.json", "| net | batch | scratchnet | PyTorch NCHW, same process",
     ["batch", "scratchnet_ms", "torch_ms", "ratio", "torch_default_malloc_ms", "scratchnet_im2col_ms"]),
    ("train_step_cupy.json", "| net | batch | scratchnet | PyTorch, float32",
     ["batch", "scratchnet_ms", "torch_ms", "torch_tf32_ms", "speed_vs_torch"]),
])
def test_performance_tables_quote_bench_results(results, header, fields):
    """Each table cell is the committed bench result's number (blank where the JSON has null): rerunning
    the bench without updating docs/performance.md fails here. CPU files hold {machine, run, rows}; the
    GPU file is a list of rows."""
    data = json.loads((RESULTS / results).read_text())
    runs = {row["net"]: row for row in (data["rows"] if isinstance(data, dict) else data)}
    table = _table(PERFORMANCE.read_text(), header)
    assert {row[0] for row in table} == set(runs)
    for net, *cells in table:
        for field, cell in zip(fields, cells, strict=True):
            value = runs[net][field]
            assert (cell == "" if value is None else cell == value if isinstance(value, str)
                    else float(cell) == value), \
                f"performance.md quotes {field}={cell!r} for {net}; {results} has {value}"


def test_performance_norm_act_table_quotes_its_bench_results():
    """Section 6's table is bench/results/norm_act_intel-avx512.json, row by row."""
    rows = json.loads((RESULTS / "norm_act_intel-avx512.json").read_text())["rows"]
    table = _table(PERFORMANCE.read_text(), "| shape (NHWC) | layers | fused, fwd / bwd")
    assert len(table) == len(rows)
    for cells, r in zip(table, rows, strict=True):
        assert cells[0] == "x".join(map(str, r["shape_nhwc"]))
        assert cells[1] == {"relu": "BN + ReLU", "gelu": "BN + GELU"}[r["activation"]]
        assert cells[2:] == [f"{r['fused_fwd_ms']} / {r['fused_bwd_ms']}", f"{r['unfused_fwd_ms']} / {r['unfused_bwd_ms']}",
                             str(r["torch_fwd_bwd_ms"]), str(r["fused_vs_unfused"]), str(r["fused_vs_torch"])]


def test_performance_chunks_pool_table_quotes_its_bench_results():
    """Section 7's table is bench/results/chunks_pool_intel-avx512.json, row by row."""
    rows = json.loads((RESULTS / "chunks_pool_intel-avx512.json").read_text())["rows"]
    table = _table(PERFORMANCE.read_text(), "| layer | conv path | old, fwd / bwd")
    assert len(table) == len(rows)
    for cells, r in zip(table, rows, strict=True):
        assert cells == [r["layer"], r.get("path", ""), f"{r['old_fwd_ms']} / {r['old_bwd_ms']}",
                         f"{r['new_fwd_ms']} / {r['new_bwd_ms']}", str(r["new_vs_old"])]
