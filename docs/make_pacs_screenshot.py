"""Regenerate docs/pacs_dialog.png: File ▸ PACS… after a search and a C-GET, against a throwaway
Orthanc holding the bundled demo studies.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_pacs_screenshot.py

Needs Orthanc (apt-get install orthanc orthanc-dicomweb); starts it with
scripts/start_test_orthanc.sh and stops it afterwards. Settings and cache are temporary folders,
so a user's own are left alone. The patients shown are the demo studies' invented ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "docs" / "pacs_dialog.png"


def start_orthanc() -> dict[str, str]:
    done = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "start_test_orthanc.sh")], capture_output=True,
                          text=True, check=True)
    values = {}
    for line in done.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = value
    return values


def main() -> int:
    os.environ["RADREVIEW_CONFIG_DIR"] = tempfile.mkdtemp(prefix="radreview_shot_")
    cache = Path(tempfile.mkdtemp(prefix="radreview_shot_cache_"))
    sys.path.insert(0, str(REPO_ROOT))
    orthanc = start_orthanc()
    try:
        from PIL import Image

        from radreview.gui.app import application
        from radreview.gui.main_window import MainWindow
        from radreview.pacs import LocalAE, PacsNode, PacsSettings, save_pacs_settings
        from radreview.pacs.send import dicom_files, send
        from radreview.studies import demo_dir

        aet, _, address = orthanc["RADREVIEW_TEST_ORTHANC"].partition("@")
        host, _, port = address.rpartition(":")
        move_aet, _, move = orthanc["RADREVIEW_TEST_ORTHANC_MOVE"].partition("@")
        node = PacsNode("hospital-pacs", aet, host, int(port), orthanc["RADREVIEW_TEST_ORTHANC_HTTP"] + "/dicom-web")
        settings = PacsSettings(LocalAE(move_aet, int(move.rpartition(":")[2])), [node])
        save_pacs_settings(settings)
        files = [p for p in dicom_files([demo_dir()]) if p.name != "DICOMDIR" and p.suffix.lower() != ".jpg"]
        send(node, files, move_aet)

        app = application()
        window = MainWindow(save_on_close=False)
        window.resize(1400, 860)
        window.show()
        window.actions_by_name["pacs"].trigger()
        dialog = window.pacs_dialog
        dialog.cache_root = cache
        dialog.resize(1180, 560)

        def settle(condition, timeout: float = 60.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition() and time.monotonic() < deadline:
                app.processEvents()
                time.sleep(0.01)

        dialog.search_button.click()
        settle(lambda: not dialog.is_busy() and dialog.table.rowCount() > 0)
        row = next(r for r in range(dialog.table.rowCount()) if dialog.table.item(r, 1).text() == "DEMO-0002")
        dialog.select_rows([row])
        dialog.open_check.setChecked(False)  # the picture is of the dialog
        dialog.retrieve_button.click()
        settle(lambda: not dialog.is_busy())
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        dialog.grab().save(str(OUT), "PNG")
        Image.open(OUT).convert("RGB").quantize(colors=128).save(OUT, optimize=True)
        print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")
        window.close()
    finally:
        os.kill(int(orthanc["RADREVIEW_TEST_ORTHANC_PID"]), signal.SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
