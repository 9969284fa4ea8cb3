"""The layering rules of DESIGN.md, enforced: no Qt outside gui/, no torch outside training/."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def test_import_linter_contracts_hold() -> None:
    lint = REPO_ROOT / ".venv" / "bin" / "lint-imports"
    cmd = [str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"]
    result = subprocess.run(
        [*cmd, "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_viewer_and_cli_do_not_load_torch() -> None:
    """The packaged viewer ships without torch: importing it must not pull torch in."""
    code = (
        "import sys, radreview.cli, radreview.studies, radreview.inference, radreview.metrics, "
        "radreview.readerstudy\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('radreview.gui.main_window'):\n"
        "    import radreview.gui.main_window\n"
        "bad = [m for m in ('torch', 'torchvision', 'pytorch_grad_cam') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    _assert_runs_clean(code, QT_QPA_PLATFORM="offscreen")


def test_predicting_with_the_shipped_models_loads_no_onnx_package() -> None:
    """The installer leaves onnx, protobuf and ml_dtypes out (installer/bundle.py): finding,
    checking and running models, and writing heatmap files, must not need them."""
    code = (
        "import sys, tempfile\n"
        "from radreview.inference.batch import predict_paths\n"
        "from radreview.inference.engine import Engine\n"
        "from radreview.inference.registry import discover\n"
        "catalog = discover(['models'])\n"
        "assert catalog.models and not catalog.problems, catalog.problems\n"
        "result = predict_paths(['resources/demo/DEMO_HAND'], Engine(catalog.models, provider='cpu'),\n"
        "                       cam_dir=tempfile.mkdtemp(), workers=1)\n"
        "assert result.images and result.cam_files and not result.problems\n"
        "bad = [m for m in ('onnx', 'google.protobuf', 'ml_dtypes') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    _assert_runs_clean(code)


def _assert_runs_clean(code: str, **env: str) -> None:
    """Run ``code`` in a fresh interpreter at the repository root (nothing imported yet)."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert result.returncode == 0, result.stderr
