"""P5: a hand-built hard-threshold RNN (2 inputs, 3 hidden units, 1 output) that adds binary numbers.

    python problems/p5_rnn_adder.py [A B [A B ...]] [--binary] [--verify N] [--learn --seeds K]
                                    [--weights PATH] [--out DIR] [--seed S]

Loads weights/rnn_adder.json into scratchnet's HardThresholdRNN, prints the assignment's example
(100111 + 110010) as a per-step table (t, x_t, h_t, y_t), adds the given pairs (decimal, or binary with
--binary), checks every pair below 2^N exhaustively (--verify N, default 10), random 64- and 200-bit pairs,
and the all-lengths automaton proof. --learn trains the same architecture from random init for K seeds and
checks each learned net exactly. Writes DIR/results.json. The derivation is in docs/p5_rnn_adder.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from problems.common import adder
from problems.common.cli import (UserError, add_common_args, command_line, positive_int, run_main,
                                 seed_everything)
from scratchnet.io import write_json
from scratchnet.rnn import HardThresholdRNN

REPO = Path(__file__).resolve().parents[1]
MAX_TABLE_STEPS = 64  # longer additions print their bit strings only
# --random-pairs cap: the check runs in fixed-size batches, so memory is bounded for any count, but time grows
# with it (each pair is run at both widths, 266 net steps); ten million keeps a run to minutes, not hours
MAX_RANDOM_PAIRS = 10_000_000


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("numbers", nargs="*", help="pairs of whole numbers >= 0 to add: A B [A B ...]")
    p.add_argument("--binary", action="store_true", help="read the numbers as binary strings of 0/1")
    p.add_argument("--verify", type=positive_int, default=10, metavar="N",
                   help="check every pair of numbers below 2^N (N <= 14; default 10, about 1M pairs)")
    p.add_argument("--random-pairs", type=positive_int, default=200,
                   help="random 64-bit and 200-bit pairs checked against Python addition (default 200 each, "
                        f"at most {MAX_RANDOM_PAIRS:_})")
    p.add_argument("--learn", action="store_true", help="also learn the weights from random init (surrogate)")
    p.add_argument("--seeds", type=positive_int, default=20, help="training runs for --learn (default 20)")
    p.add_argument("--steps", type=positive_int, default=2000, help="max Adam steps per run (default 2000)")
    p.add_argument("--method", choices=["sigmoid", "ste"], default="sigmoid",
                   help="sigmoid: steep sigmoid annealed to a step (default); ste: straight-through")
    p.add_argument("--weights", type=Path, default=REPO / "weights" / "rnn_adder.json",
                   help="weights JSON (default: weights/rnn_adder.json)")
    add_common_args(p, "p5", data=False)
    args = p.parse_args(argv)
    if len(args.numbers) % 2:
        raise UserError(f"got {len(args.numbers)} number(s); expected pairs A B [A B ...]")
    if args.verify > 14:
        raise UserError(f"--verify {args.verify} is too large (4^N pairs); expected N between 1 and 14")
    if args.random_pairs > MAX_RANDOM_PAIRS:  # refused here, in one line, rather than by argparse's two
        raise UserError(f"--random-pairs {args.random_pairs} is too many; expected 1 to {MAX_RANDOM_PAIRS} "
                        "(the check takes time in proportion)")
    return args


def main(argv=None):
    args = parse_args(argv)
    seed_everything(args.seed)
    try:
        pairs = [(adder.parse_number(a, args.binary), adder.parse_number(b, args.binary))
                 for a, b in zip(args.numbers[::2], args.numbers[1::2])]
        weights = adder.load_weights(args.weights)
    except ValueError as e:
        raise UserError(str(e)) from None
    net = HardThresholdRNN.from_weights(weights)
    print("weights:", weights)

    ex = adder.example(net)
    print(f"\nassignment example: {ex['a']} + {ex['b']} = {ex['sum']} ({'correct' if ex['correct'] else 'WRONG'})")
    print("input 1:", ",".join(map(str, ex["input_1"])), " input 2:", ",".join(map(str, ex["input_2"])),
          " output:", ",".join(map(str, ex["output"])))
    print(adder.format_table(ex["steps"]))

    additions = []
    if pairs:
        sums, x, y, h = adder.add(net, pairs)
        for i, ((a, b), s) in enumerate(zip(pairs, sums)):
            row = {"a": a, "b": b, "sum": s, "correct": s == a + b, "a_bits": format(a, "b"),
                   "b_bits": format(b, "b"), "sum_bits": format(s, "b")}
            additions.append(row)
            print(f"\n{a} + {b} = {s} ({'correct' if row['correct'] else 'WRONG'}); "
                  f"binary {row['a_bits']} + {row['b_bits']} = {row['sum_bits']}")
            if x.shape[1] <= MAX_TABLE_STEPS:
                print(adder.format_table(adder.step_table(x[i], y[i], h[i])))

    t0 = time.perf_counter()
    check = adder.verify_exhaustive(net, args.verify)
    seconds = time.perf_counter() - t0
    print(f"\nexhaustive: all {check['pairs_checked']} pairs below 2^{args.verify}: {check['errors']} errors "
          f"({seconds:.1f} s)")
    rng = np.random.default_rng(args.seed)
    randoms = [adder.verify_random(net, bits, args.random_pairs, rng) for bits in (64, 200)]
    for r in randoms:
        print(f"random {r['bits']}-bit pairs: {r['pairs_checked']} checked, {r['errors']} errors")
    proof = adder.prove_all_lengths(net)
    margin = adder.min_margin(net, proof) if proof["ok"] else None
    verdict = "holds" if proof["ok"] else "FAILS: " + proof["reason"]
    print(f"all-lengths proof (reachable states = carry automaton): {verdict}; "
          f"states {dict(proof['states'])}; smallest |pre-activation| {margin}")

    results = {"command": command_line(), "weights": weights, "example": ex, "additions": additions,
               "verified_bits": check["verified_bits"], "pairs_checked": check["pairs_checked"],
               "errors": check["errors"], "first_error": check["first_error"], "verify_seconds": seconds,
               "random_checks": randoms, "proof_all_lengths": proof["ok"], "proof_reason": proof["reason"],
               "proof_states": {str(list(k)): c for k, c in proof["states"].items()}, "min_margin": margin,
               "figures": {}}
    discussion = (f"Hand-set weights: {check['errors']} errors on all {check['pairs_checked']} pairs below "
                  f"2^{args.verify}, {sum(r['errors'] for r in randoms)} errors on random 64/200-bit pairs; the "
                  f"reachable hidden states {'are' if proof['ok'] else 'are not'} a carry automaton, so the "
                  f"net {'adds correctly at every length' if proof['ok'] else 'is not proven for all lengths'}.")

    if args.learn:
        print(f"\nlearning ({args.method}): {args.seeds} seeds from {args.seed}, up to {args.steps} steps each")
        summary = adder.learn(args.seeds, first_seed=args.seed, verify_bits=args.verify, method=args.method,
                              steps=args.steps, log=lambda r: print(
                                  f"  seed {r['seed']}: {r['steps_run']} steps, loss {r['final_loss']:.4f}, "
                                  f"{r['errors_exhaustive']} errors / {r['pairs_checked']}, "
                                  f"{'PERFECT' if r['perfect'] else 'not perfect'}", flush=True))
        rate = summary["perfect_seeds"] / summary["seeds"]
        print(f"perfect adders: {summary['perfect_seeds']} of {summary['seeds']} seeds ({rate:.2f})")
        learned = summary["learned"]
        if learned:
            print(f"learned (seed {learned['seed']}):", learned["weights"])
            print("hand-set:", weights)
        results.update({"seeds": summary["seeds"], "perfect_seeds": summary["perfect_seeds"], "success_rate": rate,
                        "learn_method": args.method, "learn_runs": summary["runs"],
                        "learned_weights": learned["weights"] if learned else None, "learned": learned})
        discussion += (f" Learning ({args.method}) found a perfect adder (exhaustive {args.verify}-bit check and "
                       f"all-lengths proof) in {summary['perfect_seeds']} of {summary['seeds']} seeds.")
    results["discussion"] = discussion
    write_json(args.out / "results.json", results)
    print(f"\nwrote {args.out / 'results.json'}")
    return 0 if check["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
