"""The reading window driven with qtbot: the scripted sequential study (3 readers x 40 FracAtlas
cases) read through the GUI gives the same exports and statistics as through the data layer;
sign-in, resume, timing and telemetry."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from _readerstudy_support import PIN, answer_key, make_study
from PySide6.QtCore import Qt

from radreview.gui.reading import ReadingWindow, SignInDialog
from radreview.readerstudy.db import open_database
from radreview.readerstudy.export import write_tidy_csv
from radreview.readerstudy.reading import sign_in
from radreview.readerstudy.scripted_reader import read_all, scripted_answer
from radreview.readerstudy.stats import compute_statistics

pytestmark = pytest.mark.gui

# Columns that must agree between the two paths (ids, clocks and telemetry differ by nature).
SAME = ("reader", "case", "truth", "modality", "session", "position", "revision", "decision",
        "confidence", "rating", "ai_agreement", "changed", "ai_shown_probability", "ai_sham", "comment")


def _sign_in_with_dialog(qtbot, db, reader: str, pin: str) -> SignInDialog:  # type: ignore[no-untyped-def]
    dialog = SignInDialog(db, "wrist-2026")
    qtbot.addWidget(dialog)
    qtbot.keyClicks(dialog.reader_edit, reader)
    qtbot.keyClicks(dialog.pin_edit, pin)
    dialog.try_sign_in()
    return dialog


def _click(qtbot, button) -> None:  # type: ignore[no-untyped-def]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _read_case_in_gui(qtbot, window: ReadingWindow, key: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    answer = scripted_answer(window.reader.reader_code, window.case, key)
    _click(qtbot, window.present_button if answer.decision else window.absent_button)
    window.confidence_spin.setValue(int(answer.confidence))
    _click(qtbot, window.rating_group.button(answer.rating))
    if answer.ai_agreement:
        _click(qtbot, window.agree_button if answer.ai_agreement == "agree" else window.disagree_button)
    window.comment.setText(answer.comment)
    with qtbot.waitSignal(window.saved, timeout=5000):
        _click(qtbot, window.save_button)


@pytest.mark.slow
def test_scripted_study_through_gui_equals_data_layer(qtbot, tmp_path, fracatlas_dir) -> None:
    (tmp_path / "gui").mkdir()
    (tmp_path / "api").mkdir()
    db_gui = open_database(tmp_path / "gui" / "study.db")
    db_api = open_database(tmp_path / "api" / "study.db")
    design = {"confidence_scale": "both", "sham_share": 0.1}
    gui = make_study(db_gui, tmp_path / "gui", fracatlas_dir, **design)
    api = make_study(db_api, tmp_path / "api", fracatlas_dir, **design)
    for reader in ("R1", "R2", "R3"):
        key = answer_key(api, reader)
        read_all(sign_in(db_api, "wrist-2026", reader, PIN), key)
        dialog = _sign_in_with_dialog(qtbot, db_gui, reader, PIN)
        window = ReadingWindow(dialog.reader_session)
        qtbot.addWidget(window)
        while window.case is not None:
            _read_case_in_gui(qtbot, window, key)
        assert "All your cases are read" in window.phase_label.text()
        window.close()

    def rows(coordinator, folder):  # type: ignore[no-untyped-def]
        path = write_tidy_csv(coordinator, folder / "reads.csv")
        return [{c: r[c] for c in SAME} for r in csv.DictReader(path.open())]

    gui_rows, api_rows = rows(gui, tmp_path / "gui"), rows(api, tmp_path / "api")
    assert len(gui_rows) == 240 and gui_rows == api_rows
    gui_stats, api_stats = compute_statistics(gui).to_dict(), compute_statistics(api).to_dict()
    for a, b in zip(gui_stats["readers"], api_stats["readers"], strict=True):
        assert (a["reader"], a["modality"]) == (b["reader"], b["modality"])
        assert a["auc"] == b["auc"] and a["kappa_truth"] == b["kappa_truth"] and a["kappa_ai"] == b["kappa_ai"]
    assert gui_stats["mrmc"]["F"] == pytest.approx(api_stats["mrmc"]["F"])
    timed = [r for r in gui.reads() if r["total_time_ms"] is not None]
    assert len(timed) == 240 and all(r["time_to_first_decision_ms"] <= r["total_time_ms"] for r in timed)
    db_gui.close()
    db_api.close()


def test_sign_in_refuses_a_wrong_pin(qtbot, tmp_path, fracatlas_dir) -> None:
    db = open_database(tmp_path / "study.db")
    make_study(db, tmp_path, fracatlas_dir, readers=1, n=6)
    dialog = _sign_in_with_dialog(qtbot, db, "R1", "1111")
    assert dialog.reader_session is None and "wrong PIN" in dialog.error.text()
    assert dialog.pin_edit.text() == ""
    db.close()


def test_sequential_flow_keys_telemetry_and_resume(qtbot, tmp_path, fracatlas_dir) -> None:
    db = open_database(tmp_path / "study.db")
    coordinator = make_study(db, tmp_path, fracatlas_dir, readers=1, n=6, confidence_scale="0-100")
    # A heatmap for every case, as the AI outputs may carry one.
    heatmap = tmp_path / "heat.npy"
    np.save(heatmap, np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
    from radreview.readerstudy.schema import AIOutputRow
    with db.transaction() as session:  # AI outputs are not append-only: set up the heatmap path
        for row in session.query(AIOutputRow):
            row.heatmap_path = str(heatmap)
    window = ReadingWindow(_sign_in_with_dialog(qtbot, db, "R1", PIN).reader_session)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    first = window.case
    assert first.phase == "unaided" and not window.ai_box.isVisible()
    assert window.view._caption.text() == first.case_code  # no file name, no patient data
    assert window.save_button.text().startswith("Lock")
    window.save()  # nothing chosen yet: refused with a message, nothing saved
    assert "Choose present" in window.message.text() and coordinator.reads() == []
    window.view.zoom(1.5)
    window.view.set_window(type(window.view.window)(center=100.0, width=150.0))
    window.set_decision(1)
    window.set_confidence(80)
    window.save()
    assert window.case.assignment_id == first.assignment_id and window.case.phase == "aided"
    # a probability-only AI file: the probability in the presentation's words, and why no tier
    assert window.ai_box.isVisible() and "no tier" in window.ai_text()
    assert window.confidence_spin.value() == 80  # the aided form starts from the locked read
    assert window.heatmap_shown()  # the file's own .npy map, on by default as in the viewer
    window.heatmap_check.setChecked(False)
    assert not window.heatmap_shown()
    window.heatmap_check.setChecked(True)
    window.opacity_slider.setValue(70)
    window.set_decision(0)
    window.save()
    assert "agree" in window.message.text().lower()  # agreement is required with the AI shown
    window.set_agreement("disagree")
    window.save()
    reads = coordinator.reads()
    unaided = next(r for r in reads if r["modality"] == "unaided")
    aided = next(r for r in reads if r["modality"] == "aided")
    kinds = [e["kind"] for e in unaided["telemetry"]]
    assert "zoom" in kinds and "window" in kinds and "decision" in kinds
    assert {"heatmap", "heatmap_opacity", "agreement"} <= {e["kind"] for e in aided["telemetry"]}
    assert aided["changed"] is True and aided["ai_agreement"] == "disagree"
    assert 0 <= unaided["time_to_first_decision_ms"] <= unaided["total_time_ms"]
    second = window.case
    window.set_decision(1)
    window.set_confidence(60)
    window.save()  # lock case 2, then leave before its aided read
    window.close()
    next(b for b in window.close_dialog.buttons() if b.text() == "Leave").click()
    resumed = ReadingWindow(sign_in(db, "wrist-2026", "R1", PIN))
    qtbot.addWidget(resumed)
    assert (resumed.case.assignment_id, resumed.case.phase) == (second.assignment_id, "aided")
    assert resumed.case.position == 2 and resumed.case.unaided_read.confidence == 60
    db.close()


def test_decision_keys_and_typing_a_comment(qtbot, tmp_path, fracatlas_dir) -> None:
    db = open_database(tmp_path / "study.db")
    coordinator = make_study(db, tmp_path, fracatlas_dir, readers=1, n=4, mode="aided",
                             confidence_scale="5-point")
    window = ReadingWindow(sign_in(db, "wrist-2026", "R1", PIN))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key.Key_P)
    qtbot.keyClick(window.view, Qt.Key.Key_4)
    qtbot.keyClick(window.view, Qt.Key.Key_A)
    assert window.decision_group.checkedId() == 1 and window.rating_group.checkedId() == 4
    window.comment.setFocus()
    qtbot.keyClicks(window.comment, "Nad")  # letters go to the comment, not to the shortcuts
    assert window.comment.text() == "Nad" and window.decision_group.checkedId() == 1
    window.view.setFocus()
    with qtbot.waitSignal(window.saved, timeout=5000):
        qtbot.keyClick(window.view, Qt.Key.Key_Return)
    read = coordinator.reads()[0]
    assert (read["decision"], read["rating"], read["ai_agreement"], read["comment"]) == (1, 4, "agree", "Nad")
    assert read["confidence"] is None
    db.close()


def test_viewer_menu_opens_the_reading_window(qtbot, tmp_path, fracatlas_dir) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from radreview.gui.main_window import MainWindow
    from radreview.gui.settings import ViewerSettings

    db = open_database(tmp_path / "study.db")
    make_study(db, tmp_path, fracatlas_dir, readers=1, n=4)
    db.close()
    main_window = MainWindow(settings=ViewerSettings(), save_on_close=False)
    qtbot.addWidget(main_window)
    action = main_window.actions_by_name["reader_study"]
    assert action in main_window.menus["File"].actions()

    def type_credentials() -> None:  # what the reader types into the modal sign-in dialog
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, SignInDialog):
            QTimer.singleShot(20, type_credentials)
            return
        dialog.reader_edit.setText("R1")
        dialog.pin_edit.setText(PIN)
        dialog.try_sign_in()

    QTimer.singleShot(0, type_credentials)
    main_window.open_reader_study(str(tmp_path / "study.db"))
    window = main_window._reading_window
    qtbot.addWidget(window)
    assert isinstance(window, ReadingWindow) and window.case.position == 1
    assert window.reader.reader_code == "R1"


# A reading window in its own process, answering by itself (scripted_answer) through the window's
# own controls and printing each committed save: the viewer that the crash test kills.
_AUTOPILOT = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from radreview.gui.reading import ReadingWindow
from radreview.readerstudy.db import open_database
from radreview.readerstudy.reading import sign_in
from radreview.readerstudy.scripted_reader import scripted_answer

app = QApplication([])
window = ReadingWindow(sign_in(open_database(sys.argv[1]), "wrist-2026", "R1", sys.argv[2]))
window.saved.connect(lambda read_id: print("saved", read_id, flush=True))
window.finished.connect(app.quit)

def step():
    if window.case is None:
        app.quit()
        return
    answer = scripted_answer("R1", window.case)
    window.set_decision(answer.decision)
    window.set_confidence(answer.confidence)
    if answer.ai_agreement:
        window.set_agreement(answer.ai_agreement)
    window.save()
    QTimer.singleShot(0, step)

QTimer.singleShot(0, step)
app.exec()
"""


