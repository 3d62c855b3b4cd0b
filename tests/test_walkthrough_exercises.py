"""The walkthrough's exercises (end of sections 3, 4 and 5) and their solutions (end of the walkthrough).

The solution cells run on their own here (their asserts are the checks each exercise asks for), and the
functions they define are checked on more cases than the cells try: every stride and padding for the
1-D input gradient, overlapping and tie-heavy windows for max pooling, random statistics for eval-mode
batch norm.
"""
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from scratchnet.kernels import conv, norm, pool

DOC = Path(__file__).resolve().parents[1] / "docs" / "walkthrough.md"


def sections():
    """{heading: text} of the walkthrough's ## sections."""
    parts = re.split(r"^## ", DOC.read_text(), flags=re.M)[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


def solutions_text():
    return next(text for heading, text in sections().items() if heading.startswith("Solutions"))


@pytest.fixture(scope="module")
def solved():
    namespace = {}
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", solutions_text(), flags=re.S)):
        exec(compile(code, f"solutions block {i + 1}", "exec"), namespace)
    return namespace


def test_sections_3_to_5_end_with_exercises_that_have_solutions():
    found = {}
    for heading, text in sections().items():
        number = re.match(r"(\d+)\. ", heading)
        if number:
            found[int(number.group(1))] = re.findall(r"\*\*Exercise (\d+\.\d+)\*\*", text)
    assert {n for n, labels in found.items() if labels} == {3, 4, 5}
    for n in (3, 4, 5):
        assert all(label.startswith(f"{n}.") for label in found[n])
        text = next(t for h, t in sections().items() if h.startswith(f"{n}. "))
        assert "### Exercises" in text and text.index("### Exercises") > text.rindex("```")
    exercises = [label for n in (3, 4, 5) for label in found[n]]
    answers = re.findall(r"^\*\*(\d+\.\d+)\.\*\*", solutions_text(), flags=re.M)
    assert answers == exercises, "one solution per exercise, in order"


def test_solution_cells_run_on_their_own(solved):
    for name in ("dx_1d", "maxpool_backward_loop", "bn_dx_eval"):
        assert callable(solved[name])


def test_exercise_3_1_dx_by_hand(solved):
    w0, w1, w2 = solved["w1d"]
    d0, d1 = solved["d0"], solved["d1"]
    assert np.allclose(solved["by_hand"], [d0 * w0, d0 * w1, d0 * w2 + d1 * w0, d1 * w1, d1 * w2])
    assert np.allclose(solved["dx1d"], solved["by_hand"])


def test_exercise_3_3_dx_1d_every_stride_and_padding(solved):
    cases = [(n, k, s, p) for n, k, s, p in itertools.product(range(3, 10), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2, 4))
             if n + 2 * p >= k]
    for n, k, s, p in cases:
        rng = np.random.default_rng([n, k, s, p])
        a, w = rng.standard_normal(k), rng.standard_normal(k)
        x = rng.standard_normal((1, n, n, 1))
        out, cache = conv.conv2d_forward(x, np.outer(a, w).reshape(k, k, 1, 1), None, stride=s, padding=p)
        r, c = rng.standard_normal(out.shape[1]), rng.standard_normal(out.shape[2])
        dx = conv.conv2d_backward(np.outer(r, c).reshape(out.shape), cache)[0][0, :, :, 0]
        assert np.allclose(dx, np.outer(solved["dx_1d"](r, a, n, s, p), solved["dx_1d"](c, w, n, s, p))), \
            f"dx_1d is wrong for n={n}, k={k}, s={s}, p={p}"
    assert len(cases) > 300


@pytest.mark.parametrize("k, s", [(2, 2), (2, 1), (3, 2), (3, 1), (3, 3), (4, 2)])
def test_exercise_4_2_maxpool_loop_with_ties_and_overlaps(solved, k, s):
    rng = np.random.default_rng(k * 10 + s)
    x = rng.integers(0, 3, (2, 9, 8, 3)).astype(float)    # three values: ties in nearly every window
    out, cache = pool.max_pool2d_forward(x, k, s)
    dout = rng.standard_normal(out.shape)
    assert np.allclose(solved["maxpool_backward_loop"](x, dout, k, s), pool.max_pool2d_backward(dout, cache))


def test_exercise_5_1_both_sums(solved):
    dx, xhat = solved["dxb"].reshape(-1, 3), solved["xhatb"]
    assert np.abs(dx.sum(axis=0)).max() < 1e-12
    # not exactly 0: eps keeps sigma above the batch's standard deviation
    assert np.abs((dx * xhat).sum(axis=0)).max() > 1e-6


@pytest.mark.parametrize("seed", range(5))
def test_exercise_5_2_eval_mode(solved, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4, 4, 6))
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    rm, rv = rng.standard_normal(6), rng.uniform(0.05, 3.0, 6)
    _, cache = norm.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), training=False, eps=1e-3)
    dy = rng.standard_normal(x.shape)
    assert np.allclose(solved["bn_dx_eval"](dy, gamma, rv, 1e-3), norm.batchnorm_backward(dy, cache)[0])


def test_exercise_5_3_shortcut_is_wrong_and_backward_right(solved):
    at = solved["at"]
    assert abs(solved["numeric"] - solved["dx4"][at]) < 1e-6
    assert abs(solved["numeric"] - solved["shortcut"]) > 1.0
