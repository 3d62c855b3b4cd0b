"""P3 part 3 ablation: what each trick of the better network's recipe is worth, measured with short runs.

The code lives in problems/p3/ (ablation_cli.py: the flags; ablation.py: the runs; result.py: ablation.json);
`python problems/p3_better_ablation.py --help` for usage.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratchnet import cpu  # noqa: E402 - standard library only: numpy is not loaded yet

cpu.choose_openblas_kernels()  # before numpy loads, which is when OpenBLAS reads it (scratchnet.cpu)

from problems.common.cli import run_main  # noqa: E402
from problems.p3.ablation_cli import main  # noqa: E402, F401 - also the entry point for callers that import this

if __name__ == "__main__":
    sys.exit(run_main(main))
