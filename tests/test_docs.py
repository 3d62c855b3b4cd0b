"""Every ```python block of the teaching walkthrough runs, in order, in one namespace: it cannot go stale."""
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "walkthrough.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_walkthrough_has_code():
    assert len(blocks()) >= 10


def test_walkthrough_snippets_run(capsys):
    namespace = {}
    for i, code in enumerate(blocks()):
        try:
            exec(compile(code, f"{DOC.name} block {i + 1}", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message says which block broke
            pytest.fail(f"walkthrough block {i + 1} failed: {type(e).__name__}: {e}\n{code}")
    out = capsys.readouterr().out
    assert "[3. 5. 7.]" in out