@pytest.mark.slow
def test_kill_9_of_the_reading_window_process(tmp_path, fracatlas_dir) -> None:
    import random
    import subprocess
    import sys
    import time

    db = open_database(tmp_path / "study.db")
    coordinator = make_study(db, tmp_path, fracatlas_dir, readers=1, n=20, confidence_scale="0-100")
    reader = sign_in(db, "wrist-2026", "R1", PIN)
    rng = random.Random(9)
    for kill in range(5):
        expected = next((a, missing[0]) for a, _, _, missing in reader.worklist() if missing)
        process = subprocess.Popen([sys.executable, "-c", _AUTOPILOT, str(tmp_path / "study.db"), PIN],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
        lines = [process.stdout.readline() for _ in range(rng.randint(1, 5))]
        time.sleep(rng.uniform(0.0, 0.02))
        process.kill()
        out, err = process.communicate()
        saved = [int(line.split()[1]) for line in "".join(lines).splitlines() + out.splitlines()
                 if line.startswith("saved ")]
        assert saved, err
        ours = {r.id: r for r in reader.my_reads()}
        assert all(read_id in ours for read_id in saved), f"kill {kill}: a saved read is missing"
        first = ours[saved[0]]
        assert (first.assignment_id, first.phase) == expected, f"kill {kill}: did not resume"
        keys = [(r.assignment_id, r.phase) for r in ours.values()]
        assert len(keys) == len(set(keys)), f"kill {kill}: duplicated read"
    assert len(coordinator.reads()) == len(reader.my_reads())
    db.close()


def test_crossover_second_session_waits_for_the_washout(qtbot, tmp_path, fracatlas_dir) -> None:
    db = open_database(tmp_path / "study.db")
    make_study(db, tmp_path, fracatlas_dir, readers=1, n=4, mode="crossover", washout_days=14)
    read_all(sign_in(db, "wrist-2026", "R1", PIN))  # the first session, through the data layer
    window = ReadingWindow(sign_in(db, "wrist-2026", "R1", PIN))
    qtbot.addWidget(window)
    assert window.case is None and "washout" in window.phase_label.text()
    assert not window.save_button.isEnabled()
    db.close()
