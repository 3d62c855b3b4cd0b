"""problems.common.result: typed results round-trip through JSON, and what does not match is refused."""
import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from problems.common.result import Result, ResultError


@dataclass
class Row(Result):
    name: str
    prob: float


@dataclass
class Example(Result):
    rows: list[Row]
    counts: dict[str, int]
    note: str | None = None
    pair: tuple[int, float] = (0, 0.0)
    extra: Any = None
    loss: float = 0.0
    tags: list[str] = field(default_factory=list)


def test_round_trip_and_nan(tmp_path):
    r = Example(rows=[Row("a", 0.5)], counts={"x": 2}, pair=(1, 2.5), extra={"k": [1]}, loss=math.nan)
    r.write(tmp_path / "r.json")
    back = Example.read(tmp_path / "r.json")
    assert back.rows == [Row("a", 0.5)] and back.counts == {"x": 2} and back.pair == (1, 2.5)
    assert math.isnan(back.loss) and back.note is None and back.extra == {"k": [1]}   # null -> NaN for float
    assert Example.from_json(back.to_json()).rows[0].prob == 0.5


@pytest.mark.parametrize("obj, words", [
    ({"counts": {}}, "missing field 'rows'"),
    ({"rows": [], "counts": {}, "renamed": 1}, "unknown field(s) renamed"),
    ({"rows": [{"name": "a", "prob": "high"}], "counts": {}}, "Example.rows[0].prob: expected float"),
    ({"rows": [], "counts": {"x": 1.5}}, "Example.counts.x: expected int"),
    ({"rows": [], "counts": {"x": True}}, "expected int"),
    ({"rows": {}, "counts": {}}, "Example.rows: expected a list"),
    ({"rows": [], "counts": {}, "pair": [1]}, "expected a list of 2"),
    ([], "expected an object"),
])
def test_mismatches_name_the_field(obj, words):
    with pytest.raises(ResultError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Example.from_json(obj)


def test_unreadable_file_is_a_result_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ResultError, match="not a readable JSON"):
        Example.read(tmp_path / "bad.json")
