"""Regenerate docs/screenshot.png: what a user sees on the bundled demo studies.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshot.py [--out PATH]

(or under ``xvfb-run -s "-screen 0 1600x1000x24"``). Opens resources/demo as `make run` does,
with the shipped models, and goes through the demo images (the FracAtlas ones first, in the
study browser's order) until the AI panel lists a finding (not the body-region link) whose heatmap shows something, taking a
*likely* one if any image has it; selects that finding, so its heatmap lies over the image and
the panel shows its probability and tier, and saves the window. Every wait for the workers
(decoding, the classifiers) has a timeout and fails with a message rather than hanging.
Uses a throw-away settings folder so a user's own settings are left alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "docs" / "screenshot.png"
WINDOW_SIZE = (1500, 900)


class ScreenshotError(RuntimeError):
    pass


def make_screenshot(out: Path = OUT, timeout: float = 120.0) -> str:
    """Write the screenshot to ``out``; return a line saying what it shows."""
    os.environ["RADREVIEW_CONFIG_DIR"] = tempfile.mkdtemp(prefix="radreview_shot_")
    sys.path.insert(0, str(REPO_ROOT))
    import numpy as np
    from PIL import Image

    from radreview.gui.app import application
    from radreview.gui.main_window import MainWindow
    from radreview.studies import demo_dir

    app = application()
    window = MainWindow(save_on_close=False)
    window.resize(*WINDOW_SIZE)
    window.show()
    panel = window.ai_panel
    # The image on screen when each result (or failure) reached the panel: the panel only passes
    # on results for the image it shows, so this says whose result it was.
    answered: list[object] = []
    panel.results_shown.connect(lambda _result: answered.append(window.active_view().entry))
    panel.controller.failed.connect(lambda _key, _message: answered.append(window.active_view().entry))

    def wait_for(condition, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ScreenshotError(f"timed out after {timeout:.0f} s waiting for {what}")
            app.processEvents()
            time.sleep(0.01)

    def settle(seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    try:
        wait_for(lambda: panel.state is not None, "the models to load")
        if not panel.state.engine.models:
            raise ScreenshotError("no usable model: " + (panel.status.text() or "the AI panel lists none"))
        window.open_paths([demo_dir()])
        wait_for(lambda: window.current is not None and not window.is_busy(), "the demo studies to open")
        window.set_layout("1x1")
        entries = [image for study in window.index.studies() for image in study.images()]
        # The FracAtlas demo studies (patient IDs DEMO-...) first: their truth is known
        # (resources/demo/README.md), so the picture shows the AI on a real finding.
        entries.sort(key=lambda e: not str(getattr(e, "patient_key", "")).startswith("DEMO"))
        chosen = fallback = None

        def show(entry) -> None:  # noqa: ANN001
            before = len(answered)
            window.show_entry(entry)
            wait_for(lambda: any(e is entry for e in answered[before:]), f"the AI results for {entry}")

        for entry in entries:
            show(entry)
            if panel.result is None:  # the classifiers could not run on it
                continue
            for key, label in _findings_with_heatmaps(panel, np, settle):
                if label.tier == "likely":
                    chosen = (entry, key, label)
                    break
                fallback = fallback or (entry, key, label)
            if chosen:
                break
        chosen = chosen or fallback
        if chosen is None:
            raise ScreenshotError("no demo image has a finding with a heatmap to show")
        entry, key, label = chosen
        show(entry)
        panel.select_label(key)
        wait_for(lambda: panel.overlay.is_shown(), "the heatmap")
        settle(0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not window.grab().save(str(out), "PNG"):
            raise ScreenshotError(f"{out}: could not write the PNG")
        # Keep the file small: a palette PNG of the screenshot reads the same.
        Image.open(out).convert("RGB").quantize(colors=192).save(out, optimize=True)
        return (f"wrote {out} ({out.stat().st_size // 1024} KB): {label.display_name} "
                f"p={label.probability:.2f} ({label.tier}) on {entry.path.relative_to(REPO_ROOT)}")
    finally:
        window.close()
        window.deleteLater()
        app.processEvents()


def _findings_with_heatmaps(panel, np, settle):  # noqa: ANN001, ANN202 - np and settle from the caller
    """(key, label) for each finding in the panel's table, in its order, whose heatmap is not empty."""
    labels = {label.key: label for label in panel.result.labels}
    for row in range(panel.table.rowCount()):
        key = panel.table.item(row, 0).data(0x0100)  # Qt.ItemDataRole.UserRole
        label = labels.get(key)
        if label is None or label.task == "region" or label.geometry is None:
            continue
        panel.select_label(key)
        settle(0.05)
        image = panel.overlay.item.image
        if panel.overlay.is_shown() and image is not None and float(np.max(image)) > 0:
            yield key, label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the PNG (default: {OUT})")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each worker result")
    args = parser.parse_args(argv)
    try:
        print(make_screenshot(args.out, args.timeout))
    except ScreenshotError as exc:
        print(f"make_screenshot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
