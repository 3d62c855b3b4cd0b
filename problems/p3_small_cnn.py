"""P3 parts 1-2 (and part 3 with --model better): CIFAR-10 networks trained by scratchnet.

The code lives in problems/p3/ (cli.py: the flags; run.py: training and evaluation; result.py: the
results files); `python problems/p3_small_cnn.py --help` or `python -m problems.p3 --help` for usage.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratchnet import cpu  # noqa: E402 - standard library only: numpy is not loaded yet

cpu.choose_openblas_kernels()  # before numpy loads, which is when OpenBLAS reads it (scratchnet.cpu)

from problems.common.cli import run_main  # noqa: E402
from problems.p3.cli import main  # noqa: E402, F401 - also the entry point for callers that import this

if __name__ == "__main__":
    sys.exit(run_main(main))
