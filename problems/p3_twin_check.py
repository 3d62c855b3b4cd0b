"""P3 parts 1-2 cross-checked: the scratchnet runs against their PyTorch twins, epoch by epoch.

The code lives in problems/p3/twin_check.py; `python problems/p3_twin_check.py --help` for usage.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems.common.cli import run_main  # noqa: E402
from problems.p3.twin_check import main  # noqa: E402, F401 - also the entry point for callers that import this

if __name__ == "__main__":
    sys.exit(run_main(main))
