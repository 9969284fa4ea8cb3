"""File ▸ PACS…: query a PACS, pick studies, retrieve them with progress, open them in the viewer;
and File ▸ Save AI Results as DICOM SR… for the image shown.

A thin layer over radreview.pacs: echo, search and retrieval are the same plain functions as
``radreview pacs``, run in a worker thread (radreview.gui.workers) so the window never waits on
the network. Errors arrive as messages naming the node; nothing here logs patient data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from radreview import RESEARCH_USE_NOTICE
from radreview.gui.workers import Task, TaskRunner

log = logging.getLogger(__name__)

COLUMNS = (("StudyDate", "Date"), ("PatientID", "Patient ID"), ("PatientName", "Patient name"),
           ("ModalitiesInStudy", "Modalities"), ("AccessionNumber", "Accession"),
           ("NumberOfStudyRelatedInstances", "Images"), ("StudyDescription", "Description"),
           ("StudyInstanceUID", "Study UID"))
METHODS = (("get", "C-GET"), ("move", "C-MOVE to this workstation"), ("wado", "WADO-RS (DICOMweb)"))
NEW_NODE = "(new node)"


class PacsDialog(QDialog):
    """Query / retrieve. ``open_paths`` receives the study folders to show once retrieved."""

    def __init__(self, parent: QWidget | None = None, open_paths: Callable[[Sequence[Path]], object] | None = None,
                 cache_root: Path | None = None) -> None:
        from radreview.pacs import load_pacs_settings

        super().__init__(parent)
        self.setWindowTitle("PACS — query and retrieve")
        self.setObjectName("pacs_dialog")
        self.open_paths = open_paths
        self.cache_root = cache_root
        self.settings = load_pacs_settings()
        self.runner = TaskRunner(self, max_threads=1)  # one network job at a time
        self.task: Task | None = None
        self.rows: list[dict[str, str]] = []
        self.results: list = []
        self.worker_threads: set[str] = set()  # names of the threads that did the work (tests)
        self._lock = threading.Lock()
        self._study_position = (0, 0)
        self._build()
        self._fill_nodes()

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        node_box = QGroupBox("PACS node")
        grid = QGridLayout(node_box)
        self.node_combo = QComboBox()
        self.node_combo.currentIndexChanged.connect(self._on_node_chosen)
        self.name_edit, self.host_edit, self.aet_edit, self.web_edit = QLineEdit(), QLineEdit(), QLineEdit(), QLineEdit()
        self.port_spin = QSpinBox()
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(104)
        self.host_edit.setPlaceholderText("pacs.hospital.org")
        self.aet_edit.setPlaceholderText("its AE title")
        self.web_edit.setPlaceholderText("http://pacs:8042/dicom-web (optional)")
        self.local_aet_edit = QLineEdit(self.settings.local.ae_title)
        self.local_port_spin = QSpinBox()
        self.local_port_spin.setRange(1, 65535)
        self.local_port_spin.setValue(self.settings.local.port)
        self.save_button = QPushButton("Save node")
        self.save_button.clicked.connect(self.save_node)
        self.echo_button = QPushButton("Echo")
        self.echo_button.setToolTip("C-ECHO: is the node there and does it accept us?")
        self.echo_button.clicked.connect(self.echo)
        for row, (label, widget) in enumerate((("Saved", self.node_combo), ("Name", self.name_edit),
                                               ("Host", self.host_edit), ("Port", self.port_spin))):
            grid.addWidget(QLabel(label), row, 0)
            grid.addWidget(widget, row, 1)
        for row, (label, widget) in enumerate((("AE title", self.aet_edit), ("DICOMweb", self.web_edit),
                                               ("Our AE title", self.local_aet_edit),
                                               ("Our port (C-MOVE)", self.local_port_spin))):
            grid.addWidget(QLabel(label), row, 2)
            grid.addWidget(widget, row, 3)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.echo_button)
        grid.addLayout(buttons, 4, 0, 1, 4)
        layout.addWidget(node_box)

        query_box = QGroupBox("Find studies")
        form = QHBoxLayout(query_box)
        self.patient_id_edit, self.patient_name_edit = QLineEdit(), QLineEdit()
        self.date_edit, self.modality_edit, self.accession_edit = QLineEdit(), QLineEdit(), QLineEdit()
        self.patient_name_edit.setPlaceholderText("DOE^J*")
        self.date_edit.setPlaceholderText("YYYYMMDD[-YYYYMMDD]")
        self.modality_edit.setPlaceholderText("CR, DX")
        for label, widget in (("Patient ID", self.patient_id_edit), ("Name", self.patient_name_edit),
                              ("Date", self.date_edit), ("Modality", self.modality_edit),
                              ("Accession", self.accession_edit)):
            sub = QFormLayout()
            sub.addRow(label, widget)
            form.addLayout(sub)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        form.addWidget(self.search_button)
        layout.addWidget(query_box)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._sync_buttons)
        self.table.doubleClicked.connect(lambda _index: self.retrieve())
        layout.addWidget(self.table, 1)

        bottom = QHBoxLayout()
        self.method_combo = QComboBox()
        for key, text in METHODS:
            self.method_combo.addItem(text, key)
        self.retrieve_button = QPushButton("Retrieve")
        self.retrieve_button.clicked.connect(self.retrieve)
        self.open_check = QCheckBox("Open when retrieved")
        self.open_check.setChecked(True)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Open the retrieved studies in the viewer")
        self.open_button.clicked.connect(self.open_retrieved)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        for widget in (QLabel("Retrieve by"), self.method_combo, self.retrieve_button, self.open_check):
            bottom.addWidget(widget)
        bottom.addWidget(self.progress, 1)
        for widget in (self.cancel_button, self.open_button, self.close_button):
            bottom.addWidget(widget)
        layout.addLayout(bottom)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        notice = QLabel(f"Retrieved studies are kept in the local cache. {RESEARCH_USE_NOTICE}")
        notice.setStyleSheet("color: #d08000;")
        layout.addWidget(notice)
        self.resize(1100, 640)
        self._sync_buttons()

    def _fill_nodes(self) -> None:
        self.node_combo.blockSignals(True)
        self.node_combo.clear()
        for node in self.settings.nodes:
            self.node_combo.addItem(node.name, node.name)
        self.node_combo.addItem(NEW_NODE, "")
        self.node_combo.blockSignals(False)
        self._on_node_chosen(0)

    def _on_node_chosen(self, index: int) -> None:
        name = self.node_combo.itemData(index)
        node = next((n for n in self.settings.nodes if n.name == name), None)
        if node is None:
            return
        self.name_edit.setText(node.name)
        self.host_edit.setText(node.host)
        self.port_spin.setValue(node.port)
        self.aet_edit.setText(node.ae_title)
        self.web_edit.setText(node.dicomweb_url)

    # -- the node and this workstation ------------------------------------------------------------
    def node(self):
        """The node the fields describe (ValueError naming the bad field)."""
        from radreview.pacs import PacsNode

        node = PacsNode(self.name_edit.text().strip(), self.aet_edit.text().strip(), self.host_edit.text().strip(),
                        self.port_spin.value(), self.web_edit.text().strip())
        if self.method_combo.currentData() == "wado":  # DICOMweb needs only the URL
            if not node.dicomweb_url.startswith(("http://", "https://")):
                raise ValueError("DICOMweb: give the node's DICOMweb URL (http://... or https://...)")
            return node
        return node.validated()

    def local(self):
        from radreview.pacs import LocalAE
        from radreview.pacs.nodes import check_ae_title

        return LocalAE(check_ae_title(self.local_aet_edit.text()), self.local_port_spin.value())

    def save_node(self) -> None:
        from radreview.pacs import save_pacs_settings

        try:
            node, local = self.node(), self.local()
            if not node.name:
                raise ValueError("give the node a name to save it")
        except ValueError as exc:
            self._say(str(exc), error=True)
            return
        self.settings.put(node)
        self.settings.local = local
        save_pacs_settings(self.settings)
        self._fill_nodes()
        self.node_combo.setCurrentIndex(max(0, self.node_combo.findData(node.name)))
        self._say(f"Saved {node.label}.")

    # -- work in the worker -----------------------------------------------------------------------
    def _start(self, what: str, function, on_done, on_progress=None) -> None:
        if self.task is not None:
            self._say("Busy: wait for the running request or cancel it.", error=True)
            return

        def work(progress, cancel):
            with self._lock:
                self.worker_threads.add(threading.current_thread().name)
            return function(progress, cancel)

        self._say(what)
        self.task = self.runner.start(work, on_done=lambda result: self._finished(on_done, result),
                                      on_error=self._failed, on_progress=on_progress, name="pacs")
        self._sync_buttons()

    def _finished(self, on_done, result) -> None:
        self.task = None
        self._sync_buttons()
        on_done(result)

    def _failed(self, exc: BaseException) -> None:
        from radreview.pacs import PacsError

        self.task = None
        self._sync_buttons()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        if isinstance(exc, PacsError | ValueError):
            self._say(str(exc), error=True)
        else:  # a bug or a library error: still a message, and the dialog keeps working
            log.error("PACS request failed: %s", type(exc).__name__)
            self._say(f"The request failed ({type(exc).__name__}: {exc})", error=True)

    def _fields(self):
        try:
            return self.node(), self.local()
        except ValueError as exc:
            self._say(str(exc), error=True)
            return None

    def echo(self) -> None:
        from radreview.pacs.echo import echo

        fields = self._fields()
        if fields is None:
            return
        node, local = fields
        self._start(f"Echo {node.label}…", lambda _p, _c: echo(node, local.ae_title),
                    lambda seconds: self._say(f"{node.label} answered the C-ECHO in {seconds * 1000:.0f} ms."))

    def query(self):
        from radreview.pacs.find import Query

        return Query(self.patient_id_edit.text().strip(), self.patient_name_edit.text().strip(),
                     self.date_edit.text().strip(), self.modality_edit.text().strip(),
                     self.accession_edit.text().strip())

    def search(self) -> None:
        from radreview.pacs.dicomweb import DicomWebClient
        from radreview.pacs.find import find

        fields = self._fields()
        if fields is None:
            return
        node, local = fields
        try:
            query = self.query()
        except ValueError as exc:  # e.g. a date typed as 2024-01-02
            self._say(str(exc), error=True)
            return
        if self.method_combo.currentData() == "wado":
            client = DicomWebClient(node.dicomweb_url, name=node.name)
            function = lambda _p, _c: client.search("STUDY", query)  # noqa: E731
        else:
            function = lambda _p, cancel: find(node, "STUDY", query, local.ae_title, cancel=cancel)  # noqa: E731
        self._start(f"Searching {node.label}…", function, self._show_rows)

    def _show_rows(self, rows: list[dict[str, str]]) -> None:
        self.rows = rows
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, (key, _title) in enumerate(COLUMNS):
                item = QTableWidgetItem(row.get(key, "").replace("^", " "))
                item.setData(Qt.ItemDataRole.UserRole, r)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self._say(f"{len(rows)} stud{'ies' if len(rows) != 1 else 'y'} found. Select and Retrieve "
                  "(double-click retrieves one).")
        self._sync_buttons()

    def select_rows(self, rows: Sequence[int]) -> None:
        """Select these table rows, as a user's click would (whatever modifier keys Qt thinks held)."""
        from PySide6.QtCore import QItemSelectionModel

        model = self.table.selectionModel()
        model.clearSelection()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for row in rows:
            model.select(self.table.model().index(row, 0), flags)

    def selected_studies(self) -> list[str]:
        rows = sorted({self.table.item(i.row(), 0).data(Qt.ItemDataRole.UserRole)
                       for i in self.table.selectionModel().selectedRows()})
        return [self.rows[r]["StudyInstanceUID"] for r in rows if self.rows[r].get("StudyInstanceUID")]

    def retrieve(self) -> None:
        from radreview.pacs.dicomweb import DicomWebClient, retrieve_study_web
        from radreview.pacs.retrieve import retrieve_study

        studies = self.selected_studies()
        if not studies:
            self._say("Select one or more studies first.", error=True)
            return
        fields = self._fields()
        if fields is None:
            return
        node, local = fields
        method = self.method_combo.currentData()
        root = self.cache_root
        client = DicomWebClient(node.dicomweb_url, name=node.name) if method == "wado" else None

        def work(progress, cancel):
            results = []
            for number, uid in enumerate(studies, start=1):
                if cancel():
                    break
                self._study_position = (number, len(studies))
                if client is not None:
                    results.append(retrieve_study_web(client, uid, root, progress, cancel))
                else:
                    results.append(retrieve_study(node, uid, method, root, local, progress, cancel))
            return results

        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self._start(f"Retrieving {len(studies)} stud{'ies' if len(studies) != 1 else 'y'} from {node.label}…",
                    work, self._retrieved, self._on_progress)

    def _on_progress(self, done: int, total: int) -> None:
        number, count = self._study_position
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"study {number}/{count}: {done}/{total} images")

    def _retrieved(self, results: list) -> None:
        self.results = results
        lines = [r.summary() for r in results]
        if any(not r.complete for r in results):
            lines.append("Incomplete studies are marked so; Retrieve again to fetch only what is missing.")
        if any(r.not_viewable for r in results):
            lines.append("Objects without pixels (e.g. SR) are filed in the cache but are not images to view.")
        self._say("\n".join(lines) or "Nothing retrieved.", error=any(not r.complete for r in results))
        if results and all(r.complete for r in results):
            self.progress.setFormat("done")
        self._sync_buttons()
        if self.open_check.isChecked():
            self.open_retrieved()

    def open_retrieved(self) -> None:
        folders = [r.folder for r in self.results if any(o.viewable for o in r.received) or r.already_cached]
        if folders and self.open_paths is not None:
            self.open_paths(folders)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()  # what arrived stays in the cache, marked incomplete
            self.task = None
            self._say("Cancelled. What arrived is kept; Retrieve again to resume.")
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("")
        self._sync_buttons()

    # -- state ------------------------------------------------------------------------------------
    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #c03030;" if error else "")

    def _sync_buttons(self) -> None:
        busy = self.task is not None
        for button in (self.search_button, self.echo_button, self.save_button):
            button.setEnabled(not busy)
        self.retrieve_button.setEnabled(not busy and bool(self.table.selectionModel().selectedRows()))
        self.cancel_button.setEnabled(busy)
        self.open_button.setEnabled(not busy and bool(self.results))

    def is_busy(self) -> bool:
        return self.task is not None

    def closeEvent(self, event) -> None:  # noqa: N802
        # Closing the dialog stops its work (it can be opened again); the window's close shuts
        # the runner down for good (_StopOnClose).
        self.cancel()
        super().closeEvent(event)


