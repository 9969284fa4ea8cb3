"""docs/make_screenshot.py runs: the README's picture can always be regenerated (pixels not compared)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_screenshot_script_writes_the_viewer_with_a_finding_selected(tmp_path: Path) -> None:
    out = tmp_path / "screenshot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, str(REPO_ROOT / "docs" / "make_screenshot.py"), "--out", str(out),
                             "--timeout", "120"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # What it shows, in its own words: a finding (not the body region) with its probability and tier.
    assert "wrote" in result.stdout and " p=" in result.stdout and "resources/demo/" in result.stdout
    assert "(likely)" in result.stdout or "(possible)" in result.stdout
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1500, 900)
        colours = np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 64  # a rendered window, not a blank grab
    assert 30_000 < out.stat().st_size < 2_000_000
