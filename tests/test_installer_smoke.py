"""``radreview --smoke-test`` from the source install: offscreen, real decoders, real models, real window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from radreview.smoke_test import SCHEMA, check_decoders, compare_predictions, SmokeContext

pytestmark = pytest.mark.gui

SHIPPED_MODELS = sorted((REPO_ROOT / "models").glob("*.onnx"))


def _env() -> dict[str, str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("RADREVIEW_MODELS", None)
    return env


def _run(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "smoke.json"
    completed = subprocess.run(
        [sys.executable, *args, "--smoke-out", str(out)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert out.is_file(), completed.stdout + completed.stderr
    return completed, json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def toy_models(tmp_path_factory) -> Path:
    """Two small real ONNX models with cards: a region model (the chain's first link) and a finding."""
    from radreview.inference.toy import toy_card, write_toy_model

    folder = tmp_path_factory.mktemp("models")
    write_toy_model(folder / "region.onnx", toy_card("toy-region", [("hand", "region"), ("leg", "region")],
                                                     activation="softmax"))
    write_toy_model(folder / "fracture.onnx", toy_card("toy-fracture", [("fractured", "fracture")]), seed=1)
    return folder


def _checks(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


@pytest.mark.slow
def test_smoke_test_passes_with_real_models(toy_models: Path, tmp_path: Path) -> None:
    completed, result = _run(["-m", "radreview.smoke_test", "--models", str(toy_models)], tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert result["schema"] == SCHEMA and result["ok"] is True and result["frozen"] is False
    checks = _checks(result)
    assert list(checks) == ["environment", "imports", "decoders", "demo_study", "models", "reader_study",
                            "dicom_results", "window"]
    assert "SR" in checks["dicom_results"]["detail"]["objects"]
    assert checks["imports"]["detail"]["modules"] > 20
    assert all(c["ok"] for c in checks.values())
    assert result["provider"] == "cpu"
    # every model ran on every demo image, with one probability per label
    images = checks["demo_study"]["detail"]["images"]
    assert images >= 3
    assert set(result["predictions"]) == {"toy-region 1.0", "toy-fracture 1.0"}
    for per_image in result["predictions"].values():
        assert len(per_image) == images
        for labels in per_image.values():
            assert all(0.0 <= p <= 1.0 for p in labels.values())
    for per_image in result["predictions"]["toy-region 1.0"].values():
        assert abs(sum(per_image.values()) - 1.0) < 1e-5  # softmax over the region task
    # the window drew the demo study and its picture was kept beside the result
    window = checks["window"]["detail"]
    assert Path(window["screenshot"]) == tmp_path / "smoke.png" and window["grey_levels"] >= 16
    assert window["qt_platform"] == "offscreen"
    assert "PASSED" in completed.stdout


@pytest.mark.slow
def test_smoke_test_fails_on_a_broken_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.onnx").write_bytes(b"this is not an ONNX file")
    completed, result = _run(["-m", "radreview.smoke_test", "--models", str(models), "--skip", "window"], tmp_path)
    assert completed.returncode == 1
    assert result["ok"] is False
    checks = _checks(result)
    assert checks["models"]["ok"] is False and "broken.onnx" in checks["models"]["error"]
    assert checks["demo_study"]["ok"] is True  # one failure does not stop the other checks
    assert "FAILED" in completed.stdout


@pytest.mark.slow
def test_smoke_test_fails_without_models_or_demo(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    completed, result = _run(["-m", "radreview.smoke_test", "--models", str(empty), "--demo",
                              str(tmp_path / "no-demo"), "--skip", "window"], tmp_path)
    assert completed.returncode == 1
    checks = _checks(result)
    assert "no shipped models" in checks["models"]["error"]
    assert "demo studies are missing" in checks["demo_study"]["error"]


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_MODELS, reason="models/ holds no shipped model yet")
def test_radreview_smoke_test_with_the_shipped_models(tmp_path: Path) -> None:
    """The command the installers run: ``radreview --smoke-test`` (through the CLI's view dispatch)."""
    completed, result = _run(["-c", "import sys; from radreview.cli import main; sys.exit(main())",
                              "--smoke-test"], tmp_path)
    assert completed.returncode == 0, json.dumps(result["checks"], indent=1)[:4000]
    assert len(result["predictions"]) == len(SHIPPED_MODELS)  # every shipped model ran
    assert _checks(result)["models"]["detail"]["provider"] == "cpu"


def test_every_decoder_plugin_decodes_exactly(tmp_path: Path) -> None:
    detail = check_decoders(SmokeContext(models_dir=tmp_path, demo_dir=tmp_path))["decoded"]
    assert detail["RLE Lossless"]["pylibjpeg"] == "exact"
    assert detail["JPEG 2000 Image Compression (Lossless Only)"]["gdcm"] == "exact"
    assert detail["JPEG 2000 Image Compression (Lossless Only)"]["pylibjpeg"] == "exact"
    assert detail["JPEG-LS Lossless Image Compression"]["gdcm"] == "exact"
    assert all(v == "exact" for row in detail.values() for v in row.values())


def test_compare_predictions() -> None:
    a = {"predictions": {"m 1": {"img": {"x": 0.25, "y": 0.75}}}}
    assert compare_predictions(a, json.loads(json.dumps(a))) == []
    b = {"predictions": {"m 1": {"img": {"x": 0.25, "y": 0.7501}}}}
    assert compare_predictions(a, b) == ["m 1 / img / y: 0.75 vs 0.7501"]
    assert compare_predictions(a, b, atol=1e-3) == []
    c = {"predictions": {"m 1": {"img": {"x": 0.25, "y": 0.75}}, "m 2": {"img": {"z": 0.5}}}}
    assert compare_predictions(a, c) == ["model 'm 2' is only in the second result"]
    assert compare_predictions({"predictions": {}}, {"predictions": {}}) == ["the first result has no predictions"]
