"""Fixtures shared by every suite: where the repo and the shared real data are."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from _postgres import postgres_url  # noqa: F401  (the PostgreSQL server fixture, tests/_postgres.py)

# GUI tests always run offscreen, with or without a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# No test reads or writes the real user's viewer settings (radreview/gui/settings.py).
os.environ.setdefault("RADREVIEW_CONFIG_DIR", tempfile.mkdtemp(prefix="radreview-test-config-"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
FRACATLAS_DIR = SHARED_DIR / "data" / "fracatlas"
MRMC_DIR = SHARED_DIR / "data" / "mrmc"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def fracatlas_dir() -> Path:
    if not (FRACATLAS_DIR / "dataset.csv").exists():
        pytest.fail(f"the shared FracAtlas data is missing at {FRACATLAS_DIR}")
    return FRACATLAS_DIR


@pytest.fixture(scope="session")
def mrmc_dir() -> Path:
    if not MRMC_DIR.exists():
        pytest.fail(f"the shared MRMC data is missing at {MRMC_DIR}")
    return MRMC_DIR


@pytest.fixture(scope="session")
def pydicom_data_file():
    """Return a function giving the path of a file shipped by the pydicom-data package.

    pydicom-data installs as the ``data_store`` module (pydicom's own test-file store).
    """
    import data_store

    root = Path(data_store.__file__).parent

    def find(name: str) -> Path:
        matches = sorted(root.rglob(name))
        if not matches:
            pytest.fail(f"{name} not found in pydicom-data at {root}")
        return matches[0]

    return find
