"""Regenerate docs/reading_aided_heatmap.png: the reading window's aided read with the heatmap.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_reading_screenshot.py [WORK_DIR]

Follows the README's reader-study recipe on twelve FracAtlas radiographs (CC BY 4.0) from the
shared data: ``radreview predict`` (default JSON output, ``--key``, ``--cam-dir``), ``study create
--ai predictions.json``, ``study add-reader``; then signs reader r1 in, locks the unaided read of
the first case whose AI says "likely", and saves the window as the AI and its heatmap appear.
Uses a throw-away settings folder and work folder (or WORK_DIR).
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "docs" / "reading_aided_heatmap.png"
FRACATLAS = REPO_ROOT.parent / "shared" / "data" / "fracatlas"
PIN = "r1-pin-2468"


def prepare(work: Path) -> Path:
    """The recipe's files and commands; returns the study database."""
    from radreview.cli import main as radreview

    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader((FRACATLAS / "dataset.csv").open()))
    chosen = ([(r["image_id"], 1, "Fractured") for r in rows if r["fractured"] == "1"][:6]
              + [(r["image_id"], 0, "Non_fractured") for r in rows if r["fractured"] == "0"][:6])
    with (work / "cases.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "images", "truth"])
        for n, (image_id, truth, folder) in enumerate(chosen, start=1):
            shutil.copy(FRACATLAS / "images" / folder / image_id, images / image_id)
            writer.writerow([f"case{n:02d}", f"images/{image_id}", truth])
    os.chdir(work)
    assert radreview(["predict", "images/", "--out", "predictions.json", "--key", "predictions-key.csv",
                      "--cam-dir", "heatmaps/", "--quiet"]) == 0
    assert radreview(["study", "create", "--db", "study.sqlite", "--name", "wrist", "--cases", "cases.csv",
                      "--ai", "predictions.json", "--ai-label", "fracture", "--mode", "sequential",
                      "--scale", "both", "--seed", "7"]) == 0
    os.environ["RADREVIEW_READER_PIN"] = PIN
    assert radreview(["study", "add-reader", "--db", "study.sqlite", "--reader", "r1"]) == 0
    return work / "study.sqlite"


def main() -> int:
    os.environ["RADREVIEW_CONFIG_DIR"] = tempfile.mkdtemp(prefix="radreview_shot_")
    sys.path.insert(0, str(REPO_ROOT))
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="radreview_study_"))
    database = prepare(work)

    from radreview.gui.app import application
    from radreview.gui.reading import ReadingWindow
    from radreview.readerstudy.db import open_database
    from radreview.readerstudy.reading import sign_in

    app = application()
    db = open_database(database, must_exist=True)
    window = ReadingWindow(sign_in(db, "wrist", "r1", PIN))
    window.resize(1500, 900)
    window.show()
    for _ in range(20):
        app.processEvents()
    while window.case is not None:
        case = window.case
        if case.phase == "aided" and any(ai.tier == "likely" for ai in case.ai):
            break
        window.set_decision(0)
        window.set_confidence(30)
        window.set_rating(2)
        if case.phase == "aided":
            window.set_agreement("disagree")
        window.save()
        # Lock the unaided read of this case: the next form is its aided read with the AI.
    for _ in range(50):
        app.processEvents()
    if window.case is None or not window.heatmap_shown():
        print("no aided read with a heatmap on screen", file=sys.stderr)
        return 1
    window.grab().save(str(OUT), "PNG")
    print(f"saved {OUT} (case {window.case.case_code})")
    window._leave_confirmed = True  # a screenshot run, not a reader leaving mid-case
    window.close()
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
