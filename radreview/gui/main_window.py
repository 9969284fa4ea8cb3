"""The main window of the viewer.

Extension points (for docks added by other parts of radreview, e.g. the AI panel):

- ``current_image_changed(entry, decoded)``: emitted when the image shown in the active pane
  changes (another image, another frame, another active pane). ``entry`` is an
  :class:`~radreview.studies.ImageEntry`, ``decoded`` its :class:`~radreview.studies.DecodedImage`.
  ``entry`` and ``decoded`` are None when nothing is shown, and also as soon as the active pane
  starts loading another image: a listener clears what it shows of the previous image then, not
  when the new one arrives (no patient's data under another patient's "Loading…").
- :meth:`MainWindow.active_view` returns the active :class:`~radreview.gui.image_view.ImageView`;
  :meth:`MainWindow.views` all visible panes. Put a heatmap over the radiograph with
  ``view.add_overlay(pg.ImageItem(...))``: it is parented to ``view.image_group`` (image-pixel
  coordinates, x = column, y = row), so it follows zoom, pan, rotation and flips.
- The right dock area is left free: ``window.addDockWidget(Qt.RightDockWidgetArea, dock)``.
  Give the dock an ``objectName`` so that its place is remembered.
- ``window.settings`` is the :class:`~radreview.gui.settings.ViewerSettings` saved on close
  (e.g. ``overlay_opacity``); ``window.runner`` runs plain functions in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)

from radreview import RESEARCH_USE_NOTICE, __version__
from radreview.gui.actions import ACTIONS, MENUS, PRESET_KEYS, TOOLBAR
from radreview.gui.image_cache import DecodedCache
from radreview.gui.image_view import ZOOM_STEP, ImageView
from radreview.gui.layouts import LAYOUT_SHAPES, ViewerGrid
from radreview.gui.pacs_dialog import open_pacs_dialog, save_ai_sr
from radreview.gui.panels import HeaderPanel, ProblemsPanel, ShortcutsDialog
from radreview.gui.settings import ViewerSettings, load_settings, save_settings
from radreview.gui.study_browser import StudyBrowser
from radreview.gui.thumbnails import make_thumbnail, to_pixmap
from radreview.gui.workers import Task, TaskRunner
from radreview.studies import (
    DecodedImage,
    ImageEntry,
    LoadProblem,
    Study,
    StudyIndex,
    StudyLoadError,
    decode_image,
    index_paths,
    render_display,
)

log = logging.getLogger(__name__)


def decode_for_display(entry: ImageEntry, frame: int = 0) -> tuple[DecodedImage, np.ndarray]:
    """Decode a frame and render it at its default window (in a worker: off the GUI thread)."""
    decoded = decode_image(entry, frame)
    return decoded, render_display(decoded)

OPEN_FILTER = "Images (*.dcm *.DCM *.dicom *.ima *.png *.jpg *.jpeg *.tif *.tiff DICOMDIR);;All files (*)"


class MainWindow(QMainWindow):
    """The viewer: study browser, image panes, header/problems panels, menus and status bar."""

    current_image_changed = Signal(object, object)  # ImageEntry | None, DecodedImage | None

    def __init__(self, settings: ViewerSettings | None = None, save_on_close: bool = True) -> None:
        super().__init__()
        self.settings = settings if settings is not None else load_settings()
        self.save_on_close = save_on_close
        self.setWindowTitle(f"radreview {__version__} — {RESEARCH_USE_NOTICE}")
        self.setAcceptDrops(True)
        self.resize(1400, 900)

        self.index = StudyIndex()
        self.current: ImageEntry | None = None
        self.cache = DecodedCache(self.settings.image_cache_mb * 1024 * 1024)
        self.runner = TaskRunner(self)  # indexing and decoding
        self.thumbnail_runner = TaskRunner(self, max_threads=1)  # never competes for both cores
        self._pane_tokens: dict[int, int] = {}
        self._pane_tasks: dict[int, Task] = {}
        self._next_token = 0
        self._index_tasks: set[Task] = set()
        self._thumbnail_queue: list[ImageEntry] = []
        self._thumbnail_task: Task | None = None
        self._measuring = False
        self._closing = False
        self.reading_session_open = False  # blinding: no image or AI while a reader reads
        # (keys, menu, text) of shortcuts that panels add (the AI panel's), for Help ▸ Shortcuts.
        self.extra_shortcuts: list[tuple[str, str, str]] = []

        self.grid = ViewerGrid(self)
        self.grid.pane_created.connect(self._connect_pane)
        for pane in self.grid.panes:
            self._connect_pane(pane)
        self.grid.active_changed.connect(self._on_pane_activated)
        self.setCentralWidget(self.grid)

        self.browser = StudyBrowser(self, self.settings.thumbnail_size)
        self.browser.image_selected.connect(self.show_entry)
        self.browser.thumbnails_wanted.connect(self._queue_thumbnails)
        self.header_panel = HeaderPanel(self)
        self.problems_panel = ProblemsPanel(self)
        self.problems_panel.count_changed.connect(self._on_problem_count)
        self.browser_dock = self._dock("Studies", "studies_dock", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.header_dock = self._dock("Header", "header_dock", self.header_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.problems_dock = self._dock(
            "Problems", "problems_dock", self.problems_panel, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.problems_dock.hide()

        self.actions_by_name: dict[str, QAction] = {}
        self.preset_actions: list[QAction] = []
        self._build_menus()
        self._build_status_bar()
        from radreview.gui.ai_panel import install_ai_panel  # the AI dock: classifiers + heatmaps

        self.ai_panel = install_ai_panel(self)
        self._restore_settings()
        self.grid.active_view().show_message(
            "Drop DICOM files or folders here, or use File ▸ Open.\n\n" + RESEARCH_USE_NOTICE
        )

    # ----- construction ----------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        return dock

    def _action_handlers(self) -> dict[str, object]:
        view = self.active_view
        return {
            "open_files": self.open_files_dialog,
            "open_folder": self.open_folder_dialog,
            "open_dicomdir": self.open_dicomdir_dialog,
            "pacs": lambda: open_pacs_dialog(self),
            "save_ai_sr": lambda: save_ai_sr(self),
            "export_png": self.export_png_dialog,
            "close_all": self.close_all,
            "quit": self.close,
            "next_image": lambda: self.step_image(+1),
            "previous_image": lambda: self.step_image(-1),
            "next_study": lambda: self.step_study(+1),
            "previous_study": lambda: self.step_study(-1),
            "next_frame": lambda: self.step_frame(+1),
            "previous_frame": lambda: self.step_frame(-1),
            "fit": lambda: view().fit(),
            "actual_size": lambda: view().actual_size(),
            "zoom_in": lambda: view().zoom(ZOOM_STEP),
            "zoom_out": lambda: view().zoom(1.0 / ZOOM_STEP),
            "layout_1x1": lambda: self.set_layout("1x1"),
            "layout_1x2": lambda: self.set_layout("1x2"),
            "layout_2x2": lambda: self.set_layout("2x2"),
            "next_pane": self.next_pane,
            "rotate_cw": lambda: view().rotate(90),
            "rotate_ccw": lambda: view().rotate(-90),
            "flip_h": lambda: view().flip_horizontal(),
            "flip_v": lambda: view().flip_vertical(),
            "invert": lambda: view().set_invert(self.actions_by_name["invert"].isChecked()),
            "measure": lambda: self._set_measuring(self.actions_by_name["measure"].isChecked()),
            "clear_measurements": lambda: view().clear_rulers(),
            "reset": lambda: (view().reset(), self._sync_checks()),
            "default_window": lambda: self.apply_preset(0),
            "show_header": lambda: self.header_dock.setVisible(self.actions_by_name["show_header"].isChecked()),
            "show_problems": lambda: self.problems_dock.setVisible(self.actions_by_name["show_problems"].isChecked()),
            "all_tags": self.header_panel.show_all_tags,
            "shortcuts": self.show_shortcuts,
            "about": self.show_about,
        }

    def _build_menus(self) -> None:
        menus = {name: self.menuBar().addMenu(f"&{name}") for name in MENUS}
        handlers = self._action_handlers()
        layout_group = QActionGroup(self)
        for spec in ACTIONS:
            action = QAction(spec.text, self)
            action.setObjectName(spec.name)
            action.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            if spec.tip:
                action.setStatusTip(spec.tip)
                action.setToolTip(spec.tip)
            action.setCheckable(spec.checkable)
            handler = handlers[spec.name]
            action.triggered.connect(lambda _checked=False, h=handler: h())
            if spec.name.startswith("layout_"):
                layout_group.addAction(action)
            menus[spec.menu].addAction(action)
            self.addAction(action)  # shortcuts work even when the menu bar is hidden
            self.actions_by_name[spec.name] = action
            if spec.name == "open_dicomdir":
                self.recent_menu = QMenu("Open &Recent", self)
                self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
                menus["File"].addMenu(self.recent_menu)
            if spec.name in ("open_dicomdir", "export_png", "previous_study", "zoom_out", "next_pane", "flip_v"):
                menus[spec.menu].addSeparator()
        menus["Panels"].addSeparator()
        menus["Panels"].addAction(self.browser_dock.toggleViewAction())
        menus["Window/Level"].addSeparator()
        for n, key in enumerate(PRESET_KEYS):
            action = QAction(self)
            action.setShortcut(QKeySequence(key))
            action.triggered.connect(lambda _checked=False, i=n: self.apply_preset(i))
            action.setVisible(False)
            menus["Window/Level"].addAction(action)
            self.addAction(action)
            self.preset_actions.append(action)
        # Reader-study mode (radreview.gui.reading): sign in and read the assigned cases.
        reader_study = QAction("Reader &Study…", self)
        reader_study.setObjectName("reader_study")
        reader_study.setStatusTip("Sign in to a reader study and read your assigned cases")
        reader_study.triggered.connect(lambda _checked=False: self.open_reader_study())
        file_actions = menus["File"].actions()
        menus["File"].insertAction(file_actions[-1] if file_actions else None, reader_study)
        self.actions_by_name["reader_study"] = reader_study
        self.menus = menus
        toolbar = self.addToolBar("Tools")
        toolbar.setObjectName("tools_toolbar")
        toolbar.setMovable(False)
        short_names = {"open_folder": "Open", "previous_image": "◀ Prev", "next_image": "Next ▶", "layout_1x1": "1×1",
                       "layout_1x2": "1×2", "layout_2x2": "2×2", "fit": "Fit", "actual_size": "1:1",
                       "rotate_ccw": "⟲", "rotate_cw": "⟳", "flip_h": "Flip H", "flip_v": "Flip V",
                       "invert": "Invert", "measure": "Measure", "reset": "Reset"}
        for name in TOOLBAR:
            if not name:
                toolbar.addSeparator()
                continue
            action = self.actions_by_name[name]
            action.setIconText(short_names.get(name, action.iconText()))  # tool bar text; menus keep text()
            keys = ", ".join(s.toString() for s in action.shortcuts())
            action.setToolTip(f"{action.text().replace('&', '').rstrip('…')} ({keys})" if keys else action.text())
            toolbar.addAction(action)
        self.toolbar = toolbar

    def open_reader_study(self, path: str | None = None) -> None:
        """Ask for a study database (SQLite file) and open the reading window over it.

        Blinding: once the reader has signed in, the viewer closes every image and the AI's
        results (panel, heatmap, cached answers, work in flight) and hides itself until the
        reading window closes, so that nothing of the AI can be seen beside an unaided read
        (docs/reader_study.md).
        """
        from PySide6.QtWidgets import QFileDialog

        from radreview.gui.reading.app import open_reading_window

        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open a reader study", "",
                                                  "Reader study (*.db *.sqlite);;All files (*)")
        if path:
            window = open_reading_window(path, parent=self, on_signed_in=self.blind_for_reading)
            if window is not None:
                self._reading_window = window  # keep it alive
                window.destroyed.connect(lambda *_: self._end_reading())

    def blind_for_reading(self) -> None:
        """Close the viewer's images and AI and hide it: a reading session is opening."""
        self.reading_session_open = True
        self.close_all()  # panes, browser, header, cache; the AI panel forgets its image
        panel = getattr(self, "ai_panel", None)
        if panel is not None:
            panel.controller.cancel()
            panel.controller.cache.clear()
            panel.overlay.clear()
            panel.table.setRowCount(0)
            panel.result = None
        self.hide()

    def _end_reading(self) -> None:
        self.reading_session_open = False
        self._reading_window = None
        if not self._closing:
            self.show()

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.cursor_label = QLabel("", self)
        self.cursor_label.setMinimumWidth(260)
        self.window_label = QLabel("", self)
        self.zoom_label = QLabel("", self)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setFlat(True)
        self.cancel_button.clicked.connect(self.cancel_indexing)
        self.cancel_button.hide()
        self.notice_label = QLabel(RESEARCH_USE_NOTICE, self)
        self.notice_label.setStyleSheet("color: #d08000; font-weight: bold;")
        for widget in (self.cursor_label, self.window_label, self.zoom_label, self.progress, self.cancel_button):
            bar.addPermanentWidget(widget)
        bar.addPermanentWidget(self.notice_label)

    def _restore_settings(self) -> None:
        s = self.settings
        if s.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode("ascii")))
        if not s.window_state or not self.restoreState(QByteArray.fromBase64(s.window_state.encode("ascii"))):
            # First run: a browser wide enough for thumbnails and captions.
            self.resizeDocks([self.browser_dock, self.header_dock], [340, 340], Qt.Orientation.Horizontal)
            self.resizeDocks([self.browser_dock, self.header_dock], [520, 300], Qt.Orientation.Vertical)
        self.header_dock.setVisible(s.show_header_panel)
        self.problems_dock.hide()
        self.set_layout(s.layout)
        self._sync_checks()

    def _connect_pane(self, pane: ImageView) -> None:
        pane.drag_sensitivity = self.settings.window_drag_sensitivity
        pane.cursor_moved.connect(lambda text: self.cursor_label.setText(text))
        pane.display_changed.connect(lambda p=pane: self._on_display_changed(p))
        pane.set_measuring(self._measuring)

    # ----- extension points --------------------------------------------------------------------
    def active_view(self) -> ImageView:
        return self.grid.active_view()

    def views(self) -> list[ImageView]:
        return self.grid.visible_panes

    # ----- opening -----------------------------------------------------------------------------
    def open_paths(self, paths: Sequence[str | Path]) -> Task | None:
        """Index files/folders/DICOMDIRs in a worker thread and add them to the browser."""
        paths = [Path(p) for p in paths]
        if not paths or self.reading_session_open:
            return None
        for path in paths:
            if path.exists():  # a typo on the command line is not a recent study
                self.settings.add_recent(path.resolve())
        self.statusBar().showMessage(f"Opening {', '.join(p.name or str(p) for p in paths)}…")
        task = self.runner.start(
            lambda progress, cancel: index_paths(paths, progress, cancel),
            on_done=lambda index: self._on_indexed(index, task),
            on_error=lambda exc: self._on_index_failed(paths, exc, task),
            on_progress=self._on_index_progress,
            name="index",
        )
        self._index_tasks.add(task)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        return task

    def _on_index_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done}/{total}")

    def _index_finished(self, task: Task) -> None:
        self._index_tasks.discard(task)
        if not self._index_tasks:
            self.progress.hide()
            self.cancel_button.hide()

    def _on_indexed(self, index: StudyIndex, task: Task) -> None:
        self._index_finished(task)
        new_images = index.images()
        self.index.merge(index)
        self.browser.populate(self.index)
        self.report_problems(index.problems, logged=True)
        studies = len(index.studies())
        message = f"Opened {len(new_images)} image{'s' if len(new_images) != 1 else ''} in {studies} stud{'ies' if studies != 1 else 'y'}"
        if index.problems:
            message += f"; {len(index.problems)} could not be opened (see Problems)"
        self.statusBar().showMessage(message, 10000)
        # Files opened twice are merged away: show the first image that is really in the index.
        present = {id(e) for e in self.index.images()}
        first = next((e for e in new_images if id(e) in present), None)
        if first is not None and (self.current is None or id(self.current) not in present):
            self.show_entry(first)

    def _on_index_failed(self, paths: list[Path], exc: BaseException, task: Task) -> None:
        self._index_finished(task)
        reason = exc.reason if isinstance(exc, StudyLoadError) else f"{type(exc).__name__}: {exc}"
        self.report_problems([LoadProblem(p, f"could not be indexed: {reason}") for p in paths])

    def cancel_indexing(self) -> None:
        for task in list(self._index_tasks):
            task.cancel()
            self._index_finished(task)
        self.statusBar().showMessage("Opening cancelled", 5000)

    def report_problems(self, problems: Sequence[LoadProblem], logged: bool = False) -> None:
        """Show files that could not be opened in the problems panel (non-modal) and log them
        (``logged``: the studies package has already logged them while indexing)."""
        new = self.problems_panel.add(list(problems))
        if not logged:
            for problem in new:
                log.warning("cannot open %s: %s", problem.path, problem.reason)
        if new:
            if self.problems_dock.isHidden():
                self.problems_dock.show()
                self.resizeDocks([self.problems_dock], [130], Qt.Orientation.Vertical)
            self.actions_by_name["show_problems"].setChecked(True)

    def _on_problem_count(self, count: int) -> None:
        self.problems_dock.setWindowTitle(f"Problems ({count})" if count else "Problems")

    def close_all(self) -> None:
        self.runner.cancel_all()
        self._index_tasks.clear()
        self.progress.hide()
        self.cancel_button.hide()
        self._thumbnail_queue.clear()
        self.index = StudyIndex()
        self.cache.clear()
        self.browser.populate(self.index)
        self.current = None
        for pane in self.grid.panes:
            pane.clear()
        self.header_panel.show_entry(None)
        self.current_image_changed.emit(None, None)

    # ----- dialogs -----------------------------------------------------------------------------
    def _start_dir(self) -> str:
        return self.settings.last_open_dir or str(Path.home())

    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open files", self._start_dir(), OPEN_FILTER)
        if files:
            self.settings.last_open_dir = str(Path(files[0]).parent)
            self.open_paths(files)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self._start_dir())
        if folder:
            self.settings.last_open_dir = folder
            self.open_paths([folder])

    def open_dicomdir_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open DICOMDIR", self._start_dir(), "DICOMDIR (DICOMDIR);;All files (*)")
        if path:
            self.settings.last_open_dir = str(Path(path).parent)
            self.open_paths([path])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for text in self.settings.recent_paths:
            action = self.recent_menu.addAction(text)
            action.triggered.connect(lambda _c=False, p=text: self.open_paths([p]))
        if not self.settings.recent_paths:
            self.recent_menu.addAction("(none)").setEnabled(False)
        self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("Clear Recent")
        clear.triggered.connect(lambda: self.settings.recent_paths.clear())

    def export_png_dialog(self) -> None:
        if self.active_view().decoded is None:
            self.statusBar().showMessage("Nothing to export: no image in the active pane", 5000)
            return
        # The default name carries no patient data (file names may hold names or IDs).
        default = str(Path(self._start_dir()) / f"radreview-view-{datetime.now():%Y%m%d-%H%M%S}.png")
        path, _ = QFileDialog.getSaveFileName(self, "Export view as PNG", default, "PNG image (*.png)")
        if path:
            self.export_view_png(path)

    def export_view_png(self, path: str | Path) -> bool:
        """Save the active pane as shown (with overlays and rulers) as a PNG file, with a legend
        strip below it: the AI's verdict, scope, findings (probability, tier, cut-offs), the
        heatmap's colour bar with its probability labels, and the research-use notice."""
        from radreview.gui.view_export import view_with_legend

        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        panel = getattr(self, "ai_panel", None)
        if panel is not None:
            lines, heatmap = panel.export_legend()
            colormap = panel.settings.colormap
        else:
            lines, heatmap, colormap = [RESEARCH_USE_NOTICE], None, "jet"
        image = view_with_legend(self.active_view().grab_view(), lines, heatmap, colormap)
        ok = image.save(str(path), "PNG")
        if ok:
            self.statusBar().showMessage(f"Exported {path}", 5000)
        else:
            self.report_problems([LoadProblem(path, "could not write the PNG file")])
        return ok

    def show_shortcuts(self) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self, self.extra_shortcuts)
        dialog.show()
        return dialog

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About radreview",
            f"<b>radreview {__version__}</b><br>Review musculoskeletal radiographs with AI assistance."
            f"<br><br><b>{RESEARCH_USE_NOTICE}</b>",
        )

    # ----- showing images ----------------------------------------------------------------------
    def study_of(self, entry: ImageEntry) -> Study | None:
        for study in self.index.studies():
            if study.uid == entry.study_uid and any(i is entry for i in study.images()):
                return study
        return None

    def _page_for(self, entry: ImageEntry) -> tuple[list[ImageEntry | None], int]:
        """Hanging: the panes show the study's images in order, a page at a time."""
        count = len(self.grid.visible_panes)
        study = self.study_of(entry)
        images = study.images() if study is not None else [entry]
        position = next((i for i, e in enumerate(images) if e is entry), 0)
        start = (position // count) * count
        page: list[ImageEntry | None] = list(images[start : start + count])
        page += [None] * (count - len(page))
        return page, position - start

    def show_entry(self, entry: ImageEntry) -> None:
        """Make ``entry`` the current image: hang its study's page and activate its pane."""
        if self.reading_session_open:
            return
        self.current = entry
        self.browser.select_entry(entry)
        page, active = self._page_for(entry)
        self.grid.set_active(active)
        for i, (pane, wanted) in enumerate(zip(self.grid.visible_panes, page)):
            if wanted is None:
                self._cancel_pane(i)
                pane.clear()
            elif pane.entry is not wanted or pane.decoded is None or i in self._pane_tasks:
                if pane.entry is wanted and i in self._pane_tasks:
                    continue  # already on its way
                self.load_into_pane(i, wanted, 0)
        if self.active_view().entry is entry and self.active_view().decoded is not None:
            self._on_active_image_shown()

    def load_into_pane(self, index: int, entry: ImageEntry, frame: int = 0) -> None:
        """Decode (or take from the cache) and show one frame in a pane; stale results are dropped."""
        pane = self.grid.panes[index]
        self._cancel_pane(index)
        keep_view = pane.entry is entry and pane.decoded is not None
        cached = self.cache.get((entry.path, frame))
        if cached is not None:
            pane.set_image(entry, cached, keep_view=keep_view)
            if index == self.grid.active_index:
                self._on_active_image_shown()
            return
        self._next_token += 1
        token = self._pane_tokens[index] = self._next_token
        if not keep_view:
            pane.clear(f"Loading {entry.label}…")
            pane.entry = entry
        if index == self.grid.active_index:
            self._forget_active_image()
        task = self.runner.start(
            lambda _progress, _cancel: decode_for_display(entry, frame),
            on_done=lambda result: self._on_decoded(index, token, entry, frame, result, keep_view),
            on_error=lambda exc: self._on_decode_failed(index, token, entry, exc),
            name="decode",
            priority=1,  # ahead of queued indexing work
        )
        self._pane_tasks[index] = task

    def _cancel_pane(self, index: int) -> None:
        task = self._pane_tasks.pop(index, None)
        if task is not None:
            task.cancel()  # the user moved on: its result is not wanted
        self._pane_tokens.pop(index, None)

    def _on_decoded(self, index: int, token: int, entry: ImageEntry, frame: int, result, keep_view: bool) -> None:
        decoded, display = result
        self.cache.put((entry.path, frame), decoded)
        if self._pane_tokens.get(index) != token:
            return
        self._pane_tokens.pop(index, None)
        self._pane_tasks.pop(index, None)
        self.grid.panes[index].set_image(entry, decoded, keep_view=keep_view, display=display)
        if index == self.grid.active_index:
            self._on_active_image_shown()

    def _on_decode_failed(self, index: int, token: int, entry: ImageEntry, exc: BaseException) -> None:
        if self._pane_tokens.get(index) != token:
            return
        self._pane_tokens.pop(index, None)
        self._pane_tasks.pop(index, None)
        if isinstance(exc, StudyLoadError):
            problem = exc.as_problem()
        else:  # a bug or an unexpected library error: still a message, not a crash
            problem = LoadProblem(entry.path, f"could not be decoded ({type(exc).__name__}: {exc})")
        pane = self.grid.panes[index]
        pane.clear(f"Cannot display {entry.path.name}:\n{problem.reason}")
        pane.entry = entry
        self.report_problems([problem])
        if index == self.grid.active_index:
            self._on_active_image_shown()

    def _forget_active_image(self) -> None:
        """The active pane is about to show another image: header, status bar and the docks that
        follow the image (the AI panel) drop the previous one now, before the new one arrives."""
        self.header_panel.show_entry(None)
        self.cursor_label.setText("")
        self.current_image_changed.emit(None, None)

    def _on_active_image_shown(self) -> None:
        view = self.active_view()
        if view.entry is not None:
            self.current = view.entry
            self.browser.select_entry(view.entry)
        self._refresh_presets()
        self._sync_checks()
        self._on_display_changed(view)
        self.cursor_label.setText("")  # the value under the cursor was the previous image's
        if self.header_panel.entry is not view.entry:
            self.header_panel.show_entry(None)  # until the new header is read, show none
        # The header is read after the pixels are on screen (it reads the file again).
        QTimer.singleShot(0, lambda e=view.entry: self._update_header(e))
        self.current_image_changed.emit(view.entry, view.decoded)

    def _update_header(self, entry: ImageEntry | None) -> None:
        if entry is self.active_view().entry:
            self.header_panel.show_entry(entry)

    def _on_pane_activated(self, index: int) -> None:
        self._on_active_image_shown()

    def next_pane(self) -> None:
        count = len(self.grid.visible_panes)
        self.grid.set_active((self.grid.active_index + 1) % count, user=True)

    # ----- navigation --------------------------------------------------------------------------
    def step_image(self, step: int) -> None:
        images = self.index.images()
        if not images:
            return
        position = next((i for i, e in enumerate(images) if e is self.current), -1)
        target = min(max(position + step, 0), len(images) - 1) if position >= 0 else 0
        if images[target] is not self.current:
            self.show_entry(images[target])

    def step_study(self, step: int) -> None:
        studies = [s for s in self.index.studies() if s.images()]
        if not studies:
            return
        position = next(
            (i for i, s in enumerate(studies) if self.current is not None and any(e is self.current for e in s.images())),
            -1,
        )
        target = min(max(position + step, 0), len(studies) - 1) if position >= 0 else 0
        if target != position:
            self.show_entry(studies[target].images()[0])

    def step_frame(self, step: int) -> None:
        view = self.active_view()
        if view.decoded is None or view.entry is None or view.decoded.number_of_frames <= 1:
            return
        frame = min(max(view.decoded.frame + step, 0), view.decoded.number_of_frames - 1)
        if frame != view.decoded.frame:
            self.load_into_pane(self.grid.active_index, view.entry, frame)

    def set_layout(self, name: str) -> None:
        if name not in LAYOUT_SHAPES:
            name = "1x1"
        self.grid.set_layout(name)
        self.settings.layout = name
        self.actions_by_name[f"layout_{name}"].setChecked(True)
        if self.current is not None:
            self.show_entry(self.current)

    # ----- window/level and state of the checkable actions ------------------------------------
    def apply_preset(self, number: int) -> None:
        presets = self.active_view().window_presets()
        if 0 <= number < len(presets):
            self.active_view().set_window(presets[number])

    def _refresh_presets(self) -> None:
        labels = self.active_view().preset_labels()
        for n, action in enumerate(self.preset_actions):
            if n < len(labels):
                action.setText(labels[n])
                action.setVisible(True)
            else:
                action.setVisible(False)

    def _set_measuring(self, on: bool) -> None:
        self._measuring = on
        for pane in self.grid.panes:
            pane.set_measuring(on)
        self.statusBar().showMessage("Measure: left-drag on the image draws a ruler" if on else "", 5000)

    def _sync_checks(self) -> None:
        self.actions_by_name["invert"].setChecked(self.active_view().invert)
        self.actions_by_name["show_header"].setChecked(not self.header_dock.isHidden())
        self.actions_by_name["show_problems"].setChecked(not self.problems_dock.isHidden())

    def _on_display_changed(self, pane: ImageView) -> None:
        if pane is not self.active_view():
            return
        self.window_label.setText(pane.window_text())
        self.zoom_label.setText(f"Zoom {pane.zoom_percent():.0f}%" if pane.decoded is not None else "")

    # ----- thumbnails --------------------------------------------------------------------------
    def _queue_thumbnails(self, entries: list[ImageEntry]) -> None:
        if self._closing:
            return
        self._thumbnail_queue.extend(entries)
        self._next_thumbnail()

    def _next_thumbnail(self) -> None:
        if self._thumbnail_task is not None or not self._thumbnail_queue:
            return
        entry = self._thumbnail_queue.pop(0)
        size = self.settings.thumbnail_size
        self._thumbnail_task = self.thumbnail_runner.start(
            lambda _p, _c: make_thumbnail(entry, size),
            on_done=lambda array: self._on_thumbnail(entry, array),
            on_error=lambda _exc: self._on_thumbnail(entry, None),
            name="thumbnail",
        )

    def _on_thumbnail(self, entry: ImageEntry, array) -> None:
        self._thumbnail_task = None
        if array is not None:
            self.browser.set_thumbnail(entry, to_pixmap(array))
        self._next_thumbnail()

    def is_busy(self) -> bool:
        """True while indexing, decoding or thumbnail work is pending (used by tests/screenshots)."""
        return bool(self._index_tasks or self._pane_tasks or self._thumbnail_task or self._thumbnail_queue)

    # ----- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # ----- closing -----------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        self._closing = True
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode("ascii")
        self.settings.window_state = bytes(self.saveState().toBase64()).decode("ascii")
        self.settings.show_header_panel = self.header_dock.isVisible()
        self.settings.layout = self.grid.layout_name
        if self.save_on_close:
            save_settings(self.settings)
        self._thumbnail_queue.clear()
        self.thumbnail_runner.shutdown()
        self.runner.shutdown()
        super().closeEvent(event)
