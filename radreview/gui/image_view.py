"""One image pane: a pyqtgraph ``ImageItem`` in an aspect-locked, y-down ``ViewBox``.

Geometry (rotate 90°, flip) transforms :attr:`ImageView.image_group`, a parent item, never the
pixel data, so anything placed in that group in image-pixel coordinates follows the image:
heatmap overlays (:meth:`ImageView.add_overlay`) and rulers. Pixels reach the screen through
:func:`radreview.studies.render_display` (Modality LUT ▸ VOI ▸ MONOCHROME1 ▸ Presentation LUT);
a right-drag changes the window like a PACS (left/right: width, up/down: level) and renders are
coalesced so that at most one is done per event-loop turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen, QTransform
from PySide6.QtWidgets import QGraphicsLineItem, QLabel, QWidget

from radreview.studies import DecodedImage, ImageEntry, Window, bone_window, render_display, soft_tissue_window

ACTIVE_BORDER = "#3daee9"
INACTIVE_BORDER = "#2a2a2a"
RULER_COLOR = QColor("#ffd400")
ZOOM_STEP = 1.25


class _ViewerViewBox(pg.ViewBox):
    """A ViewBox whose right-drag is window/level and whose left-drag can draw a ruler."""

    window_dragged = Signal(float, float, bool, bool)  # dx, dy (screen px), start, finish
    ruler_dragged = Signal(QPointF, QPointF, bool)  # start, current (view coords), finish
    clicked = Signal()

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, enableMouse=True)
        self.measuring = False

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt naming
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            delta = ev.pos() - ev.lastPos()
            self.window_dragged.emit(delta.x(), delta.y(), ev.isStart(), ev.isFinish())
            return
        if ev.button() == Qt.MouseButton.LeftButton and self.measuring:
            ev.accept()
            start = self.mapToView(ev.buttonDownPos())
            self.ruler_dragged.emit(start, self.mapToView(ev.pos()), ev.isFinish())
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        ev.accept()  # no context menu: the right button is window/level
        self.clicked.emit()


@dataclass
class Ruler:
    """A distance measurement between two points in image-pixel coordinates (x=column, y=row)."""

    start: QPointF
    end: QPointF
    spacing: tuple[float, float] | None  # (row mm, column mm)

    @property
    def pixels(self) -> float:
        return math.hypot(self.end.x() - self.start.x(), self.end.y() - self.start.y())

    @property
    def millimetres(self) -> float | None:
        if self.spacing is None:
            return None
        row_mm, col_mm = self.spacing
        return math.hypot((self.end.x() - self.start.x()) * col_mm, (self.end.y() - self.start.y()) * row_mm)

    @property
    def text(self) -> str:
        mm = self.millimetres
        if mm is None:
            return f"{self.pixels:.1f} px (no pixel spacing)"
        return f"{mm:.1f} mm"


class ImageView(pg.GraphicsView):
    """Shows one decoded frame; see the module docstring for the interaction model.

    Signals: ``activated`` (clicked), ``cursor_moved(text)`` (pixel value and position, "" when
    off the image), ``display_changed()`` (window, zoom, orientation or image changed).
    """

    activated = Signal()
    cursor_moved = Signal(str)
    display_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, background="k")
        self.setAcceptDrops(False)  # files dropped on a pane go to the main window
        self.view_box = _ViewerViewBox()
        self.setCentralItem(self.view_box)
        # Rotation/flip are applied to this group; children use image-pixel coordinates.
        self.image_group = pg.ItemGroup()
        self.view_box.addItem(self.image_group)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.image_item.setParentItem(self.image_group)
        self.overlays: list[pg.ImageItem] = []

        self.entry: ImageEntry | None = None
        self.decoded: DecodedImage | None = None
        self.window: Window | None = None
        self.invert = False
        self.rotation = 0  # degrees clockwise on screen, multiple of 90
        self.flip_h = False
        self.flip_v = False
        self.rulers: list[Ruler] = []
        self._ruler_items: list[tuple[QGraphicsLineItem, pg.TextItem]] = []
        self._draft: tuple[QGraphicsLineItem, pg.TextItem] | None = None
        self._fit_mode = True
        self._drag_window: Window | None = None
        self.drag_sensitivity = 1.0
        self.render_count = 0
        self._presets: tuple[DecodedImage | None, list[Window]] = (None, [])

        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._render_pending)
        self._pending_preview = False

        self.view_box.window_dragged.connect(self._on_window_drag)
        self.view_box.ruler_dragged.connect(self._on_ruler_drag)
        self.view_box.clicked.connect(self.activated)
        self.view_box.sigRangeChangedManually.connect(self._on_manual_range)
        self.view_box.sigRangeChanged.connect(lambda *_: self.display_changed.emit())
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

        # Corner annotations as plain labels over the viewport (they do not scale or rotate).
        self._caption = self._corner_label()
        self._info = self._corner_label()
        # Top right: a warning about what an overlay shows (e.g. a heatmap outside a model's scope).
        self._overlay_note = self._corner_label()
        self._overlay_note.setStyleSheet("color: #ffd27f; background: rgba(90,40,0,170); padding: 2px 4px;")
        self._message = QLabel(self)
        self._message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._message.setWordWrap(True)
        self._message.setStyleSheet("color: #9a9a9a; background: transparent; font-size: 13px;")
        self.set_active(False)

    # ----- the image -------------------------------------------------------------------------
    def set_image(
        self, entry: ImageEntry, decoded: DecodedImage, keep_view: bool = False, display: np.ndarray | None = None
    ) -> None:
        """Show a decoded frame. A new image starts at its default window, unrotated, fitted;
        ``keep_view`` (another frame of the same image) keeps window, orientation and zoom.
        ``display``: ``render_display(decoded)`` already computed (by the decoding worker)."""
        same_image = keep_view and self.entry is entry and self.decoded is not None
        self.entry, self.decoded = entry, decoded
        self._message.hide()
        if not same_image:
            self.window = decoded.windows[0] if decoded.windows else None
            self.invert = False
            self.rotation, self.flip_h, self.flip_v = 0, False, False
            self.clear_rulers()
            self._apply_transform()
        default_view = self.window is (decoded.windows[0] if decoded.windows else None) and not self.invert
        if display is not None and default_view:
            self._show_display(display)
        else:
            self.render_now()
        if not same_image:
            self.fit()
        self._update_caption()

    def clear(self, message: str = "") -> None:
        """Show nothing (an empty pane), optionally a message in the middle."""
        self.entry = self.decoded = None
        self.window = None
        self.clear_rulers()
        self.image_item.clear()
        for overlay in self.overlays:  # an empty pane shows nothing of the image it held
            overlay.clear()
        self._caption.setText("")
        self._info.setText("")
        self._overlay_note.setText("")
        self.show_message(message)
        self.display_changed.emit()

    def show_message(self, message: str) -> None:
        self._message.setText(message)
        self._message.setVisible(bool(message))
        self._place_labels()

    def render_now(self) -> None:
        """Render with the current window/invert at full resolution."""
        self._render_timer.stop()
        if self.decoded is None:
            return
        self._show_display(render_display(self.decoded, self.window, invert=self.invert))

    def render_preview(self) -> None:
        """Render for a window/level drag: when the screen shows the image at half size or less,
        render every n-th pixel only (what the screen can show anyway); the full-resolution
        render follows when the drag ends."""
        factor = self.preview_factor()
        if factor == 1 or self.decoded is None:
            self.render_now()
            return
        self._render_timer.stop()
        d = self.decoded
        stored = d.stored_index[::factor, ::factor] if d.stored_index is not None else None
        preview = replace(d, pixels=d.pixels[::factor, ::factor], stored_index=stored)
        self._show_display(render_display(preview, self.window, invert=self.invert))

    def preview_factor(self) -> int:
        if self.decoded is None or self.decoded.is_color:
            return 1
        zoom = self.zoom_percent() / 100.0
        return int(min(4, max(1, math.floor(1.0 / zoom)))) if zoom > 0 else 1

    def _show_display(self, display: np.ndarray) -> None:
        """The one place pixels go to the screen. The item always covers the image's full
        pixel rectangle, so a preview (fewer pixels) lands exactly where the full image does."""
        self._render_timer.stop()
        height, width = self.decoded.shape if self.decoded is not None else display.shape[:2]
        self.image_item.setImage(display, autoLevels=False, levels=(0, 255), rect=QRectF(0, 0, width, height))
        self.render_count += 1
        self._update_caption()
        self.display_changed.emit()

    def schedule_render(self, preview: bool = False) -> None:
        """Render once control returns to the event loop (coalesces bursts of mouse moves)."""
        self._pending_preview = preview and (self._pending_preview or not self._render_timer.isActive())
        if not self._render_timer.isActive():
            self._render_timer.start()

    def _render_pending(self) -> None:
        if self._pending_preview:
            self.render_preview()
        else:
            self.render_now()

    # ----- window / level ---------------------------------------------------------------------
    def preset_labels(self) -> list[str]:
        """Menu labels of :meth:`window_presets`, without computing the derived presets
        (Bone/Soft tissue need a histogram: done only when one is chosen)."""
        if self.decoded is None:
            return []
        labels = [w.label for w in self.decoded.windows]
        if not self.decoded.is_color:
            labels += ["Bone (from this image's values)", "Soft tissue (from this image's values)"]
        return labels

    def window_presets(self) -> list[Window]:
        """The file's presets (first = default), then Bone and Soft tissue (computed once per frame)."""
        decoded = self.decoded
        if decoded is None:
            return []
        if self._presets[0] is not decoded:
            extra = [] if decoded.is_color else [bone_window(decoded), soft_tissue_window(decoded)]
            self._presets = (decoded, [*decoded.windows, *extra])
        return list(self._presets[1])

    def set_window(self, window: Window) -> None:
        self.window = window
        self.schedule_render()

    def set_invert(self, invert: bool) -> None:
        self.invert = bool(invert)
        self.schedule_render()

    def _on_window_drag(self, dx: float, dy: float, start: bool, finish: bool) -> None:
        if self.decoded is None or self.decoded.is_color or self.window is None:
            return
        if start or self._drag_window is None:
            self._drag_window = self.window
        low, high = self.decoded.value_range
        # A full-width drag across ~500 screen pixels sweeps the image's whole value range.
        step = max(high - low, 1.0) / 500.0 * self.drag_sensitivity
        width = max(self.window.width + dx * step, 1.0)
        center = self.window.center + dy * step
        self.window = self._drag_window.with_center_width(center, width)
        if finish:
            self._drag_window = None
            self.render_now()
        else:
            self.schedule_render(preview=True)

    # ----- geometry ----------------------------------------------------------------------------
    def rotate(self, degrees: int) -> None:
        self.rotation = (self.rotation + degrees) % 360
        self._apply_transform()
        self.fit()

    def flip_horizontal(self) -> None:
        self.flip_h = not self.flip_h
        self._apply_transform()

    def flip_vertical(self) -> None:
        self.flip_v = not self.flip_v
        self._apply_transform()

    def reset(self) -> None:
        """Default window, no invert/rotation/flip, fitted."""
        if self.decoded is None:
            return
        self.window = self.decoded.windows[0] if self.decoded.windows else None
        self.invert = False
        self.rotation, self.flip_h, self.flip_v = 0, False, False
        self._apply_transform()
        self.render_now()
        self.fit()

    def _apply_transform(self) -> None:
        """Rotate/flip the image group about the image centre (the data is never touched)."""
        height, width = self.decoded.shape if self.decoded is not None else (0, 0)
        cx, cy = width / 2.0, height / 2.0
        # QTransform composes left to right: centre, rotate, then flip in screen axes.
        transform = QTransform().translate(-cx, -cy)
        transform *= QTransform().rotate(self.rotation)
        transform *= QTransform().scale(-1.0 if self.flip_h else 1.0, -1.0 if self.flip_v else 1.0)
        transform *= QTransform().translate(cx, cy)
        self.image_group.setTransform(transform)
        self._update_caption()
        self.display_changed.emit()

    def image_rect_in_view(self) -> QRectF:
        return self.image_group.mapRectToParent(self.image_item.boundingRect())

    def fit(self) -> None:
        if self.decoded is None:
            return
        self._fit_mode = True
        self.view_box.setRange(rect=self.image_rect_in_view(), padding=0.01)

    def actual_size(self) -> None:
        """One image pixel per screen pixel (device pixels), about the current centre."""
        self._fit_mode = False
        pixel_w, pixel_h = self.view_box.viewPixelSize()
        ratio = self.devicePixelRatioF() or 1.0
        if pixel_w > 0 and pixel_h > 0:
            self.view_box.scaleBy((1.0 / (pixel_w * ratio), 1.0 / (pixel_h * ratio)))

    def zoom(self, factor: float) -> None:
        self._fit_mode = False
        self.view_box.scaleBy((1.0 / factor, 1.0 / factor))

    def zoom_percent(self) -> float:
        pixel_w, _ = self.view_box.viewPixelSize()
        ratio = self.devicePixelRatioF() or 1.0
        return 100.0 / (pixel_w * ratio) if pixel_w > 0 else 0.0

    def _on_manual_range(self, *_args) -> None:
        self._fit_mode = False

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if not hasattr(self, "_message"):  # pyqtgraph resizes during its own __init__
            return
        self._place_labels()
        if self._fit_mode and self.decoded is not None:
            self.view_box.setRange(rect=self.image_rect_in_view(), padding=0.01)

    # ----- overlays (extension point) ---------------------------------------------------------
    def add_overlay(self, item: pg.ImageItem, z: float = 10.0) -> None:
        """Add an image (e.g. a heatmap) over the radiograph in image-pixel coordinates.

        The item becomes a child of :attr:`image_group`, so it follows zoom, pan, rotation and
        flips; give it ``setRect(0, 0, columns, rows)`` if its array is smaller than the image.
        """
        item.axisOrder = "row-major"
        item.setParentItem(self.image_group)
        item.setZValue(z)
        self.overlays.append(item)

    def set_overlay_note(self, text: str) -> None:
        """A warning about the overlay shown in the top-right corner ("" hides it)."""
        self._overlay_note.setText(text)
        self._place_labels()

    def overlay_note(self) -> str:
        return self._overlay_note.text()

    def remove_overlay(self, item: pg.ImageItem) -> None:
        if item in self.overlays:
            self.overlays.remove(item)
            item.setParentItem(None)
            if item.scene() is not None:
                item.scene().removeItem(item)

    # ----- measurement -------------------------------------------------------------------------
    def set_measuring(self, on: bool) -> None:
        self.view_box.measuring = bool(on)
        self.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)

    def add_ruler(self, start: QPointF, end: QPointF) -> Ruler:
        """Add a ruler between two image-pixel points; returns it with its length."""
        ruler = Ruler(QPointF(start), QPointF(end), self.decoded.pixel_spacing if self.decoded else None)
        line, label = self._make_ruler_items()
        self._update_ruler_items(line, label, ruler)
        self.rulers.append(ruler)
        self._ruler_items.append((line, label))
        return ruler

    def clear_rulers(self) -> None:
        for line, label in self._ruler_items + ([self._draft] if self._draft else []):
            for item in (line, label):
                item.setParentItem(None)
                if item.scene() is not None:
                    item.scene().removeItem(item)
        self.rulers.clear()
        self._ruler_items.clear()
        self._draft = None

    def _make_ruler_items(self) -> tuple[QGraphicsLineItem, pg.TextItem]:
        line = QGraphicsLineItem(self.image_group)
        pen = QPen(RULER_COLOR, 2)
        pen.setCosmetic(True)  # constant width on screen at any zoom
        line.setPen(pen)
        line.setZValue(50)
        label = pg.TextItem(color=RULER_COLOR, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 150))
        label.setParentItem(self.image_group)
        label.setZValue(51)
        return line, label

    @staticmethod
    def _update_ruler_items(line: QGraphicsLineItem, label: pg.TextItem, ruler: Ruler) -> None:
        line.setLine(ruler.start.x(), ruler.start.y(), ruler.end.x(), ruler.end.y())
        label.setText(ruler.text)
        label.setPos(ruler.end)

    def _on_ruler_drag(self, start_view: QPointF, current_view: QPointF, finish: bool) -> None:
        if self.decoded is None:
            return
        start = self.image_group.mapFromParent(start_view)
        end = self.image_group.mapFromParent(current_view)
        if self._draft is None:
            self._draft = self._make_ruler_items()
        ruler = Ruler(start, end, self.decoded.pixel_spacing)
        self._update_ruler_items(*self._draft, ruler)
        if finish:
            line, label = self._draft
            self._draft = None
            if ruler.pixels < 1.0:  # a click, not a measurement
                for item in (line, label):
                    item.setParentItem(None)
                    self.scene().removeItem(item)
                return
            self.rulers.append(ruler)
            self._ruler_items.append((line, label))

    # ----- cursor readout ----------------------------------------------------------------------
    def pixel_at(self, scene_pos: QPointF) -> tuple[int, int, object] | None:
        """(row, column, modality value or RGB) under a scene point, or None off the image."""
        if self.decoded is None:
            return None
        point = self.image_group.mapFromScene(scene_pos)  # image pixels, even during a preview
        col, row = int(math.floor(point.x())), int(math.floor(point.y()))
        height, width = self.decoded.shape
        if not (0 <= row < height and 0 <= col < width):
            return None
        value = self.decoded.pixels[row, col]
        return row, col, (tuple(int(v) for v in value) if np.ndim(value) else float(value))

    def pixel_text(self, scene_pos: QPointF) -> str:
        hit = self.pixel_at(scene_pos)
        if hit is None or self.decoded is None:
            return ""
        row, col, value = hit
        if isinstance(value, tuple):
            shown = "RGB " + ",".join(str(v) for v in value)
        else:
            # Rescale Type "US" means unspecified, not a unit (it would read as ultrasound)
            unit = f" {self.decoded.rescale_type}" if self.decoded.rescale_type not in ("", "US") else ""
            shown = f"value {value:g}{unit}"
        return f"x {col}  y {row}   {shown}"

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        self.cursor_moved.emit(self.pixel_text(scene_pos))

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt naming
        # The cursor left the pane: a pixel value must not stay in the status bar as if current.
        self.cursor_moved.emit("")
        super().leaveEvent(event)

    # ----- captions ----------------------------------------------------------------------------
    def window_text(self) -> str:
        if self.decoded is None:
            return ""
        if self.decoded.is_color:
            return "colour" + (" (inverted)" if self.invert else "")
        if self.window is None:
            return ""
        text = self.window.label if self.window.lut is not None else f"W {self.window.width:.0f}  L {self.window.center:.0f}"
        return text + ("  inverted" if self.invert else "")

    def _update_caption(self) -> None:
        if self.entry is None or self.decoded is None:
            return
        frames = self.decoded.number_of_frames
        frame = f"  frame {self.decoded.frame + 1}/{frames}" if frames > 1 else ""
        self._caption.setText(f"{self.entry.label}{frame}")
        orientation = []
        if self.rotation:
            orientation.append(f"rot {self.rotation}°")
        if self.flip_h:
            orientation.append("flip H")
        if self.flip_v:
            orientation.append("flip V")
        extra = ("   " + " ".join(orientation)) if orientation else ""
        self._info.setText(f"{self.window_text()}{extra}")
        self._place_labels()

    def _corner_label(self) -> QLabel:
        label = QLabel(self)
        label.setStyleSheet("color: #e8e8e8; background: rgba(0,0,0,110); padding: 2px 4px;")
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        return label

    def _place_labels(self) -> None:
        for label in (self._caption, self._info, self._overlay_note):
            label.adjustSize()
            label.setVisible(bool(label.text()))
        self._caption.move(6, 6)
        self._overlay_note.move(max(6, self.width() - self._overlay_note.width() - 6), 6)
        self._info.move(6, max(6, self.height() - self._info.height() - 6))
        self._message.setGeometry(20, 0, max(0, self.width() - 40), self.height())

    # ----- panes -------------------------------------------------------------------------------
    def set_active(self, active: bool) -> None:
        self.active = active
        color = ACTIVE_BORDER if active else INACTIVE_BORDER
        self.setStyleSheet(f"ImageView {{ border: 2px solid {color}; }}")

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self.activated.emit()
        super().mousePressEvent(event)

    def grab_view(self):
        """The pane as shown (image, overlays, rulers, captions) as a QPixmap, without the
        highlight that marks the active pane."""
        was_active = self.active
        self.set_active(False)
        try:
            return self.grab()
        finally:
            self.set_active(was_active)

    def export_png(self, path: str) -> bool:
        """Save the pane as shown as PNG (see :meth:`grab_view`)."""
        return self.grab_view().save(str(path), "PNG")
