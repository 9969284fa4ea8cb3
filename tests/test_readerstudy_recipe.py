"""The README's reader-study recipe, run literally: its commands as written, in a folder holding
``images/`` (twelve FracAtlas radiographs, CC BY 4.0) and ``cases.csv``, with the shipped model.
``study read`` (the reading window) is driven by the scripted reader's answers through the window's
own controls; the exports must record per case whether the heatmap was shown."""

from __future__ import annotations

import csv
import shlex
import shutil

import pytest
from conftest import REPO_ROOT

from radreview.cli import main

pytestmark = [pytest.mark.gui, pytest.mark.slow]
PIN = "kestrel-7391"


def recipe() -> list[list[str]]:
    """The commands of the README's "A reader study, step by step" block, as argument lists."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("### A reader study, step by step", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands, pending = [], ""
    for line in block.splitlines():
        line = line.split("  #", 1)[0].rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            commands.append(shlex.split(line))
    assert all(c[0] == "radreview" for c in commands)
    return commands


def test_the_readme_recipe_runs_literally(qtbot, tmp_path, fracatlas_dir, monkeypatch) -> None:
    from radreview.gui.reading import ReadingWindow
    from radreview.readerstudy.db import open_database
    from radreview.readerstudy.reading import sign_in
    from radreview.readerstudy.scripted_reader import scripted_answer

    rows = list(csv.DictReader((fracatlas_dir / "dataset.csv").open()))
    (tmp_path / "images").mkdir()
    with (tmp_path / "cases.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "images", "truth"])
        for truth, folder in ((1, "Fractured"), (0, "Non_fractured")):
            for row in [r for r in rows if r["fractured"] == str(truth)][:6]:
                shutil.copy(fracatlas_dir / "images" / folder / row["image_id"], tmp_path / "images")
                writer.writerow([row["image_id"].removesuffix(".jpg"), f"images/{row['image_id']}", truth])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RADREVIEW_READER_PIN", PIN)
    commands = recipe()
    assert [c[1:3] for c in commands] == [["predict", "images/"], ["study", "create"], ["study", "add-reader"],
                                          ["study", "read"], ["study", "status"], ["study", "export"]]
    for command in commands:
        if command[1:3] == ["study", "read"]:
            db = open_database(command[command.index("--db") + 1], must_exist=True)
            window = ReadingWindow(sign_in(db, "wrist", "r1", PIN))
            qtbot.addWidget(window)
            window.show()
            while window.case is not None:
                answer = scripted_answer("r1", window.case)
                window.set_decision(answer.decision)
                window.set_confidence(answer.confidence)
                window.set_rating(answer.rating)
                if answer.ai_agreement and window.case.phase == "aided":
                    window.set_agreement(answer.ai_agreement)
                with qtbot.waitSignal(window.saved, timeout=5000):
                    window.save()
            db.close()
            continue
        assert main(command[1:]) == 0, command
    reads = list(csv.DictReader((tmp_path / "export" / "reads.csv").open()))
    aided = [r for r in reads if r["modality"] == "aided"]
    assert len(aided) == 12 and len(reads) == 24
    assert all(r["heatmap_shown"] in ("0", "1") and r["ai_tier_shown"] for r in aided)
    shown = [r for r in aided if r["heatmap_shown"] == "1"]
    # the heatmap is gated at the "likely" cut-off: shown exactly where the AI said likely
    assert shown and all(r["ai_tier_shown"] == "likely" and int(r["heatmap_shown_ms"]) >= 0 for r in shown)
    assert all(r["heatmap_shown"] == "0" and r["heatmap_available"] == "0" for r in aided
               if r["ai_tier_shown"] != "likely")
    assert all(r["heatmap_shown"] == "" for r in reads if r["modality"] == "unaided")
    assert (tmp_path / "export" / "report.pdf").exists() and (tmp_path / "predictions-key.csv").exists()
