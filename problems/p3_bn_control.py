"""P3 part 2, controlled: both networks at both peak learning rates (batch norm vs the learning rate it allows).

The code lives in problems/p3/bn_control.py; `python problems/p3_bn_control.py --help` for usage.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratchnet import cpu  # noqa: E402 - standard library only: numpy is not loaded yet

cpu.choose_openblas_kernels()  # before numpy loads, which is when OpenBLAS reads it (scratchnet.cpu)

from problems.common.cli import run_main  # noqa: E402
from problems.p3.bn_control import main  # noqa: E402, F401 - also the entry point for callers that import this

if __name__ == "__main__":
    sys.exit(run_main(main))
