"""python -m problems.p1: the same as python problems/p1_pretrained.py."""
import sys

from problems.common.cli import run_main
from problems.p1.cli import main

sys.exit(run_main(main))
