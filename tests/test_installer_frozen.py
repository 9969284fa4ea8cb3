"""The frozen app in dist/ (when `make installer` has built one): no torch, and what the viewer needs is inside."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

INSTALLER = REPO_ROOT / "installer"
APP = REPO_ROOT / "dist" / ("radreview.app" if sys.platform == "darwin" else "radreview")

pytestmark = pytest.mark.skipif(not APP.is_dir(), reason="no frozen app in dist/ (run `make installer`)")


@pytest.fixture(scope="module")
def bundle():
    sys.path.insert(0, str(INSTALLER))
    try:
        yield importlib.import_module("bundle")
    finally:
        sys.path.remove(str(INSTALLER))


@pytest.fixture(scope="module")
def modules(bundle) -> set[str]:
    pytest.importorskip("PyInstaller", reason="reading the app's module archive needs PyInstaller ([installer])")
    return set(bundle.frozen_module_names(APP))


def test_frozen_app_contains_no_torch(bundle) -> None:
    report = bundle.inspect_bundle(APP)
    assert report.forbidden == (), report.forbidden
    names = {p.name.lower() for p in APP.rglob("*")}
    assert not any(n.startswith(("libtorch", "torch")) for n in names)
    print(f"frozen app: {report.total_mib:.1f} MiB in {report.file_count} files")


def test_frozen_modules_are_the_viewers(modules: set[str]) -> None:
    for needed in ("radreview.cli", "radreview.smoke_test", "radreview.commands.view", "radreview.gui.main_window",
                   "radreview.inference.engine", "radreview.studies.pixels", "onnxruntime", "pydicom",
                   "pydicom.pixels.decoders.gdcm", "pydicom.pixels.decoders.pylibjpeg", "openjpeg", "rle", "gdcm"):
        assert needed in modules, needed
    bad = sorted(m for m in modules if m.split(".")[0] in ("torch", "torchvision", "pytorch_grad_cam")
                 or m.startswith("radreview.training"))
    assert bad == []
    # scipy stays out (radreview.metrics.distributions replaces it): a fifth of the app's size.
    assert "radreview.metrics.distributions" in modules and "radreview.system_check" in modules
    assert not any(m.split(".")[0] == "scipy" for m in modules)


def test_plugin_metadata_and_data_travel_with_the_app() -> None:
    internal = APP / ("Contents/Resources" if sys.platform == "darwin" else "_internal")
    entry_points = {p.parent.name.split("-")[0] for p in internal.glob("*.dist-info/entry_points.txt")}
    assert {"pylibjpeg_openjpeg", "pylibjpeg_rle"} <= entry_points  # pylibjpeg finds its plugins through them
    own = [*internal.glob("radreview-*.dist-info"), *internal.glob("radreview*.egg-info")]
    assert own, "radreview's own version comes from its metadata"
    assert (internal / "resources" / "demo").is_dir()
    assert (internal / "_gdcm" / "XML" / "Part3.xml").is_file()
    shipped = sorted(p.name for p in (REPO_ROOT / "models").glob("*.onnx"))
    assert sorted(p.name for p in (internal / "models").glob("*.onnx")) == shipped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb check is Linux's")
def test_frozen_app_names_what_stops_its_window_instead_of_aborting() -> None:
    """Started with xcb and no display, the frozen app reports why (missing libraries with their
    install lines, or no display) and exits 1; Qt's own abort would be exit status 134."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env["QT_QPA_PLATFORM"] = "xcb"
    result = subprocess.run([str(APP / "radreview")], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "radreview cannot open its window" in result.stderr
