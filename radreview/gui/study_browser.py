"""The study browser: patient ▸ study ▸ series ▸ image, with thumbnails on the images.

The tree holds :class:`ImageEntry` objects under ``Qt.UserRole``. Thumbnails are asked for
lazily: only for image rows that are scrolled into view (``thumbnails_wanted`` signal), and the
main window renders them in a worker thread and hands back pixmaps with :meth:`set_thumbnail`.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

from radreview.studies import ImageEntry, Patient, Series, Study, StudyIndex

ROLE_ENTRY = Qt.ItemDataRole.UserRole
ROLE_KIND = Qt.ItemDataRole.UserRole + 1


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def patient_text(patient: Patient) -> str:
    name = patient.name.replace("^", " ").strip() or "(no name)"
    return f"{name}  [{patient.key}]" if patient.key and patient.key != patient.name else name


def study_text(study: Study) -> str:
    count = len(study.images())
    parts = [p for p in (_date(study.date), study.description) if p]
    return f"{' '.join(parts) or 'Study'}  ({count} image{'s' if count != 1 else ''})"


def series_text(series: Series) -> str:
    number = f"#{series.number} " if series.number is not None else ""
    parts = [p for p in (series.modality, series.description) if p]
    return f"{number}{' '.join(parts) or 'Series'}"


def entry_key(entry: ImageEntry) -> tuple[str, str]:
    return (str(entry.path), entry.sop_instance_uid)


class StudyBrowser(QTreeWidget):
    """Signals: ``image_selected(entry)`` when the user picks an image (or a study/series:
    its first image); ``thumbnails_wanted(list[entry])`` for visible rows without a thumbnail."""

    image_selected = Signal(object)
    thumbnails_wanted = Signal(list)

    def __init__(self, parent: QWidget | None = None, thumbnail_size: int = 96) -> None:
        super().__init__(parent)
        self.setHeaderHidden(True)
        self.setColumnCount(1)
        self.setIconSize(QSize(thumbnail_size, thumbnail_size))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformRowHeights(False)
        self.setExpandsOnDoubleClick(True)
        self.setAcceptDrops(False)  # the main window takes drops
        self._items: dict[tuple[str, str], QTreeWidgetItem] = {}
        self._has_thumbnail: set[tuple[str, str]] = set()
        self._asked: set[tuple[str, str]] = set()
        self._placeholder = QPixmap(thumbnail_size, thumbnail_size)
        self._placeholder.fill(Qt.GlobalColor.black)
        self._suppress = False
        self.currentItemChanged.connect(self._on_current_changed)
        # Thumbnails for what became visible: after scrolling/expanding settles.
        self._visible_timer = QTimer(self)
        self._visible_timer.setSingleShot(True)
        self._visible_timer.setInterval(60)
        self._visible_timer.timeout.connect(self._ask_visible_thumbnails)
        self.verticalScrollBar().valueChanged.connect(lambda _v: self._visible_timer.start())
        self.itemExpanded.connect(lambda _i: self._visible_timer.start())

    def populate(self, index: StudyIndex) -> None:
        """Show every patient/study/series/image of ``index`` (keeps existing thumbnails)."""
        current = self.current_entry()
        pixmaps = {key: item.icon(0) for key, item in self._items.items() if key in self._has_thumbnail}
        self._suppress = True
        self.clear()
        self._items.clear()
        self._asked = set(pixmaps)
        for patient in index.patients:
            p_item = QTreeWidgetItem(self, [patient_text(patient)])
            p_item.setData(0, ROLE_KIND, "patient")
            for study in patient.studies:
                s_item = QTreeWidgetItem(p_item, [study_text(study)])
                s_item.setData(0, ROLE_KIND, "study")
                s_item.setToolTip(0, f"Accession {study.accession_number}" if study.accession_number else "")
                for series in study.series:
                    r_item = QTreeWidgetItem(s_item, [series_text(series)])
                    r_item.setData(0, ROLE_KIND, "series")
                    for entry in series.images:
                        i_item = QTreeWidgetItem(r_item, [entry.label])
                        i_item.setData(0, ROLE_KIND, "image")
                        i_item.setData(0, ROLE_ENTRY, entry)
                        i_item.setToolTip(0, str(entry.path))
                        key = entry_key(entry)
                        i_item.setIcon(0, pixmaps.get(key) or self._placeholder)
                        self._items[key] = i_item
        self.expandAll()
        self._has_thumbnail = set(pixmaps)
        self._suppress = False
        if current is not None:
            self.select_entry(current)
        self._visible_timer.start()

    def current_entry(self) -> ImageEntry | None:
        item = self.currentItem()
        return item.data(0, ROLE_ENTRY) if item is not None else None

    def select_entry(self, entry: ImageEntry) -> None:
        """Highlight ``entry`` without emitting ``image_selected``."""
        item = self._items.get(entry_key(entry))
        if item is None or item is self.currentItem():
            return
        self._suppress = True
        self.setCurrentItem(item)
        self.scrollToItem(item)
        self._suppress = False

    def set_thumbnail(self, entry: ImageEntry, pixmap: QPixmap) -> None:
        item = self._items.get(entry_key(entry))
        if item is not None:
            icon = QIcon(pixmap)
            icon.addPixmap(pixmap, QIcon.Mode.Selected)  # a radiograph is not tinted when selected
            item.setIcon(0, icon)
            self._has_thumbnail.add(entry_key(entry))

    def item_for(self, entry: ImageEntry) -> QTreeWidgetItem | None:
        return self._items.get(entry_key(entry))

    def visible_entries(self) -> list[ImageEntry]:
        viewport = self.viewport().rect()
        found = []
        for key, item in self._items.items():
            if not item.isHidden() and self.visualItemRect(item).intersects(viewport):
                found.append(item.data(0, ROLE_ENTRY))
        return found

    def _ask_visible_thumbnails(self) -> None:
        wanted = [e for e in self.visible_entries() if entry_key(e) not in self._asked]
        if wanted:
            self._asked.update(entry_key(e) for e in wanted)
            self.thumbnails_wanted.emit(wanted)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self._visible_timer.start()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._visible_timer.start()

    def _on_current_changed(self, current: QTreeWidgetItem | None, _previous) -> None:
        if self._suppress or current is None:
            return
        entry = current.data(0, ROLE_ENTRY)
        if entry is None:  # a patient/study/series row: its first image
            node = current
            while node is not None and node.data(0, ROLE_ENTRY) is None and node.childCount():
                node = node.child(0)
            entry = node.data(0, ROLE_ENTRY) if node is not None else None
        if entry is not None:
            self.image_selected.emit(entry)
