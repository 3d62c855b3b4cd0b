"""P4 study: the assignment's update rule beside I-FGSM with momentum, and success against eps (plain and EOT).

The code lives in problems/p4/ (study_cli.py: the flags; study.py: the runs; study_result.py: study.json);
`python problems/p4_study.py --help` for usage.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):   # run as a file from any folder: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems.common.cli import run_main  # noqa: E402
from problems.p4.study_cli import main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(run_main(main))
