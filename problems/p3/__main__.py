"""python -m problems.p3: the same as python problems/p3_small_cnn.py (problems/__init__ has already chosen
numpy's OpenBLAS kernels, before numpy loads)."""
import sys

from problems.common.cli import run_main
from problems.p3.cli import main

sys.exit(run_main(main))
