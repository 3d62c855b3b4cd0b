"""The library knows nothing of the assignment: no file under scratchnet/ names a problem (problem 3, P1..P5)
or points into problems/; the problems' networks and recipes live in problems/."""
import re
from pathlib import Path

import pytest

import scratchnet

ROOT = Path(scratchnet.__file__).parent
PROBLEM_NAMES = re.compile(r"\bproblems?\s+[1-5]\b|\bP[1-5]\b|\bproblems[/.]|\bpart\s+[1-3]\b", re.IGNORECASE)


def problem_mentions(text: str) -> list[str]:
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}" for m in PROBLEM_NAMES.finditer(text)]


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_library_file_names_a_problem(path):
    assert problem_mentions(path.read_text(encoding="utf-8")) == []


def test_the_pattern_catches_what_it_should():
    assert problem_mentions("The CIFAR-10 networks of problem 3\nsee problems/p3_small_cnn.py")
    assert problem_mentions("the better P3 net") and problem_mentions("P3 part 3: a net")
    assert problem_mentions("from problems.p3 import models")
    assert problem_mentions("conv 3x3, P2P traffic, 3 problems solved, a Part of it") == []


def test_the_p3_networks_left_the_library():
    assert not (ROOT / "models.py").exists()
    from problems.p3 import models
    assert models.better_net.__module__ == "problems.p3.models"
