"""Regenerate docs/screenshot.png: the viewer on the bundled demo studies.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshot.py

(or with QT_QPA_PLATFORM=offscreen). Opens resources/demo as `make run` does, shows the two-view
DEMO LEG study side by side (layout 1x2), draws a ruler on the lateral view, and saves the
window. Uses a throw-away settings folder so a user's own settings are left alone.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "docs" / "screenshot.png"


def main() -> int:
    os.environ["RADREVIEW_CONFIG_DIR"] = tempfile.mkdtemp(prefix="radreview_shot_")
    sys.path.insert(0, str(REPO_ROOT))
    from PIL import Image
    from PySide6.QtCore import QPointF

    from radreview.gui.app import application
    from radreview.gui.main_window import MainWindow
    from radreview.studies import demo_dir

    app = application()
    window = MainWindow(save_on_close=False)
    window.resize(1500, 900)
    window.show()

    def settle(condition=lambda: True, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while (window.is_busy() or not condition()) and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.01)

    window.open_paths([demo_dir()])
    settle(lambda: window.current is not None)
    window.set_layout("1x2")
    leg = next(s for s in window.index.studies() if len(s.images()) == 2)
    window.show_entry(leg.images()[1])
    settle(lambda: all(v.decoded is not None for v in window.views()))
    view = window.active_view()
    rows, cols = view.decoded.shape
    view.add_ruler(QPointF(cols * 0.35, rows * 0.30), QPointF(cols * 0.40, rows * 0.62))
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    window.grab().save(str(OUT), "PNG")
    # Keep the file small: a palette PNG of the screenshot reads the same.
    Image.open(OUT).convert("RGB").quantize(colors=192).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")
    window.close()
    window.deleteLater()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
