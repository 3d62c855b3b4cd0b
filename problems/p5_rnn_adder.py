"""P5: the binary-adder RNN; the code is in problems/p5/ (this script is `python -m problems.p5`).

    python problems/p5_rnn_adder.py [A B [A B ...]] [--binary] [--verify N] [--learn --seeds K]
                                    [--weights PATH] [--out DIR] [--seed S]
"""
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems.common.cli import run_main  # noqa: E402
from problems.p5.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_main(main))
