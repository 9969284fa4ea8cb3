"""File ▸ PACS… against a real Orthanc (pytest-qt, offscreen): search, retrieve in a worker thread
with progress, open in the viewer; a fault shows its message and the dialog keeps working; and
File ▸ Save AI Results as DICOM SR… refuses an image without UIDs."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("pytestqt")

from radreview.gui.main_window import MainWindow  # noqa: E402
from radreview.gui.pacs_dialog import PacsDialog, save_ai_sr  # noqa: E402
from radreview.gui.settings import CONFIG_DIR_ENV, ViewerSettings  # noqa: E402

pytestmark = pytest.mark.gui

REPO = Path(__file__).resolve().parents[1]
LEG = sorted((REPO / "resources/demo/DEMO_LEG/PT000000/ST000000/SE000000").iterdir())
LEG_STUDY = str(pydicom.dcmread(LEG[0], stop_before_pixels=True).StudyInstanceUID)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))


@pytest.fixture
def window(qtbot):
    win = MainWindow(settings=ViewerSettings(), save_on_close=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def _fill(dialog: PacsDialog, orthanc, ae_title: str | None = None) -> None:
    dialog.name_edit.setText("test-orthanc")
    dialog.host_edit.setText(orthanc.host)
    dialog.port_spin.setValue(orthanc.port)
    dialog.aet_edit.setText(ae_title or orthanc.aet)
    dialog.web_edit.setText(orthanc.dicomweb)
    dialog.local_aet_edit.setText(orthanc.move_aet)
    dialog.local_port_spin.setValue(orthanc.move_port)


@pytest.mark.orthanc
@pytest.mark.parametrize("method", ["get", "move", "wado"])
def test_query_retrieve_and_open(qtbot, window, orthanc, tmp_path, method) -> None:
    from radreview.pacs.send import send

    send(orthanc.node(), LEG, orthanc.move_aet)
    window.actions_by_name["pacs"].trigger()
    dialog = window.pacs_dialog
    dialog.cache_root = tmp_path / "cache"
    _fill(dialog, orthanc)
    dialog.method_combo.setCurrentIndex(dialog.method_combo.findData(method))
    dialog.modality_edit.setText("DX")
    dialog.search_button.click()
    qtbot.waitUntil(lambda: not dialog.is_busy() and dialog.table.rowCount() == 1, timeout=30000)
    assert dialog.table.item(0, 1).text() == "DEMO-0002"
    assert not dialog.retrieve_button.isEnabled()  # nothing selected yet
    dialog.select_rows([0])
    assert dialog.selected_studies() == [LEG_STUDY]
    progress: list[tuple[int, int]] = []
    shown = dialog._on_progress
    dialog._on_progress = lambda done, total: (progress.append((done, total)), shown(done, total))
    dialog.retrieve_button.click()
    assert dialog.is_busy() and dialog.cancel_button.isEnabled() and not dialog.search_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=60000)
    # the network work ran in the dialog's worker thread, never on the GUI thread
    assert dialog.worker_threads and threading.main_thread().name not in dialog.worker_threads
    assert progress and progress[-1] == (2, 2) and dialog.progress.value() == 2
    assert dialog.results[0].complete and "2 received" in dialog.status.text()
    assert dialog.open_button.isEnabled() and not dialog.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: len(window.index.images()) == 2, timeout=30000)
    assert {e.sop_instance_uid for e in window.index.images()} == {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in LEG}
    assert all(Path(e.path).parent == tmp_path / "cache" / LEG_STUDY for e in window.index.images())


@pytest.mark.orthanc
def test_faults_show_the_node_and_the_dialog_keeps_working(qtbot, window, orthanc) -> None:
    dialog = PacsDialog(window, open_paths=window.open_paths)
    qtbot.addWidget(dialog)
    _fill(dialog, orthanc, ae_title="NOT_ORTHANC")
    dialog.echo_button.click()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=30000)
    assert "test-orthanc (NOT_ORTHANC@" in dialog.status.text() and "rejected" in dialog.status.text()
    dialog.aet_edit.setText(orthanc.aet)
    dialog.echo_button.click()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=30000)
    assert "answered the C-ECHO" in dialog.status.text()
    dialog.aet_edit.setText("")
    dialog.search_button.click()
    assert "AE title cannot be empty" in dialog.status.text() and not dialog.is_busy()
    dialog.aet_edit.setText(orthanc.aet)
    dialog.date_edit.setText("2024-01-02")  # not DICOM's YYYYMMDD: said, the dialog keeps working
    dialog.search_button.click()
    assert "DICOM dates are YYYYMMDD" in dialog.status.text() and not dialog.is_busy()


def test_saved_nodes_fill_the_form(qtbot, tmp_path) -> None:
    from radreview.pacs import PacsNode, PacsSettings, save_pacs_settings

    settings = PacsSettings()
    settings.put(PacsNode("archive", "ARCHIVE", "archive.example", 4242, "http://archive.example/dicom-web"))
    save_pacs_settings(settings)
    dialog = PacsDialog()
    qtbot.addWidget(dialog)
    assert (dialog.host_edit.text(), dialog.port_spin.value(), dialog.aet_edit.text()) == ("archive.example", 4242, "ARCHIVE")
    dialog.name_edit.setText("second")
    dialog.host_edit.setText("10.1.2.3")
    dialog.save_button.click()
    assert [dialog.node_combo.itemText(i) for i in range(dialog.node_combo.count())] == ["archive", "second", "(new node)"]
    assert dialog.node_combo.currentText() == "second"


def test_sr_of_an_image_without_uids_is_refused(qtbot, window, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, title, text: shown.append((title, text)))
    jpeg = REPO / "resources/demo/jpeg/IMG0000025.jpg"
    window.open_paths([str(jpeg)])
    qtbot.waitUntil(lambda: window.ai_panel.result is not None, timeout=60000)
    assert save_ai_sr(window, "/nonexistent/never-written.dcm") is None
    assert shown and "IMG0000025.jpg: cannot write a DICOM SR for it: it is not a DICOM file" in shown[0][1]


def test_sr_of_the_shown_image(qtbot, window, tmp_path) -> None:
    window.open_paths([str(LEG[0])])
    qtbot.waitUntil(lambda: window.ai_panel.result is not None, timeout=60000)
    written = save_ai_sr(window, tmp_path / "ai.dcm")
    sr = pydicom.dcmread(written)
    assert sr.Modality == "SR" and sr.StudyInstanceUID == LEG_STUDY
    assert "holds patient data" in window.statusBar().currentMessage()
