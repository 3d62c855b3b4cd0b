"""python -m problems.p4: the same as python problems/p4_adversarial.py."""
import sys

from problems.common.cli import run_main
from problems.p4.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
