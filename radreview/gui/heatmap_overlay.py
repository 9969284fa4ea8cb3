"""The heatmap as a second ``ImageItem`` over the radiograph, and its colour bar.

The overlay holds 0..1 intensities (see :class:`~radreview.inference.cam.CamDisplay`) at a
display resolution of at most 1024 px, stretched with ``setRect`` over the image's pixel
rectangle. It is a child of the view's image group, so zoom, pan, rotation and flips move it with
the radiograph; window/level changes only the radiograph's item, never the heatmap. The colour
map is an RGBA lookup table whose alpha ramps up from 0, so values below the gate are transparent;
opacity is the item's opacity, so the slider never recomputes pixels.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from radreview.inference.cam import DEFAULT_OPACITY, colormap_lut, rgba_lut
from radreview.inference.engine import LabelResult
from radreview.inference.preprocess import cam_to_image, display_shape
from radreview.inference.presentation import HeatmapLegend, present_heatmap

MAX_OVERLAY_SIDE = 512  # the CAM is coarse (1/32 of the input); more pixels only cost time


def heatmap_intensity(label: LabelResult, scale: str = "absolute", gate: str = "likely",
                      max_side: int = MAX_OVERLAY_SIDE, span: float | None = None,
                      revealed: bool = False) -> np.ndarray:
    """float32 0..1 [rows', cols'] over the whole image (same aspect, at most ``max_side``).

    What may be drawn is decided by :func:`radreview.inference.presentation.present_heatmap`:
    nothing below the gate in any scale, and nothing for an image outside the model's scope
    unless ``revealed`` (the reader asked to see it).
    """
    return heatmap_layer(label, present_heatmap(label, scale, gate, span, revealed), max_side)


def heatmap_layer(label: LabelResult, legend: HeatmapLegend, max_side: int = MAX_OVERLAY_SIDE) -> np.ndarray:
    """The intensities of ``label``'s map as ``legend`` says to draw them (zeros when it says not to)."""
    if label.cam is None or label.geometry is None:
        raise ValueError(f"{label.display_name}: the model gave no activation map")
    shape = display_shape(label.geometry.rows, label.geometry.cols, max_side)
    return legend.intensity(cam_to_image(label.cam, label.geometry, shape))


class HeatmapOverlay:
    """One overlay item, moved to whichever view is active."""

    def __init__(self, colormap: str = "jet", opacity: float = DEFAULT_OPACITY) -> None:
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setZValue(10)
        self.view = None
        self.colormap = colormap
        self.item.setLookupTable(rgba_lut(colormap))
        self.item.setOpacity(opacity)
        self.enabled = True
        self.has_map = False

    def attach(self, view) -> None:
        """Put the overlay on ``view`` (an ImageView with ``add_overlay``), leaving the old one."""
        if view is self.view:
            return
        self.detach()
        self.view = view
        if view is not None:
            view.add_overlay(self.item, z=10.0)

    def detach(self) -> None:
        if self.view is not None:
            self.view.remove_overlay(self.item)
        self.view = None

    def set_map(self, intensity: np.ndarray, rows: int, cols: int) -> None:
        """Show ``intensity`` stretched over the image's ``rows x cols`` pixels."""
        self.item.setImage(intensity, autoLevels=False, levels=(0.0, 1.0))
        self.item.setRect(0, 0, cols, rows)
        self.has_map = True
        self._update_visibility()

    def clear(self) -> None:
        self.item.clear()
        self.has_map = False
        self._update_visibility()

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        self._update_visibility()

    def set_opacity(self, opacity: float) -> None:
        self.item.setOpacity(float(np.clip(opacity, 0.0, 1.0)))

    def opacity(self) -> float:
        return float(self.item.opacity())

    def set_colormap(self, name: str) -> None:
        self.colormap = name
        self.item.setLookupTable(rgba_lut(name))

    def is_shown(self) -> bool:
        return (self.enabled and self.has_map and self.item.image is not None and self.item.isVisible()
                and self.view is not None)

    def _update_visibility(self) -> None:
        self.item.setVisible(self.enabled and self.has_map)


class ColorBar(QWidget):
    """A horizontal gradient of the colour map with the scale's end labels."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.gradient = QLabel(self)
        self.gradient.setFixedHeight(12)
        self.gradient.setScaledContents(True)
        self.low = QLabel(self)
        self.high = QLabel(self)
        self.high.setAlignment(Qt.AlignmentFlag.AlignRight)
        for label in (self.low, self.high):
            label.setStyleSheet("font-size: 10px; color: #888;")
        ends = QHBoxLayout()
        ends.setContentsMargins(0, 0, 0, 0)
        ends.addWidget(self.low)
        ends.addWidget(self.high)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addWidget(self.gradient)
        layout.addLayout(ends)
        self._image: QImage | None = None

    def texts(self) -> tuple[str, str]:
        return self.low.text(), self.high.text()

    def set_colormap(self, name: str, low_text: str = "", high_text: str = "") -> None:
        row = np.ascontiguousarray(np.repeat(colormap_lut(name)[None, :, :], 4, axis=0))
        self._row = row  # QImage does not own the buffer
        self._image = QImage(row.data, 256, 4, 256 * 3, QImage.Format.Format_RGB888)
        self.gradient.setPixmap(QPixmap.fromImage(self._image))
        self.low.setText(low_text)
        self.high.setText(high_text)
