"""CIFAR-10 for the problem scripts: use what lies under the data root, else download the official pickles.

The reader itself (scratchnet.data.load_cifar10) is pure NumPy and never touches the network. This module
adds the one networked step: when the data root holds neither `cifar-10-batches-py/` nor `cifar10/` and the
download host answers, torchvision's dataset code fetches and unpacks the official pickles into
`<root>/cifar-10-batches-py/`. Offline, or on a read-only root, it stops with one UserError line.
"""
from __future__ import annotations

from pathlib import Path

from problems.common.cli import UserError
from problems.common.downloads import HOSTS, network_reachable, obtainable
from scratchnet.data.cifar import PICKLE_DIR, TREE_DIR, DatasetError, find_dataset_dir, load_cifar10


def expected_layouts(root) -> str:
    root = Path(root)
    return (f"{root / PICKLE_DIR}/ (official pickles) or {root / TREE_DIR}/ "
            "(train/<class>/*.jpg|png, test/<class>/*)")


def _missing(root: Path) -> str:
    return f"no CIFAR-10 under data root {root}: expected {expected_layouts(root)}"


def have_cifar10(root) -> bool:
    try:
        find_dataset_dir(Path(root).expanduser())
        return True
    except DatasetError:
        return False


def cifar10_obtainable(root, download: bool = True) -> str | None:
    """None if CIFAR-10 is under `root` or can be downloaded now; else why not (one line)."""
    root = Path(root).expanduser()
    return obtainable(have_cifar10(root), "cifar10", _missing(root), download)


def _torchvision_download(root: Path) -> None:
    """Fetch, check (MD5) and unpack the official pickles into root/cifar-10-batches-py/ (torchvision)."""
    from torchvision.datasets import CIFAR10  # noqa: PLC0415 - torch only on this networked path
    CIFAR10(str(root), train=True, download=True)
    CIFAR10(str(root), train=False, download=True)  # archive already there: only verifies


def ensure_cifar10(root, download: bool = True) -> Path:
    """The CIFAR-10 folder under `root`, downloading the official pickles first if neither layout exists."""
    root = Path(root).expanduser()
    try:
        return find_dataset_dir(root)[1]
    except DatasetError:
        pass
    where = _missing(root)
    if not download:
        raise UserError(f"{where}, and downloads are off (--no-download); pass --data-dir to a root that has one")
    if not network_reachable(HOSTS["cifar10"]):
        raise UserError(f"{where}, and the network is unreachable for the download; "
                        "pass --data-dir (or set $SCRATCHNET_DATA) to a root that has one")
    try:
        root.mkdir(parents=True, exist_ok=True)
        _torchvision_download(root)
    except Exception as e:  # network drop, read-only root, bad checksum: one line, no traceback
        msg = str(e).splitlines()[0] if str(e) else ""
        raise UserError(f"{where}; downloading the official pickles into {root} failed "
                        f"({type(e).__name__}: {msg})") from None
    try:
        return find_dataset_dir(root)[1]
    except DatasetError:
        raise UserError(f"{where}; the download finished but {root / PICKLE_DIR}/ is missing") from None


def load_cifar10_for_cli(root, download: bool = True, **kwargs):
    """ensure_cifar10 + scratchnet.data.load_cifar10, with dataset problems turned into one UserError line."""
    ensure_cifar10(root, download=download)
    try:
        return load_cifar10(root, **kwargs)
    except DatasetError as e:
        raise UserError(str(e)) from None
