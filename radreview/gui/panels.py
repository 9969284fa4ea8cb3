"""Side panels: the header panel (key attributes, all tags on demand), the problems panel,
and the dialogs generated from tables (all tags, keyboard shortcuts)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from radreview.gui.actions import shortcut_rows
from radreview.studies import ImageEntry, LoadProblem, StudyLoadError, header_attributes, key_attributes

log = logging.getLogger(__name__)


def _table(columns: list[str], rows: list[tuple[str, ...]], parent: QWidget | None = None) -> QTableWidget:
    table = QTableWidget(len(rows), len(columns), parent)
    table.setHorizontalHeaderLabels(columns)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    table.setWordWrap(False)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 6)
    fill_table(table, rows)
    table.horizontalHeader().setSectionResizeMode(len(columns) - 1, QHeaderView.ResizeMode.Stretch)
    return table


def fill_table(table: QTableWidget, rows: list[tuple[str, ...]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(str(text))
            item.setToolTip(str(text))
            table.setItem(r, c, item)
    table.resizeColumnsToContents()


class HeaderPanel(QWidget):
    """Key DICOM attributes of the current image, and a button for all of its tags."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entry: ImageEntry | None = None
        self.table = _table(["Attribute", "Value"], [], self)
        self.table.horizontalHeader().setVisible(False)
        self.all_tags_button = QPushButton("All tags…", self)
        self.all_tags_button.setEnabled(False)
        self.all_tags_button.clicked.connect(self.show_all_tags)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.table)
        layout.addWidget(self.all_tags_button)

    def show_entry(self, entry: ImageEntry | None) -> None:
        self.entry = entry
        self.all_tags_button.setEnabled(entry is not None and entry.kind == "dicom")
        if entry is None:
            fill_table(self.table, [])
            return
        try:
            rows = list(key_attributes(entry).items())
        except StudyLoadError as exc:
            rows = [("Problem", exc.reason)]
        fill_table(self.table, rows)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)

    def show_all_tags(self) -> QDialog | None:
        if self.entry is None:
            return None
        dialog = AllTagsDialog(self.entry, self.window())
        dialog.show()  # non-modal: the user may keep reading
        return dialog


class AllTagsDialog(QDialog):
    """Every attribute of one file (tag, keyword, value) with a filter box."""

    def __init__(self, entry: ImageEntry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"All tags — {entry.path.name}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(760, 640)
        try:
            self.rows = [(str(t), k, v) for t, k, v in header_attributes(entry)]
        except StudyLoadError as exc:
            self.rows = [("", "Problem", exc.reason)]
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter by tag, keyword or value")
        self.filter.setClearButtonEnabled(True)
        self.table = _table(["Tag", "Keyword", "Value"], self.rows, self)
        self.filter.textChanged.connect(self._apply_filter)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.table)
        layout.addWidget(buttons)

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for r, row in enumerate(self.rows):
            self.table.setRowHidden(r, bool(needle) and not any(needle in str(v).lower() for v in row))


class ProblemsPanel(QWidget):
    """Files and folders that could not be opened, each with its reason (non-modal)."""

    count_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.problems: list[LoadProblem] = []
        self.list = QListWidget(self)
        self.list.setWordWrap(True)
        self.list.setToolTip("Files that could not be opened; everything else opened normally.")
        self.clear_button = QPushButton("Clear", self)
        self.clear_button.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.clear_button, 0, Qt.AlignmentFlag.AlignTop)

    def add(self, problems: list[LoadProblem]) -> list[LoadProblem]:
        """Add the problems not already listed; returns the new ones."""
        known = {(p.path, p.reason) for p in self.problems}
        new = [p for p in problems if (p.path, p.reason) not in known]
        for problem in new:
            self.problems.append(problem)
            # The full path: a bare name ("exist.dcm: not found") does not say which file it was.
            item = QListWidgetItem(f"{problem.path}: {problem.reason}")
            item.setToolTip(str(problem))
            self.list.addItem(item)
        if new:
            self.count_changed.emit(len(self.problems))
        return new

    def clear(self) -> None:
        self.problems.clear()
        self.list.clear()
        self.count_changed.emit(0)


class ShortcutsDialog(QDialog):
    """Help ▸ Keyboard Shortcuts, generated from :data:`radreview.gui.actions.ACTIONS`."""

    def __init__(self, parent: QWidget | None = None, extra_rows: Sequence[tuple[str, str, str]] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(760, 640)
        self.table = _table(["Keys", "Menu", "Action"], shortcut_rows(extra_rows), self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
