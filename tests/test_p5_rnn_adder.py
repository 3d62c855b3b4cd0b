"""P5: the hand-set hard-threshold RNN adds binary numbers: the assignment's example step by step, every pair
up to 10 bits, long random pairs, the all-lengths automaton proof, the CLI's errors, and learning."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from problems.p5 import adder
from scratchnet.rnn import HardThresholdRNN

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "problems" / "p5_rnn_adder.py"
WEIGHTS = REPO / "weights" / "rnn_adder.json"


@pytest.fixture(scope="module")
def net():
    return HardThresholdRNN.from_weights(adder.load_weights(WEIGHTS))


def test_weights_file_interface():
    w = json.loads(WEIGHTS.read_text())
    assert set(w) == {"U", "W", "b_h", "v", "b_y", "h_0"}
    assert np.shape(w["U"]) == (3, 2) and np.shape(w["W"]) == (3, 3)
    assert np.shape(w["b_h"]) == np.shape(w["v"]) == np.shape(w["h_0"]) == (3,)
    assert isinstance(w["b_y"], (int, float))


def test_encoding_round_trip():
    assert adder.int_to_bits(39, 7) == [1, 1, 1, 0, 0, 1, 0]
    assert adder.bits_to_int([1, 0, 0, 1, 1, 0, 1]) == 89
    big = 2**200 - 12345
    assert adder.bits_to_int(adder.int_to_bits(big, 201)) == big
    assert adder.n_steps([(39, 50)]) == 7 and adder.n_steps([(0, 0)]) == 1
    x = adder.encode_pairs([(39, 50), (1, 0)])
    assert x.shape == (2, 7, 2) and x[1, :, 0].tolist() == [1, 0, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(adder.encode_arrays(np.array([39]), np.array([50]), 7), x[:1])


def test_assignment_example_step_by_step(net):
    """100111 + 110010 = 1011001, inputs and outputs exactly as the assignment lists them, and each h_t."""
    ex = adder.example(net)
    assert ex["input_1"] == [1, 1, 1, 0, 0, 1, 0]
    assert ex["input_2"] == [0, 1, 0, 0, 1, 1, 0]
    assert ex["output"] == [1, 0, 0, 1, 1, 0, 1]
    assert ex["sum"] == "1011001" and ex["correct"]
    # column sums s_t = a_t + b_t + carry: 1, 2, 2, 1, 1, 2, 1 -> h_t = [s>=1, s>=2, s>=3]
    expected_h = [[1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0]]
    assert [r["h_t"] for r in ex["steps"]] == expected_h
    assert [r["t"] for r in ex["steps"]] == list(range(7))


def test_exhaustive_10_bits(net):
    check = adder.verify_exhaustive(net, 10)
    assert check["pairs_checked"] == 2**20
    assert check["errors"] == 0 and check["first_error"] is None


def test_exhaustive_check_catches_a_broken_net(net):
    broken = HardThresholdRNN.from_weights({**net.weights(), "b_y": 0.5})  # output never fires for s = 1
    check = adder.verify_exhaustive(broken, 3)
    assert check["errors"] > 0 and check["first_error"] is not None
    assert not adder.prove_all_lengths(broken)["ok"]


@pytest.mark.parametrize("bits", [64, 200])
def test_random_long_numbers(net, bits):
    rng = np.random.default_rng(bits)
    res = adder.verify_random(net, bits, 100, rng)
    assert res == {"bits": bits, "pairs_checked": 100, "errors": 0}
    pairs = [(2**bits - 1, 2**bits - 1), (2**bits - 1, 1), (0, 2**bits - 1)]  # longest carry chains
    sums, *_ = adder.add(net, pairs)
    assert sums == [a + b for a, b in pairs]


def _old_verify_random(net, bits, count, rng):
    """verify_random as it was before batching: each number from `bits` single draws, all pairs at once."""
    def draw():
        return int("".join(map(str, rng.integers(0, 2, bits))), 2)
    pairs = [(draw(), draw()) for _ in range(count)]
    y, _ = net.run_array(adder.encode_pairs(pairs, bits + 1))
    return pairs, sum(adder.bits_to_int(row) != a + b for row, (a, b) in zip(y, pairs))


@pytest.mark.parametrize("bits", [3, 7, 64, 200])
def test_random_pairs_are_drawn_as_before_whatever_the_batch(net, bits):
    """Batched drawing gives the same pairs from a seed as drawing number by number did (so a seed's results
    are unchanged) and leaves the generator in the same state; a broken net's error count agrees too."""
    broken = HardThresholdRNN.from_weights({**net.weights(), "b_h": [-0.5, -1.5, -0.5]})  # some sums wrong
    rng_old, rng_new = np.random.default_rng(bits), np.random.default_rng(bits)
    pairs, errors = _old_verify_random(broken, bits, 50, rng_old)
    seen = []
    run_array = broken.run_array
    broken.run_array = lambda x: (seen.append(x.copy()), run_array(x))[1]
    res = adder.verify_random(broken, bits, 50, rng_new, batch_cells=7 * (bits + 1) + 3)  # batches of 7 pairs
    assert res == {"bits": bits, "pairs_checked": 50, "errors": errors}
    assert len(seen) == 8 and 0 < errors <= 50
    x = np.concatenate(seen)
    assert [(adder.bits_to_int(r[:, 0]), adder.bits_to_int(r[:, 1])) for r in x] == pairs
    assert rng_new.integers(0, 2**62) == rng_old.integers(0, 2**62)
    assert adder.verify_random(net, bits, 0, rng_new) == {"bits": bits, "pairs_checked": 0, "errors": 0}


