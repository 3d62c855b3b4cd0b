"""Binary addition with scratchnet's hard-threshold RNN: bit encoding, exact checks, and learning the weights.

Encoding (the assignment's): two numbers a, b are fed least-significant bit first as x_t = [a_t, b_t],
t = 0..T-1, with T = (bits of the longer number) + 1, so the last step (both bits 0) emits the final
carry. The target output y_t is bit t of a + b.

The exact checks use the true step function; learning uses a surrogate gradient (scratchnet.functional.Step).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scratchnet import optim
from scratchnet import functional as F
from scratchnet.autograd import Tensor
from scratchnet.rnn import HardThresholdRNN

WEIGHT_KEYS = ("U", "W", "b_h", "v", "b_y", "h_0")
EXAMPLE = ("100111", "110010")  # the assignment's example, binary, most significant bit first
# verify_random's batch size in (pair x step) cells: a batch's arrays take about 40 MB, whatever the pair count
RANDOM_BATCH_CELLS = 1 << 19


# ----------------------------------------------------------------------------------------- encoding
def n_steps(pairs) -> int:
    """Steps T for a batch of (a, b): the longest operand's bit length + 1 (room for the final carry)."""
    return max(max(a.bit_length(), b.bit_length()) for a, b in pairs) + 1


def int_to_bits(n: int, steps: int) -> list[int]:
    """Bits of n >= 0, least significant first, padded with 0s to `steps`."""
    if n < 0:
        raise ValueError(f"int_to_bits: expected a number >= 0, got {n}")
    if n.bit_length() > steps:
        raise ValueError(f"int_to_bits: {n} needs {n.bit_length()} bits, only {steps} steps")
    return [(n >> t) & 1 for t in range(steps)]


def bits_to_int(bits) -> int:
    """Inverse of int_to_bits: least-significant-first 0/1 values -> Python int (any length)."""
    return sum(int(round(float(b))) << t for t, b in enumerate(bits))


def encode_pairs(pairs, steps: int | None = None, dtype=np.float64) -> np.ndarray:
    """Pairs of Python ints (any size) -> x (B, T, 2) of 0/1, x[:, t] = [bit t of a, bit t of b]."""
    steps = steps or n_steps(pairs)
    return np.array([[ba, bb] for a, b in pairs for ba, bb in zip(int_to_bits(a, steps), int_to_bits(b, steps))],
                    dtype=dtype).reshape(len(pairs), steps, 2)


def encode_arrays(a: np.ndarray, b: np.ndarray, steps: int, dtype=np.float64) -> np.ndarray:
    """Vectorised encode_pairs for int64 arrays a, b (B,) (numbers below 2^62) -> x (B, T, 2)."""
    shifts = np.arange(steps)
    x = np.empty((a.size, steps, 2), dtype=dtype)
    x[:, :, 0] = (a[:, None] >> shifts) & 1
    x[:, :, 1] = (b[:, None] >> shifts) & 1
    return x


def decode_arrays(y: np.ndarray) -> np.ndarray:
    """Output bits y (B, T) with T <= 62 -> int64 numbers (B,)."""
    return (y.astype(np.int64) << np.arange(y.shape[1])).sum(axis=1)


def parse_number(text: str, binary: bool) -> int:
    """One operand from the command line; ValueError with a one-line reason when it is not a number >= 0."""
    s = text.strip().replace("_", "")
    if not s:
        raise ValueError("empty number; expected a whole number >= 0" + (" written with 0/1 digits" if binary else ""))
    if s.startswith("-"):
        raise ValueError(f"negative number {text!r}; the adder takes whole numbers >= 0")
    if binary:
        bad = sorted(set(s) - {"0", "1"})
        if bad:
            raise ValueError(f"binary number {text!r} has digit(s) {''.join(bad)!r}; expected only 0 and 1")
        return int(s, 2)
    if not s.isdigit():
        raise ValueError(f"{text!r} is not a whole number >= 0 in decimal (use --binary for 0/1 strings)")
    try:
        return int(s)
    except ValueError:  # Python refuses to parse very long decimal strings (sys.get_int_max_str_digits)
        raise ValueError(f"the decimal number {s[:12]}... has {len(s)} digits, more than Python converts; "
                         "give it with --binary instead") from None


