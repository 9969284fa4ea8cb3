"""Multi-view layouts (1x1, 1x2, 2x2): a grid of :class:`ImageView` panes, one of them active."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QWidget

from radreview.gui.image_view import ImageView

LAYOUT_SHAPES: dict[str, tuple[int, int]] = {"1x1": (1, 1), "1x2": (1, 2), "2x2": (2, 2)}


class ViewerGrid(QWidget):
    """Holds the panes. ``active_changed(index)`` when the user clicks another pane."""

    active_changed = Signal(int)
    pane_created = Signal(object)  # ImageView, so the window can connect its signals

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.panes: list[ImageView] = []
        self.layout_name = ""
        self.active_index = 0
        self.set_layout("1x1")

    @property
    def visible_panes(self) -> list[ImageView]:
        rows, cols = LAYOUT_SHAPES[self.layout_name]
        return self.panes[: rows * cols]

    def set_layout(self, name: str) -> None:
        if name not in LAYOUT_SHAPES:
            raise ValueError(f"unknown layout {name!r}; choose from {', '.join(LAYOUT_SHAPES)}")
        rows, cols = LAYOUT_SHAPES[name]
        while len(self.panes) < rows * cols:
            pane = ImageView(self)
            index = len(self.panes)
            pane.activated.connect(lambda i=index: self.set_active(i, user=True))
            self.panes.append(pane)
            self.pane_created.emit(pane)
        for pane in self.panes:
            self._grid.removeWidget(pane)
            pane.hide()
        for i in range(rows * cols):
            self._grid.addWidget(self.panes[i], i // cols, i % cols)
            self.panes[i].show()
        # Equal panes whatever each view's size hint (an image view would otherwise grow).
        for r in range(2):
            self._grid.setRowStretch(r, 1 if r < rows else 0)
        for c in range(2):
            self._grid.setColumnStretch(c, 1 if c < cols else 0)
        for i in range(rows * cols, len(self.panes)):
            self.panes[i].clear()
        self.layout_name = name
        self.set_active(min(self.active_index, rows * cols - 1))

    def active_view(self) -> ImageView:
        return self.panes[self.active_index]

    def set_active(self, index: int, user: bool = False) -> None:
        changed = index != self.active_index
        self.active_index = index
        for i, pane in enumerate(self.panes):
            pane.set_active(i == index and len(self.visible_panes) > 1)
        if user and changed:
            self.active_changed.emit(index)
