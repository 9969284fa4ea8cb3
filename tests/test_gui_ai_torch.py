"""The optional torch back end: a real checkpoint, the grad-cam package's methods, in the AI panel."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("pytestqt")

from radreview.gui.ai_settings import AiSettings  # noqa: E402
from radreview.gui.inference_worker import load_engine  # noqa: E402
from radreview.gui.main_window import MainWindow  # noqa: E402
from radreview.gui.settings import CONFIG_DIR_ENV, ViewerSettings  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.train]
LABELS = [{"name": "hand", "task": "region", "activation": "sigmoid"},
          {"name": "leg", "task": "region", "activation": "sigmoid"},
          {"name": "fractured", "task": "fracture", "activation": "sigmoid"}]


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint in radreview train's format (EfficientNet-Lite0 layers, seeded random head)."""
    from radreview.training.backbones import build_backbone
    from radreview.training.checkpoint import save_checkpoint
    from radreview.training.model import MultiLabelClassifier

    torch.manual_seed(0)
    model = MultiLabelClassifier(build_backbone("efficientnet_lite0", architecture_only=True), len(LABELS), 0.0)
    meta = {
        "name": "torch-test", "version": "0.1", "backbone": "efficientnet_lite0", "labels": LABELS,
        "input": {"height": 64, "width": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "operating_points": {label["name"]: {"possible": 0.2, "likely": 0.8} for label in LABELS},
        "config": {"dropout": 0.0},
    }
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt", model, meta)


def bright_image() -> np.ndarray:
    image = np.full((120, 90), 20, np.uint8)
    image[10:60, 50:85] = 240
    return image


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam"])
def test_torch_engine_gives_relative_maps(checkpoint, method):
    state = load_engine(None, "auto", backend="torch", checkpoint=str(checkpoint), cam_method=method)
    engine = state.engine
    result = engine.predict(bright_image())
    assert {r.label for r in result.labels} >= {"hand", "leg"}
    for r in result.labels:
        assert 0.0 <= r.probability <= 1.0 and r.cam_units == "relative"
        assert r.cam.shape == (64, 64) and 0.0 <= r.cam.min() and r.cam.max() <= 1.0 + 1e-6
    # the same checkpoint's logits in plain torch
    from radreview.inference.preprocess import prepare
    from radreview.training.checkpoint import load_model

    model, _ = load_model(checkpoint)
    x, _ = prepare(bright_image(), engine.card.input)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None])[0].numpy()
    assert result.get("hand").logit == pytest.approx(float(logits[0]), abs=1e-4)
    assert state.description.startswith("torch ")


def test_torch_backend_without_checkpoint_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a checkpoint"):
        load_engine(None, "auto", backend="torch")


def test_panel_runs_the_torch_backend(qtbot, checkpoint, fracatlas_dir, tmp_path):
    image = sorted((fracatlas_dir / "images" / "Fractured").glob("*.jpg"))[0]
    shutil.copy(image, tmp_path / image.name)
    window = MainWindow(settings=ViewerSettings(), save_on_close=False)
    panel = window.ai_panel
    panel.save_settings = False
    panel.apply_settings(AiSettings(backend="torch", checkpoint=str(checkpoint), cam_method="gradcam"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: panel.state is not None, timeout=30000)
    assert "torch Grad-CAM" in panel.status.text()
    with qtbot.waitSignal(panel.results_shown, timeout=30000):
        window.open_paths([str(tmp_path / image.name)])
    assert [row[0] for row in panel.table_rows()] == ["Fracture"]  # regions: the region line
    assert panel.region_label.text().startswith("Region: ")
    assert panel.color_bar.low.text() == "relative (per image)"
    window.close()


def test_a_broken_checkpoint_is_an_error_in_the_panel(qtbot, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    window = MainWindow(settings=ViewerSettings(), save_on_close=False)
    panel = window.ai_panel
    panel.save_settings = False
    qtbot.addWidget(window)
    with qtbot.waitSignal(panel.controller.models_failed, timeout=30000):
        panel.apply_settings(AiSettings(backend="torch", checkpoint=str(bad)))
    assert "not a radreview checkpoint" in panel.error.text()
    window.close()


def test_the_viewer_imports_no_torch_until_asked():
    code = ("import sys, radreview.gui.main_window, radreview.gui.ai_panel, radreview.gui.inference_worker\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
