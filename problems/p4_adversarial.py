"""P4: targeted adversarial examples in 8-bit pixel space, and how robust they are to simple transforms.

    python problems/p4_adversarial.py [--image PATH --target ID_OR_NAME]... [--eps E] [--eot]
                                      [--data-dir D] [--out DIR] [--seed S]

The code is in problems/p4/ (cli.py: the flags; run.py: the attacks; result.py: the results files).
"""
import sys
from pathlib import Path

if __package__ in (None, ""):   # run as a file from any folder: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems.common.cli import run_main  # noqa: E402
from problems.p4.cli import main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(run_main(main))
