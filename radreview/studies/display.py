"""From a decoded image to display levels, in the standard's order (PS3.4 N.2.1, grayscale).

Modality LUT (already in ``DecodedImage.pixels``) ▸ VOI LUT (window or table) ▸ MONOCHROME1
inversion ▸ Presentation LUT Shape. The output is 8-bit P-values shown directly (no
calibration to the Grayscale Standard Display Function: radreview is not a diagnostic display).
"""

from __future__ import annotations

import numpy as np

from radreview.studies.pixels import DecodedImage
from radreview.studies.voi import Window, apply_window


def render_display(image: DecodedImage, window: Window | None = None, invert: bool = False) -> np.ndarray:
    """uint8 [H, W] (or [H, W, 3] for colour) as displayed; ``invert`` is the user's invert toggle.

    ``window`` defaults to the image's first preset. For integer data the VOI LUT is computed
    once per distinct stored value and applied with one table lookup.
    """
    window = window or image.windows[0]
    flip = image.inverted_by_file != bool(invert)
    if image.is_color:
        return _render_color(image.pixels, window, flip=bool(invert) != (image.presentation_lut_shape == "INVERSE"))
    if image.value_table is not None and image.stored_index is not None:
        lut = to_display_levels(apply_window(image.value_table, window))
        if flip:
            lut = 255 - lut
        return np.take(lut, image.stored_index)
    levels = to_display_levels(apply_window(image.pixels, window))
    return 255 - levels if flip else levels


def to_display_levels(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 255] to uint8, rounding half up (as DCMTK does)."""
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).clip(0, 255).astype(np.uint8)


def _render_color(rgb: np.ndarray, window: Window, flip: bool) -> np.ndarray:
    identity = window.lut is None and window.function == "LINEAR" and window.center == 128 and window.width == 256
    if identity and not flip:
        return rgb
    lut = to_display_levels(apply_window(np.arange(256, dtype=np.float64), window))
    if flip:
        lut = 255 - lut
    return np.take(lut, rgb)
