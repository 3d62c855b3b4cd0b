"""P1: the pretrained CNN and its feature maps; the code is in problems/p1/ (this script is `python -m problems.p1`).

    python problems/p1_pretrained.py [--image PATH] [--model NAME] [--topk 3] [--data-dir D] [--out DIR] [--seed S]
"""
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems.common.cli import run_main  # noqa: E402
from problems.p1.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_main(main))
