"""P5's fixture results for the report tests: a synthetic P5Result, written as the script writes it."""
from pathlib import Path

import numpy as np

from problems.p5.result import Example, Learned, LearnRun, P5Result, RandomCheck, Step, Weights


def result() -> P5Result:
    """A hand-set adder that passes every check, and two learning runs of which seed 1 is perfect."""
    w = {"U": [[1.0, 1.0]] * 3, "W": [[0.0, 1.0, 0.0]] * 3, "b_h": [-0.5, -1.5, -2.5], "v": [1.0, -1.0, 1.0],
         "b_y": -0.5, "h_0": [0.0, 0.0, 0.0]}
    lw = Weights(**{k: (np.array(v) * 5.123).tolist() for k, v in w.items()})
    return P5Result(
        command="problems/p5_rnn_adder.py --learn", weights=Weights(**w),
        example=Example(a="100111", b="110010", sum="1011001", correct=True, input_1=[1, 1, 1, 0, 0, 1, 0],
                        input_2=[0, 1, 0, 0, 1, 1, 0], output=[1, 0, 0, 1, 1, 0, 1],
                        steps=[Step(t=t, x_t=[1, 0], h_t=[1, 0, 0], y_t=1) for t in range(7)]),
        additions=[], verified_bits=10, pairs_checked=1048576, errors=0, first_error=None, verify_seconds=0.4,
        random_checks=[RandomCheck(bits=64, pairs_checked=200, errors=0),
                       RandomCheck(bits=200, pairs_checked=200, errors=0)],
        proof_all_lengths=True, proof_reason="", proof_states={"[0, 0, 0]": 0, "[1, 1, 0]": 1}, min_margin=0.5,
        figures={}, seeds=2, perfect_seeds=1, success_rate=0.5, learn_method="sigmoid",
        learn_runs=[LearnRun(seed=0, steps_run=2000, final_loss=0.22, errors_exhaustive=598576, pairs_checked=1048576,
                             proof_all_lengths=False, perfect=False, proof_reason="state (0, 0, 1) wrong",
                             weights=Weights(**w)),
                    LearnRun(seed=1, steps_run=450, final_loss=0.007, errors_exhaustive=0, pairs_checked=1048576,
                             proof_all_lengths=True, perfect=True, weights=lw, n_states=2, min_margin=0.61)],
        learned_weights=lw, learned=Learned(seed=1, weights=lw, min_margin=0.61,
                                            states={"[0, 0, 0]": 0, "[0, 0, 1]": 1}),
        discussion="P5 discussion text.")


def write(root: Path) -> None:
    """P5's results under root, as its script writes them."""
    (root / "p5").mkdir(parents=True, exist_ok=True)
    result().write(root / "p5" / "results.json")
