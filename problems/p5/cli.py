"""P5: a hand-built hard-threshold RNN (2 inputs, 3 hidden units, 1 output) that adds binary numbers.

    python problems/p5_rnn_adder.py [A B [A B ...]] [--binary] [--verify N] [--learn --seeds K]
                                    [--weights PATH] [--out DIR] [--seed S]
    python -m problems.p5 ...           (the same)

Loads weights/rnn_adder.json into scratchnet's HardThresholdRNN, prints the assignment's example
(100111 + 110010) as a per-step table (t, x_t, h_t, y_t), adds the given pairs (decimal, or binary with
--binary), checks every pair below 2^N exhaustively (--verify N, default 10), random 64- and 200-bit pairs,
and the all-lengths automaton proof. --learn trains the same architecture from random init for K seeds and
checks each learned net exactly. Writes DIR/results.json. The derivation is in docs/p5_rnn_adder.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from problems.common.cli import UserError, add_common_args, command_line, positive_int, seed_everything
from problems.p5 import adder
from problems.p5.run import run

REPO = Path(__file__).resolve().parents[2]
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
    result = run(weights, pairs, verify_bits=args.verify, random_pairs=args.random_pairs, seed=args.seed,
                 learn=args.learn, seeds=args.seeds, steps=args.steps, method=args.method,
                 command=command_line(), log=print)
    result.write(args.out / "results.json")
    print(f"\nwrote {args.out / 'results.json'}")
    return 0 if result.errors == 0 else 1
