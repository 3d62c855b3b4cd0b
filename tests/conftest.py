"""Shared fixtures. The data root comes from $SCRATCHNET_DATA; for tests it defaults to the project's
shared read-only data folder next to the repository (../shared/data), as .ci/run sets it."""
import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("SCRATCHNET_DATA", str(REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root (a pathlib.Path); tests needing a particular dataset skip when it is absent."""
    return Path(os.environ["SCRATCHNET_DATA"])


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