def test_all_lengths_proof(net):
    proof = adder.prove_all_lengths(net)
    assert proof["ok"], proof["reason"]
    assert proof["states"] == {(0, 0, 0): 0, (1, 0, 0): 0, (1, 1, 0): 1, (1, 1, 1): 1}
    assert adder.min_margin(net, proof) == pytest.approx(0.5)


@pytest.mark.parametrize("text,binary,value", [("101", True, 5), ("0", True, 0), ("1_000", False, 1000),
                                               (" 42 ", False, 42)])
def test_parse_number(text, binary, value):
    assert adder.parse_number(text, binary) == value


def _run(*args, tmp_path):
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["102", "11", "--binary"], "digit"),
    (["--", "-5", "3"], "negative"),
    (["", "3"], "empty"),
    (["12", "abc"], "not a whole number"),
    (["1", "2", "3"], "pairs"),
    (["1", "2", "--weights", "no/such.json"], "not found"),
    (["--verify", "20"], "too large"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    r = _run(*args, tmp_path=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert "Traceback" not in r.stderr


def test_cli_adds_and_writes_results(tmp_path):
    r = _run("1011", "111", "--binary", "--verify", "4", "--random-pairs", "5", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1011 + 111 = 10010" in r.stdout and "1011001" in r.stdout
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    for key in ("weights", "example", "verified_bits", "pairs_checked", "errors", "discussion", "figures"):
        assert key in res
    assert res["verified_bits"] == 4 and res["pairs_checked"] == 256 and res["errors"] == 0
    assert res["additions"][0]["sum"] == 18 and res["example"]["output"] == [1, 0, 0, 1, 1, 0, 1]


def test_learning_smoke_few_steps():
    run = adder.train_adder(0, steps=20, check_every=10)
    assert run["steps_run"] == 20 and len(run["losses"]) == 20 and np.isfinite(run["losses"]).all()
    assert run["net"].surrogate is None
    run = adder.train_adder(0, steps=5, method="ste", check_every=5)
    assert np.isfinite(run["losses"]).all()


def test_learning_finds_a_perfect_adder():
    """Seed 1 of the default recipe reaches an exact adder in a few hundred steps (deterministic NumPy)."""
    summary = adder.learn(1, first_seed=1, verify_bits=8)  # stops early, at step 450
    row = summary["runs"][0]
    assert row["perfect"] and row["errors_exhaustive"] == 0 and row["proof_all_lengths"]
    assert summary["learned"]["weights"].keys() == {"U", "W", "b_h", "v", "b_y", "h_0"}


def test_cli_learn_writes_learn_keys(tmp_path):
    r = _run("--verify", "3", "--random-pairs", "2", "--learn", "--seeds", "1", "--steps", "10",
             tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["seeds"] == 1 and res["perfect_seeds"] in (0, 1) and "learned_weights" in res
