"""The one download policy of the data-reading problems (P2's Pets, P3's CIFAR-10).

A dataset missing from the data root is fetched with torchvision when downloads are on (the default;
--no-download forbids it) and its host answers; a data root that has the data is never re-downloaded.
`obtainable` says, before any long work, whether a dataset can be had and, if not, why.
"""
from __future__ import annotations

import argparse
import socket

HOSTS = {"cifar10": "www.cs.toronto.edu",      # torchvision's CIFAR10 archive
         "pets": "www.robots.ox.ac.uk"}        # torchvision's OxfordIIITPet archives


def add_download_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """--download/--no-download (default on) for a script that reads `what` from the data root."""
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                        help=f"fetch {what} with torchvision when the data root has none and its host "
                             "answers (default: on; --no-download forbids it)")


def network_reachable(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    """True if a TCP connection to host:port opens within `timeout` seconds (DNS included)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_blocker(dataset: str, download: bool) -> str | None:
    """Why `dataset` cannot be downloaded now (downloads off, host silent), or None when it can."""
    if not download:
        return "downloads are off (--no-download)"
    if not network_reachable(HOSTS[dataset]):
        return f"the download host {HOSTS[dataset]} does not answer"
    return None


def obtainable(present: bool, dataset: str, missing: str, download: bool) -> str | None:
    """None when the dataset is in the data root or can be downloaded now; else why not, in one line
    (`missing` says what was looked for)."""
    if present:
        return None
    blocker = download_blocker(dataset, download)
    return None if blocker is None else f"{missing}, and {blocker}"
