"""The reading window shows the AI as the viewer does, only once the design allows, and records it.

A sequential study made as the README says (predict's default JSON + key -> study create --ai) with a
scoped toy model: four in-scope frames ("likely", with a heatmap) and two outside the model's scope.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from _reading_ai_support import PIN, READER, STUDY, make_ai_study, write_scoped_model
from PySide6.QtWidgets import QApplication, QMessageBox

from radreview.gui.heatmap_overlay import HeatmapOverlay, heatmap_intensity
from radreview.gui.reading import ReadingWindow, SignInDialog
from radreview.inference.presentation import OUT_OF_SCOPE_MESSAGE
from radreview.readerstudy.coordinator import Coordinator
from radreview.readerstudy.db import open_database
from radreview.readerstudy.export import write_tidy_csv
from radreview.readerstudy.reading import sign_in

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scoped_models")
    write_scoped_model(folder)
    return folder


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, models) -> Path:
    return make_ai_study(tmp_path_factory.mktemp("ai_study"), models)


@pytest.fixture
def db(pristine, tmp_path):
    """A fresh copy of the study (the images stay where predict saw them)."""
    shutil.copy(pristine, tmp_path / "study.sqlite")
    database = open_database(tmp_path / "study.sqlite", must_exist=True)
    yield database
    database.close()


def sources(db) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.code: c.source_id for c in Coordinator(db).cases()}


def open_window(qtbot, db) -> ReadingWindow:  # type: ignore[no-untyped-def]
    window = ReadingWindow(sign_in(db, STUDY, READER, PIN))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def read_case(window: ReadingWindow, decision: int = 0, confidence: int = 40) -> None:
    """Save the form on screen (lock the unaided read, or the aided read)."""
    window.set_decision(decision)
    window.set_confidence(confidence)
    if window.case.phase == "aided":
        window.set_agreement("agree")
    before = window.case
    window.save()
    assert window.case != before, window.message.text()


def advance_to(window: ReadingWindow, db, wanted) -> str:  # type: ignore[no-untyped-def]
    """Read cases until the unaided read of a case whose source id ``wanted`` accepts is on screen."""
    names = sources(db)
    while not (window.case.phase == "unaided" and wanted(names[window.case.case_code])):
        read_case(window)
    return names[window.case.case_code]


def ai_drawn(window: ReadingWindow) -> bool:
    return window.ai_box.isVisible() or window.heatmap_shown() or bool(window.ai_label.text())


def test_heatmap_in_the_aided_read_and_not_in_the_unaided(qtbot, db, models) -> None:
    window = open_window(qtbot, db)
    source = advance_to(window, db, lambda s: s.startswith("blob"))
    assert not ai_drawn(window) and not window.overlay.has_map
    window.set_decision(1)
    window.set_confidence(70)
    window.save()  # lock: the AI appears
    assert window.case.phase == "aided" and window.ai_box.isVisible()
    assert window.heatmap_shown() and float(window.overlay.item.image.max()) > 0
    text = window.ai_text()
    assert "Positive" in text and "likely" in text and "cut-offs: possible ≥ 0.05 · likely ≥ 0.12" in text
    assert "in scope (distance" in text and window.color_bar.isVisible()
    # exactly the map the viewer draws for this image (its worker's call, its overlay function)
    from radreview.gui.inference_worker import predict_decoded
    from radreview.inference.engine import Engine
    from radreview.inference.registry import discover

    engine = Engine(discover([models]).models, provider="cpu")
    live = predict_decoded(engine, window.view.decoded, lambda: False).get("fractured")
    # with the AI panel's settings as it passes them (AiPanel.heatmap_legend): the card's colour
    # span unless the reader set one
    viewer_map = heatmap_intensity(live, window.display.cam_scale, window.display.gate, span=window.display.heatmap_span)
    assert np.array_equal(window.overlay.item.image, viewer_map)
    assert window.display.heatmap_span == 0 and window._heatmap_legend.span_source == "model card"
    window.heatmap_check.toggle()  # H off
    assert not window.heatmap_shown()
    window.heatmap_check.toggle()  # and on again
    window.set_agreement("agree")
    window.save()
    rows = {(r["case"], r["modality"]): r for r in csv.DictReader(write_tidy_csv(Coordinator(db), db_path(db)).open())}
    code = next(c for c, s in sources(db).items() if s == source)
    aided, unaided = rows[(code, "aided")], rows[(code, "unaided")]
    assert (aided["ai_in_scope"], aided["ai_tier_shown"], aided["heatmap_available"], aided["heatmap_shown"],
            aided["heatmap_toggles"]) == ("1", "likely", "1", "1", "2")
    assert int(aided["heatmap_shown_ms"]) >= 0
    assert unaided["heatmap_shown"] == "" and unaided["ai_tier_shown"] == ""  # no AI in the unaided read


def db_path(db) -> Path:  # type: ignore[no-untyped-def]
    return Path(db.url.removeprefix("sqlite:///")).with_name("reads.csv")


def test_an_out_of_scope_case_shows_the_message_and_no_heatmap(qtbot, db) -> None:
    window = open_window(qtbot, db)
    source = advance_to(window, db, lambda s: s in ("flat", "noise"))
    window.set_decision(1)
    window.set_confidence(55)
    window.save()
    assert window.case.phase == "aided" and window.ai_box.isVisible()
    text = window.ai_text()
    assert OUT_OF_SCOPE_MESSAGE in text
    assert not any(word in text for word in ("likely", "possible", "below cut-off", "Positive", "Negative"))
    assert not window.overlay.has_map and not window.heatmap_shown() and not window.heatmap_check.isEnabled()
    assert "outside the model's scope" in window.heatmap_note.text()
    assert not window.agree_widget.isVisible()  # nothing to agree with
    window.set_decision(1)
    window.save()  # no agreement asked
    code = next(c for c, s in sources(db).items() if s == source)
    aided = next(r for r in Coordinator(db).reads() if r["case"] == code and r["modality"] == "aided")
    assert (aided["ai_in_scope"], aided["ai_tier_shown"], aided["ai_agreement"]) == (False, "out_of_scope", None)
    assert (aided["heatmap_available"], aided["heatmap_shown"], aided["heatmap_shown_ms"]) == (False, False, 0)
    assert Coordinator(db).ai_outputs()[0].with_results


def test_confidence_must_be_set_before_saving(qtbot, db) -> None:
    window = open_window(qtbot, db)
    assert window.confidence_spin.text() == "not set"
    window.set_decision(1)
    window.save()
    assert "confidence" in window.message.text().lower() and Coordinator(db).reads() == []
    window.confidence_slider.setValue(50)  # the slider's middle is a value once the reader puts it there
    window.save()
    assert [r["confidence"] for r in Coordinator(db).reads()] == [50.0]


def test_resume_restores_the_whole_unaided_read_in_the_aided_form(qtbot, db) -> None:
    window = open_window(qtbot, db)
    first = window.case
    window.set_decision(1)
    window.set_confidence(73)
    window.save()  # locked; the reader stops before the aided read
    window._leave_confirmed = True
    window.close()
    resumed = open_window(qtbot, db)
    assert (resumed.case.assignment_id, resumed.case.phase) == (first.assignment_id, "aided")
    assert resumed.decision_group.checkedId() == 1 and resumed.confidence_spin.value() == 73
    assert "present, 73%" in resumed.phase_label.text()
    if resumed.agree_widget.isVisible():
        resumed.set_agreement("agree")
    resumed.save()  # nothing else to set: the unaided read's values stand unless changed
    aided = [r for r in Coordinator(db).reads() if r["modality"] == "aided"]
    assert [(r["decision"], r["confidence"], r["changed"]) for r in aided] == [(1, 73.0, False)]


def _answer_close_dialog(window: ReadingWindow, text: str) -> None:
    dialog = window.close_dialog
    assert dialog is not None and dialog.isVisible()
    button = next(b for b in dialog.buttons() if b.text() == text)
    button.click()


def test_closing_mid_case_asks_first(qtbot, db) -> None:
    window = open_window(qtbot, db)
    window.set_decision(1)
    window.close()  # Alt+F4 or the title bar's button
    assert window.isVisible() and isinstance(window.close_dialog, QMessageBox)
    assert window.case.case_code in window.close_dialog.text()
    _answer_close_dialog(window, "Keep reading")
    assert window.isVisible() and window.decision_group.checkedId() == 1
    window.close()
    _answer_close_dialog(window, "Leave")
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=3000)
    assert Coordinator(db).reads() == []
    finished = open_window(qtbot, db)
    while finished.case is not None:
        read_case(finished)
    finished.close()  # nothing open: no question
    assert not finished.isVisible() and finished.close_dialog is None


def test_no_ai_is_drawn_before_the_unaided_read_is_locked_with_the_viewer_open(
        qtbot, db, models, pristine, tmp_path, monkeypatch) -> None:
    from PySide6.QtCore import QTimer

    from radreview.gui.ai_settings import AiSettings, save_ai_settings
    from radreview.gui.main_window import MainWindow
    from radreview.gui.settings import CONFIG_DIR_ENV, ViewerSettings

    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))
    save_ai_settings(AiSettings(models_dir=str(models)))
    drawn: list[tuple[int, float]] = []  # every heatmap set on any overlay: (overlay, max intensity)
    real_set_map = HeatmapOverlay.set_map

    def recording_set_map(self, intensity, rows, cols):  # type: ignore[no-untyped-def]
        drawn.append((id(self), float(np.max(intensity))))
        return real_set_map(self, intensity, rows, cols)

    monkeypatch.setattr(HeatmapOverlay, "set_map", recording_set_map)
    viewer = MainWindow(settings=ViewerSettings(), save_on_close=False)
    qtbot.addWidget(viewer)
    viewer.show()
    qtbot.waitExposed(viewer)
    panel = viewer.ai_panel
    qtbot.waitUntil(lambda: panel.state is not None and bool(panel.state.engine.models), timeout=20000)
    images = sorted((pristine.parent / "images").glob("*.png"))
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        viewer.open_paths([str(images[0])])  # a study image, with its AI, in the viewer
    assert panel.table.rowCount() > 0 and panel.controller.cache
    shown_by_viewer: list[object] = []
    panel.results_shown.connect(shown_by_viewer.append)

    def sign_in_when_asked() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, SignInDialog):
            QTimer.singleShot(20, sign_in_when_asked)
            return
        dialog.reader_edit.setText(READER)
        dialog.pin_edit.setText(PIN)
        dialog.try_sign_in()

    QTimer.singleShot(0, sign_in_when_asked)
    viewer.open_reader_study(db.url.removeprefix("sqlite:///"))
    window = viewer._reading_window
    assert isinstance(window, ReadingWindow)
    qtbot.waitExposed(window)
    # the viewer is blind: hidden, no image, no AI row, no heatmap, nothing cached
    assert not viewer.isVisible() and viewer.current is None
    assert panel.table.rowCount() == 0 and not panel.overlay.has_map and not panel.controller.cache
    assert viewer.open_paths([str(images[1])]) is None  # refuses to show images while reading
    seen = 0
    while window.case is not None:
        if window.case.phase == "unaided":
            drawn_before = len(drawn)
            qtbot.wait(50)  # let anything queued (late AI results, repaints) arrive
            assert not ai_drawn(window), window.case.case_code
            assert len(drawn) == drawn_before and not any(m > 0 for _, m in drawn[drawn_before:])
            assert not viewer.isVisible() and panel.table.rowCount() == 0 and not panel.overlay.has_map
            window.set_decision(0)
            window.set_confidence(30)
            window.save()  # lock
            assert window.case.phase == "aided" and window.ai_box.isVisible()
            seen += 1
        else:
            read_case(window)
    assert seen == 6 and shown_by_viewer == []  # the viewer's AI showed nothing during the session
    assert any(m > 0 for _, m in drawn)  # the aided reads did draw heatmaps
    window.close()
    qtbot.waitUntil(viewer.isVisible, timeout=3000)  # the viewer comes back, empty
    assert viewer.current is None and not viewer.reading_session_open


def test_each_image_of_a_case_shows_its_own_ai(qtbot, pristine, tmp_path) -> None:
    from radreview.cli import main

    folder = pristine.parent
    cases = tmp_path / "cases.csv"
    cases.write_text(f"case_id,images,truth\ntwo,{folder / 'images' / 'blob1.png'};{folder / 'images' / 'flat.png'},1\n")
    database = tmp_path / "two.sqlite"
    assert main(["study", "create", "--db", str(database), "--name", STUDY, "--cases", str(cases),
                 "--ai", str(folder / "predictions.json"), "--mode", "sequential", "--seed", "1"]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RADREVIEW_READER_PIN", PIN)
        assert main(["study", "add-reader", "--db", str(database), "--reader", READER]) == 0
    db = open_database(database, must_exist=True)
    window = open_window(qtbot, db)
    window.set_decision(1)
    window.set_confidence(60)
    window.save()
    assert window.case.phase == "aided" and window._image_index == 0
    assert window.heatmap_shown() and "likely" in window.ai_text()
    window.show_image(1)  # PgDn: the out-of-scope view of the same case
    assert OUT_OF_SCOPE_MESSAGE in window.ai_text() and not window.heatmap_shown()
    window.show_image(0)
    assert window.heatmap_shown()
    window.set_agreement("agree")
    window.save()
    (aided,) = [r for r in Coordinator(db).reads() if r["modality"] == "aided"]
    assert aided["ai_in_scope"] is True and aided["ai_tier_shown"] == "likely"  # the in-scope view counts
    assert (aided["heatmap_shown"], aided["heatmap_toggles"]) == (True, 0)  # image changes are not toggles
    assert [e["visible"] for e in aided["telemetry"] if e["kind"] == "heatmap"] == [False, True]
    db.close()
