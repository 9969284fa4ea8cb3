"""Regenerate docs/ai_panel_in_scope.png and docs/ai_panel_out_of_scope.png: the AI panel on a
radiograph inside the shipped model's scope (a finding with its heatmap) and on one outside it.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_ai_screenshots.py \
        [--inside FILE] [--outside FILE] [--models DIR] [--only inside|outside]

Defaults: the demo hand radiograph (FracAtlas, resources/demo) inside, and pydicom-data's CR
chest radiograph RG1_UNCR.dcm outside (an MSK model has no business reading a chest); the
shipped models. Uses a throw-away settings folder so a user's own settings are left alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"


def _pydicom_data(name: str) -> Path:
    import data_store

    return sorted(Path(data_store.__file__).parent.rglob(name))[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inside", type=Path, default=REPO_ROOT / "resources/demo/DEMO_HAND/IMG0000019.dcm")
    parser.add_argument("--outside", type=Path, default=None, help="default: pydicom-data RG1_UNCR.dcm")
    parser.add_argument("--models", type=Path, default=None, help="default: the shipped models")
    parser.add_argument("--only", choices=("inside", "outside"), default=None, help="make one of the two")
    args = parser.parse_args(argv)
    os.environ["RADREVIEW_CONFIG_DIR"] = tempfile.mkdtemp(prefix="radreview_shot_")
    sys.path.insert(0, str(REPO_ROOT))
    from PIL import Image

    from radreview.gui.ai_settings import AiSettings
    from radreview.gui.app import application
    from radreview.gui.main_window import MainWindow

    app = application()
    window = MainWindow(save_on_close=False)
    panel = window.ai_panel
    if args.models is not None:
        panel.apply_settings(AiSettings(models_dir=str(args.models)))
    window.resize(1500, 900)
    window.show()

    def settle(condition=lambda: True, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while (window.is_busy() or not condition()) and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.01)
        for _ in range(30):  # let the docks lay out and paint
            app.processEvents()
            time.sleep(0.02)

    settle(lambda: panel.state is not None)
    outside = args.outside or _pydicom_data("RG1_UNCR.dcm")
    shots = {"inside": (args.inside, "ai_panel_in_scope.png"), "outside": (outside, "ai_panel_out_of_scope.png")}
    for key, (path, name) in shots.items():
        if args.only not in (None, key):
            continue
        window.close_all()
        window.open_paths([str(path)])
        settle(lambda: panel.result is not None)
        out = DOCS / name
        window.grab().save(str(out), "PNG")
        Image.open(out).convert("RGB").quantize(colors=192).save(out, optimize=True)
        print(f"wrote {out} ({out.stat().st_size // 1024} KB): {panel.verdict_label.text()}")
    window.close()
    window.deleteLater()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
