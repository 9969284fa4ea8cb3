"""Thumbnails for the study browser: rendered in a worker thread, turned into pixmaps on the GUI thread."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage, QPixmap

from radreview.studies import ImageEntry, decode_display_levels


def make_thumbnail(entry: ImageEntry, size: int) -> np.ndarray:
    """The image at its default window, shrunk to fit ``size`` x ``size`` (uint8, grey or RGB).

    Plain function (no Qt): runs in a worker thread. Raises StudyLoadError like decode_image.
    """
    display = decode_display_levels(entry)  # the first display, without the viewer's float copy
    height, width = display.shape[:2]
    # Subsample cheaply first so that the filtered resize works on a small array.
    step = max(1, min(height, width) // (size * 2))
    picture = Image.fromarray(np.ascontiguousarray(display[::step, ::step]))
    picture.thumbnail((size, size), Image.Resampling.BILINEAR)
    return np.asarray(picture)


def to_pixmap(array: np.ndarray) -> QPixmap:
    """A QPixmap copy of a uint8 grey [H, W] or RGB [H, W, 3] array (GUI thread only)."""
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    if array.ndim == 2:
        image = QImage(array.data, width, height, array.strides[0], QImage.Format.Format_Grayscale8)
    else:
        image = QImage(array.data, width, height, array.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())  # copy: the QImage must not outlive the array