class _StopOnClose(QObject):
    """Cancels the dialog's network work when the main window closes (a retrieval in flight
    stops at its next step; what arrived stays in the cache, marked incomplete)."""

    def __init__(self, dialog: PacsDialog, parent: QObject) -> None:
        super().__init__(parent)
        self.dialog = dialog

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt naming
        if event.type() == QEvent.Type.Close:
            self.dialog.runner.shutdown(timeout_ms=2000)
        return False


def open_pacs_dialog(window) -> PacsDialog:
    """File ▸ PACS…: one dialog per window, raised when already open."""
    dialog = getattr(window, "pacs_dialog", None)
    if dialog is None:
        dialog = PacsDialog(window, open_paths=window.open_paths)
        window.pacs_dialog = dialog
        window.installEventFilter(_StopOnClose(dialog, window))
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def save_ai_sr(window, path: str | Path | None = None) -> Path | None:
    """File ▸ Save AI Results as DICOM SR…: an SR for the shown image's AI answer (it carries the
    patient module, so it is written only to the file the user picks)."""
    from PySide6.QtWidgets import QMessageBox

    from radreview.pacs import SrError
    from radreview.pacs.ai_results import present
    from radreview.pacs.sr import SourceImage, build_sr, check_source, write_dataset

    entry = window.active_view().entry
    panel = getattr(window, "ai_panel", None)
    result = getattr(panel, "result", None)
    if entry is None or result is None:
        window.statusBar().showMessage("No AI result to save: show an image and let the classifiers run", 8000)
        return None
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            header = pydicom.dcmread(entry.path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            header = None
        sr = build_sr([SourceImage(check_source(header, entry.path.name), present(result), entry.path.name)])
    except SrError as exc:
        QMessageBox.warning(window, "Cannot write a DICOM SR", str(exc))
        return None
    if path is None:
        start = Path(window.settings.last_open_dir or Path.home()) / "radreview-ai-results-SR.dcm"
        chosen, _ = QFileDialog.getSaveFileName(window, "Save AI results as DICOM SR", str(start),
                                                "DICOM (*.dcm);;All files (*)")
        if not chosen:
            return None
        path = chosen
    try:
        written = write_dataset(sr, Path(path))
    except OSError as exc:
        QMessageBox.warning(window, "Cannot write a DICOM SR", f"{path}: {exc.strerror or exc}")
        return None
    window.statusBar().showMessage(f"Saved the AI results as a DICOM SR: {written} (it holds patient data)", 10000)
    return written
