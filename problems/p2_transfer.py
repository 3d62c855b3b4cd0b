"""P2: transfer learning on Oxford-IIIT Pet with penultimate CNN features and a linear classifier.

The code is in problems/p2/ (cli.py: the flags; run.py: the steps; result.py: the results JSON);
this script and `python -m problems.p2` run the same.

    python problems/p2_transfer.py [--model NAME] [--classifier logreg|svm|scratchnet]
                                   [--data-dir D] [--out DIR] [--seed S]
"""
import sys
from pathlib import Path

if __package__ in (None, ""):          # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems.common.cli import run_main  # noqa: E402
from problems.p2.cli import main  # noqa: E402,F401  (main: also what `from problems.p2_transfer import main` gets)

if __name__ == "__main__":
    sys.exit(run_main(main))
