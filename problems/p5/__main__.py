"""python -m problems.p5: the same as python problems/p5_rnn_adder.py."""
import sys

from problems.common.cli import run_main
from problems.p5.cli import main

sys.exit(run_main(main))
