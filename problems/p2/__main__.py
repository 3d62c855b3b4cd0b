"""`python -m problems.p2 [flags]`: the same as `python problems/p2_transfer.py [flags]`."""
import sys

from problems.common.cli import run_main
from problems.p2.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
