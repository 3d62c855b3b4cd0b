"""P5's work: the hand-set adder's example, additions, exact checks and proof, then (optionally) learning.

`run` takes parsed inputs and returns a P5Result; `log` receives the progress lines (the step tables and
each check's outcome as it finishes), which the command line prints.
"""
from __future__ import annotations

import time

import numpy as np

from problems.p5 import adder
from problems.p5.result import Addition, Example, Learned, LearnRun, P5Result, RandomCheck, Step, Weights
from scratchnet.rnn import HardThresholdRNN

MAX_TABLE_STEPS = 64  # longer additions print their bit strings only


def _quiet(*args, **kwargs) -> None:
    pass


def _example(ex: dict) -> Example:
    return Example(**{**ex, "steps": [Step(**s) for s in ex["steps"]]})


def _learn_run(row: dict) -> LearnRun:
    return LearnRun(**{**row, "weights": Weights(**row["weights"])})


def run(weights: dict, pairs=(), verify_bits: int = 10, random_pairs: int = 200, seed: int = 0,
        learn: bool = False, seeds: int = 20, steps: int = 2000, method: str = "sigmoid", command: str = "",
        log=_quiet) -> P5Result:
    """Check the net with `weights` (as adder.load_weights gives them) on the assignment's example, `pairs`
    of ints, every pair below 2^verify_bits, `random_pairs` random 64- and 200-bit pairs (from `seed`) and
    the all-lengths proof; with `learn`, train `seeds` nets from seeds seed, seed + 1, ... and check each."""
    net = HardThresholdRNN.from_weights(weights)
    log("weights:", weights)

    ex = adder.example(net)
    log(f"\nassignment example: {ex['a']} + {ex['b']} = {ex['sum']} ({'correct' if ex['correct'] else 'WRONG'})")
    log("input 1:", ",".join(map(str, ex["input_1"])), " input 2:", ",".join(map(str, ex["input_2"])),
        " output:", ",".join(map(str, ex["output"])))
    log(adder.format_table(ex["steps"]))

    additions = []
    if pairs:
        sums, x, y, h = adder.add(net, pairs)
        for i, ((a, b), s) in enumerate(zip(pairs, sums)):
            row = Addition(a=a, b=b, sum=s, correct=s == a + b, a_bits=format(a, "b"), b_bits=format(b, "b"),
                           sum_bits=format(s, "b"))
            additions.append(row)
            log(f"\n{a} + {b} = {s} ({'correct' if row.correct else 'WRONG'}); "
                f"binary {row.a_bits} + {row.b_bits} = {row.sum_bits}")
            if x.shape[1] <= MAX_TABLE_STEPS:
                log(adder.format_table(adder.step_table(x[i], y[i], h[i])))

    t0 = time.perf_counter()
    check = adder.verify_exhaustive(net, verify_bits)
    seconds = time.perf_counter() - t0
    log(f"\nexhaustive: all {check['pairs_checked']} pairs below 2^{verify_bits}: {check['errors']} errors "
        f"({seconds:.1f} s)")
    rng = np.random.default_rng(seed)
    randoms = [adder.verify_random(net, bits, random_pairs, rng) for bits in (64, 200)]
    for r in randoms:
        log(f"random {r['bits']}-bit pairs: {r['pairs_checked']} checked, {r['errors']} errors")
    proof = adder.prove_all_lengths(net)
    margin = adder.min_margin(net, proof) if proof["ok"] else None
    verdict = "holds" if proof["ok"] else "FAILS: " + proof["reason"]
    log(f"all-lengths proof (reachable states = carry automaton): {verdict}; "
        f"states {dict(proof['states'])}; smallest |pre-activation| {margin}")

    result = P5Result(
        command=command, weights=Weights(**weights), example=_example(ex), additions=additions,
        verified_bits=check["verified_bits"], pairs_checked=check["pairs_checked"], errors=check["errors"],
        first_error=tuple(check["first_error"]) if check["first_error"] else None,
        verify_seconds=seconds, random_checks=[RandomCheck(**r) for r in randoms],
        proof_all_lengths=proof["ok"], proof_reason=proof["reason"],
        proof_states={str(list(k)): c for k, c in proof["states"].items()}, min_margin=margin, figures={},
        discussion="")

    if learn:
        log(f"\nlearning ({method}): {seeds} seeds from {seed}, up to {steps} steps each")
        summary = adder.learn(seeds, first_seed=seed, verify_bits=verify_bits, method=method, steps=steps,
                              log=lambda r: log(
                                  f"  seed {r['seed']}: {r['steps_run']} steps, loss {r['final_loss']:.4f}, "
                                  f"{r['errors_exhaustive']} errors / {r['pairs_checked']}, "
                                  f"{'PERFECT' if r['perfect'] else 'not perfect'}", flush=True))
        rate = summary["perfect_seeds"] / summary["seeds"]
        log(f"perfect adders: {summary['perfect_seeds']} of {summary['seeds']} seeds ({rate:.2f})")
        best = summary["learned"]
        if best:
            log(f"learned (seed {best['seed']}):", best["weights"])
            log("hand-set:", weights)
        result.seeds, result.perfect_seeds, result.success_rate = summary["seeds"], summary["perfect_seeds"], rate
        result.learn_method = method
        result.learn_runs = [_learn_run(r) for r in summary["runs"]]
        result.learned_weights = Weights(**best["weights"]) if best else None
        result.learned = Learned(**{**best, "weights": Weights(**best["weights"])}) if best else None
    result.discussion = result.summary()
    return result
