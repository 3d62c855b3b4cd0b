"""Inputs that ship with the project (see problems/assets/SOURCE.md): the assignment's peppers photo."""
from __future__ import annotations

from pathlib import Path

from .cli import data_root

ASSETS = Path(__file__).resolve().parents[1] / "assets"
PEPPERS_NAME = "peppers.png"


def peppers_path(data_dir: str | None = None) -> Path:
    """The data root's peppers.png when it has one, else the copy in problems/assets/."""
    in_root = data_root(data_dir) / PEPPERS_NAME
    return in_root if in_root.is_file() else ASSETS / PEPPERS_NAME