# ------------------------------------------------------------------------------------------ weights
def load_weights(path) -> dict:
    """weights/rnn_adder.json -> dict; ValueError naming the problem if missing or malformed."""
    if not str(path).strip():
        raise ValueError(f"--weights is empty; expected a JSON file with keys {', '.join(WEIGHT_KEYS)}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"weights file {path} is a folder; expected a JSON file with keys {', '.join(WEIGHT_KEYS)}")
    if not path.is_file():
        raise ValueError(f"weights file {path} not found; expected a JSON file with keys {', '.join(WEIGHT_KEYS)}")
    try:
        weights = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"weights file {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"weights file {path} is not UTF-8 text; expected a JSON file") from None
    if not isinstance(weights, dict):
        raise ValueError(f"weights file {path} must hold a JSON object with keys {', '.join(WEIGHT_KEYS)}")
    try:  # validates keys, shapes and values: the assignment's cell, 2 inputs and 3 hidden units
        HardThresholdRNN.from_weights(weights, n_in=2, n_hidden=3)
    except ValueError as e:
        raise ValueError(f"weights file {path}: {e}") from None
    return {k: weights[k] for k in WEIGHT_KEYS}


# ----------------------------------------------------------------------------------- running, tables
def add(net: HardThresholdRNN, pairs):
    """Run the net on pairs of ints (padded to one common T); -> (sums list, x, y, h arrays)."""
    x = encode_pairs(pairs, dtype=net.U.dtype)
    y, h = net.run_array(x)
    return [bits_to_int(row) for row in y], x, y, h


def step_table(x: np.ndarray, y: np.ndarray, h: np.ndarray) -> list[dict]:
    """One sequence's steps as rows {t, x_t, h_t, y_t} of ints (x (T, 2), y (T,), h (T, H))."""
    return [{"t": t, "x_t": [int(v) for v in x[t]], "h_t": [int(v) for v in h[t]], "y_t": int(y[t])}
            for t in range(len(y))]


def format_table(rows: list[dict]) -> str:
    """The step table as aligned text, like the assignment's example."""
    lines = ["  t  x_t    h_t      y_t"]
    lines += [f"{r['t']:3d}  {r['x_t'][0]} {r['x_t'][1]}   {' '.join(map(str, r['h_t']))}    {r['y_t']}" for r in rows]
    return "\n".join(lines)


def example(net: HardThresholdRNN) -> dict:
    """The assignment's example 100111 + 110010 = 1011001: inputs, outputs and the step table."""
    a, b = (int(s, 2) for s in EXAMPLE)
    sums, x, y, h = add(net, [(a, b)])
    return {"a": EXAMPLE[0], "b": EXAMPLE[1], "sum": format(sums[0], "b"), "correct": sums[0] == a + b,
            "input_1": [int(v) for v in x[0, :, 0]], "input_2": [int(v) for v in x[0, :, 1]],
            "output": [int(v) for v in y[0]], "steps": step_table(x[0], y[0], h[0])}


# --------------------------------------------------------------------------------------- exact checks
def verify_exhaustive(net: HardThresholdRNN, bits: int, chunk: int = 1 << 16) -> dict:
    """Every pair a, b < 2^bits through the net with the true step (T = bits + 1); counts of wrong sums."""
    if not 1 <= bits <= 14:
        raise ValueError(f"verify: bits must be between 1 and 14 (4^bits pairs), got {bits}")
    n = 1 << bits
    total = n * n
    errors, first_error = 0, None
    for start in range(0, total, chunk):
        idx = np.arange(start, min(start + chunk, total), dtype=np.int64)
        a, b = idx // n, idx % n
        y, _ = net.run_array(encode_arrays(a, b, bits + 1, dtype=net.U.dtype))
        wrong = np.flatnonzero(decode_arrays(y) != a + b)
        errors += wrong.size
        if wrong.size and first_error is None:
            first_error = [int(a[wrong[0]]), int(b[wrong[0]])]
    return {"verified_bits": bits, "pairs_checked": total, "errors": errors, "first_error": first_error}


def verify_random(net: HardThresholdRNN, bits: int, count: int, rng, batch_cells: int = RANDOM_BATCH_CELLS) -> dict:
    """`count` random pairs of `bits`-bit numbers (any size) against Python integer addition, T = bits + 1.

    Each number is `bits` draws of rng.integers(0, 2), most significant first, a then b, pair by pair. The
    pairs go through the net in batches of about `batch_cells` (pair x step) cells, so memory does not grow
    with `count`; drawing a batch as one (n, 2, bits) array consumes the generator exactly as drawing the
    numbers one by one does, so a seed gives the same pairs whatever the batch size.
    """
    if count < 0:
        raise ValueError(f"verify_random: count must be >= 0, got {count}")
    per_batch = max(1, batch_cells // (bits + 1))
    errors = sum(_random_batch_errors(net, bits, min(per_batch, count - start), rng)
                 for start in range(0, count, per_batch))
    return {"bits": bits, "pairs_checked": count, "errors": int(errors)}


def _random_batch_errors(net: HardThresholdRNN, bits: int, n: int, rng) -> int:
    """verify_random's work on n pairs; a function of its own so a batch's arrays are freed before the next."""
    drawn = rng.integers(0, 2, (n, 2, bits))  # (pair, a/b, bit), most significant bit first
    x = np.zeros((n, bits + 1, 2), dtype=net.U.dtype)  # the last step (0, 0) emits the final carry
    x[:, :bits, :] = drawn[:, :, ::-1].transpose(0, 2, 1)
    del drawn
    y, _ = net.run_array(x)
    # a, b and the net's sum as little-endian bytes -> Python ints: the oracle is Python's addition
    a, b, s = (map(bytes, np.packbits(v.astype(np.uint8), axis=1, bitorder="little"))
               for v in (x[..., 0], x[..., 1], y))
    return sum(int.from_bytes(ra, "little") + int.from_bytes(rb, "little") != int.from_bytes(rs, "little")
               for ra, rb, rs in zip(a, b, s))


def cell_cases(net: HardThresholdRNN, h_prev) -> list[dict]:
    """The cell's one-step map from state h_prev for all four inputs x = (a_t, b_t): h_t and y_t."""
    x = np.array([[[p, q]] for p in (0, 1) for q in (0, 1)], dtype=net.U.dtype)  # (4, 1, 2)
    saved = net.h0.data
    net.h0.data = np.asarray(h_prev, dtype=net.U.dtype)
    try:
        y, h = net.run_array(x)
    finally:
        net.h0.data = saved
    return [{"x": [int(v) for v in x[i, 0]], "h": tuple(int(v) for v in h[i, 0]), "y": int(y[i, 0])}
            for i in range(4)]


def prove_all_lengths(net: HardThresholdRNN) -> dict:
    """A proof for every length, not a sample: the reachable hidden states form a finite automaton; check
    it is the carry automaton. Explore all states reachable from h_0 and give each a carry c (h_0: c = 0);
    the net adds correctly for all inputs iff every transition from a state with carry c on input (a, b)
    outputs (a + b + c) mod 2 and goes to a state whose carry is [a + b + c >= 2] (induction on t).
    Returns {'ok', 'states': {state: carry}, 'transitions', 'reason'}.
    """
    start = tuple(int(v) for v in np.asarray(net.h0.data))
    carry = {start: 0}
    todo, transitions = [start], []
    while todo:
        state = todo.pop()
        c = carry[state]
        for case in cell_cases(net, state):
            s = sum(case["x"]) + c
            transitions.append({"from": list(state), "carry": c, "x": case["x"], "to": list(case["h"]),
                                "y": case["y"]})
            if case["y"] != s % 2:
                return {"ok": False, "states": carry, "transitions": transitions,
                        "reason": f"state {state} (carry {c}), input {case['x']}: output {case['y']}, sum bit {s % 2}"}
            nxt, c_next = case["h"], int(s >= 2)
            if nxt not in carry:
                carry[nxt] = c_next
                todo.append(nxt)
            elif carry[nxt] != c_next:
                return {"ok": False, "states": carry, "transitions": transitions,
                        "reason": f"state {nxt} is reached with carry {carry[nxt]} and with carry {c_next}"}
    return {"ok": True, "states": carry, "transitions": transitions, "reason": ""}


def min_margin(net: HardThresholdRNN, proof: dict) -> float:
    """Smallest |pre-activation| over all reachable (state, input) pairs: how far every unit is from 0."""
    U, W, b_h, v, b_y = (np.asarray(p.data, dtype=np.float64) for p in (net.U, net.W, net.b_h, net.v, net.b_y))
    margins = []
    for tr in proof["transitions"]:
        a = U @ np.array(tr["x"], float) + W @ np.array(tr["from"], float) + b_h
        h = (a > 0).astype(float)
        margins += list(np.abs(a)) + [abs(float(v @ h + b_y))]
    return float(min(margins))


# ------------------------------------------------------------------------------------------ learning
def random_batch(rng, batch: int, bits: int, dtype=np.float32):
    """Random pairs of `bits`-bit numbers: x (B, bits + 1, 2) and target sum bits (B, bits + 1)."""
    a = rng.integers(0, 1 << bits, batch, dtype=np.int64)
    b = rng.integers(0, 1 << bits, batch, dtype=np.int64)
    x = encode_arrays(a, b, bits + 1, dtype=dtype)
    target = ((a + b)[:, None] >> np.arange(bits + 1)) & 1
    return x, target.astype(dtype)


def _sigmoid(z):
    """1 / (1 + e^-z) written as e^min(z,0) / (1 + e^-|z|): no exp of a large positive number (steep beta)."""
    return F.exp(-F.relu(-z)) / (F.exp(-(F.relu(z) + F.relu(-z))) + 1.0)


def soft_forward(net: HardThresholdRNN, x: Tensor, beta: float) -> Tensor:
    """The cell with step(a) relaxed to sigmoid(beta a): h_t = s(beta (U x_t + W h_{t-1} + b_h)); returns the
    output logits z_t = beta (v . h_t + b_y), (B, T). As beta grows, s(beta a) -> step(a); and because
    step(a) = step(c a) for c > 0, the learned weights are then evaluated with the true step unchanged."""
    h = net.h0 + Tensor(np.zeros((x.shape[0], net.n_hidden), dtype=net.U.dtype))
    logits = []
    for t in range(x.shape[1]):
        a = F.matmul(x[:, t, :], F.transpose(net.U)) + F.matmul(h, F.transpose(net.W)) + net.b_h
        h = _sigmoid(a * beta)
        logits.append((F.sum(h * net.v, axis=1) + net.b_y) * beta)
    return F.stack(logits, axis=1)


def bce_with_logits(z: Tensor, target: np.ndarray) -> Tensor:
    """Mean binary cross-entropy of sigmoid(z) against 0/1 targets: softplus(z) - t z, with the overflow-free
    softplus(z) = max(z, 0) + log(1 + e^-|z|)."""
    softplus = F.relu(z) + F.log(F.exp(-(F.relu(z) + F.relu(-z))) + 1.0)
    return F.mean(softplus - z * Tensor(target))


def train_adder(seed: int, steps: int = 2000, batch: int = 32, bits: int = 6, lr: float = 0.05,
                method: str = "sigmoid", beta_start: float = 1.0, beta_end: float = 10.0,
                check_every: int = 50, check_bits: int = 6) -> dict:
    """Learn the 3-unit cell from scratchnet's random init (seed) on random `bits`-bit additions, Adam.

    method 'sigmoid': forward with sigmoid(beta a) for every unit, beta annealed geometrically from
        beta_start to beta_end, binary cross-entropy on the output.
    method 'ste': exact step forward, straight-through gradient backward (the cell's surrogate='ste'),
        squared error between output bits and sum bits.
    Every `check_every` steps the weights are run with the true step on all pairs below 2^check_bits;
    training stops once all are exact. -> {'net' (surrogate off), 'steps_run', 'losses'}.
    """
    if method not in ("sigmoid", "ste"):
        raise ValueError(f"train_adder: method must be 'sigmoid' or 'ste', got {method!r}")
    rng = np.random.default_rng(seed)
    # float64: exp(beta a) for large beta a overflows float32
    net = HardThresholdRNN(n_in=2, n_hidden=3, rng=rng, surrogate="ste" if method == "ste" else None,
                           dtype=np.float64)
    opt = optim.Adam([net.U, net.W, net.b_h, net.v, net.b_y], lr=lr)
    losses, step = [], 0
    for step in range(1, steps + 1):
        x, target = random_batch(rng, batch, bits, dtype=np.float64)
        if method == "sigmoid":
            beta = beta_start * (beta_end / beta_start) ** ((step - 1) / max(steps - 1, 1))
            loss = bce_with_logits(soft_forward(net, Tensor(x), beta), target)
        else:
            diff = net(Tensor(x))[0] - Tensor(target)
            loss = F.mean(diff * diff)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if step % check_every == 0 and verify_exhaustive(net, check_bits)["errors"] == 0:
            break
    net.surrogate = None
    return {"net": net, "steps_run": step, "losses": losses}


def learn(seeds: int, first_seed: int = 0, verify_bits: int = 10, log=None, **train_kw) -> dict:
    """Train `seeds` nets (seeds first_seed, first_seed + 1, ...), then check each with the true step:
    exhaustive to `verify_bits` bits and the all-lengths automaton proof. `log(row)` is called per seed.
    -> {'seeds', 'perfect_seeds', 'runs' (one row per seed), 'learned' (the perfect net with the largest
    smallest |pre-activation|, or None)}."""
    rows, learned = [], None
    for s in range(first_seed, first_seed + seeds):
        run = train_adder(s, **train_kw)
        net = run["net"]
        check = verify_exhaustive(net, verify_bits)
        proof = prove_all_lengths(net)
        perfect = check["errors"] == 0 and proof["ok"]
        row = {"seed": s, "steps_run": run["steps_run"], "final_loss": run["losses"][-1],
               "errors_exhaustive": check["errors"], "pairs_checked": check["pairs_checked"],
               "proof_all_lengths": proof["ok"], "perfect": perfect, "proof_reason": proof["reason"],
               "weights": net.weights()}
        if perfect:
            row["n_states"] = len(proof["states"])
            row["min_margin"] = min_margin(net, proof)
            if learned is None or row["min_margin"] > learned["min_margin"]:  # show the most robust one
                learned = {"seed": s, "weights": net.weights(), "min_margin": row["min_margin"],
                           "states": {str(list(k)): c for k, c in proof["states"].items()}}
        rows.append(row)
        if log:
            log(row)
    return {"seeds": seeds, "perfect_seeds": sum(r["perfect"] for r in rows), "runs": rows, "learned": learned}
