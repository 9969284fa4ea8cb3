"""Files -> the displayed grey image, decoded no larger than batch prediction needs.

The viewer decodes every image in full because it shows it. ``radreview predict`` needs only the
displayed grey pixels that the letterbox then shrinks to the model's input (and, with
``--cam-dir``, to the heatmap files' display size). For the files whose display pipeline is the
identity, 8-bit grey or RGB PNG/JPEG/TIFF/BMP (:mod:`radreview.studies` shows them as stored and
the models take their luma, ITU-R 601 as in training), PIL's decoder gives those pixels directly:
``convert("L")`` is exactly what ``decode_image`` + ``render_display`` + ``to_display_gray`` give
(tests/test_inference_perf.py checks that), without the float copy and lookup tables the viewer
keeps for window/level.

A JPEG far larger than needed is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling
(PIL's ``draft``), but only when the reduced image is still at least :data:`DRAFT_FACTOR` times
the size needed, so that the bilinear letterbox still averages several source pixels per output
pixel, as it does from the full image. Every other file (DICOM, 16-bit, palette, CMYK, several
frames) takes the viewer's path.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from radreview.inference.preprocess import LetterboxGeometry, to_display_gray

# The reduced JPEG must stay at least this many times the size the letterbox makes of it.
# Measured on the validation split (docs/performance.md): at 2 the probabilities move by less
# than the int8 rounding does; FracAtlas's 1024-px images (letterboxed to 320) are decoded in full.
DRAFT_FACTOR = 2.0
DIRECT_MODES = ("L", "RGB")
DIRECT_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")


def needed_size(rows: int, cols: int, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The largest (rows, cols) that any of the letterboxes ``sizes`` (height, width) makes of an image."""
    need = (0, 0)
    for height, width in sizes:
        g = LetterboxGeometry.fit(rows, cols, height, width)
        need = (max(need[0], g.new_rows), max(need[1], g.new_cols))
    return need


def read_display_gray(path, sizes: list[tuple[int, int]], keep_side: int = 0) -> np.ndarray | None:
    """uint8 [H, W] displayed grey of a plain 8-bit raster file, or None when the file needs the
    viewer's path. ``sizes``: the models' input (height, width); ``keep_side``: decode at least
    this long a side too (the heatmap files' display size), 0 for none."""
    with Image.open(path) as image:
        if (image.format not in DIRECT_FORMATS or image.mode not in DIRECT_MODES
                or getattr(image, "n_frames", 1) != 1):
            return None
        if image.format == "JPEG":
            _draft(image, sizes, keep_side)
        image.load()
        return np.asarray(image if image.mode == "L" else image.convert("L"))


def _draft(image: Image.Image, sizes: list[tuple[int, int]], keep_side: int) -> None:
    cols, rows = image.size
    need_rows, need_cols = needed_size(rows, cols, sizes)
    if keep_side:
        scale = min(1.0, keep_side / max(rows, cols))
        need_rows, need_cols = max(need_rows, round(rows * scale)), max(need_cols, round(cols * scale))
    request = (int(np.ceil(need_cols * DRAFT_FACTOR)), int(np.ceil(need_rows * DRAFT_FACTOR)))
    if request[0] * 2 <= cols and request[1] * 2 <= rows:  # worth a reduced decode at all
        # "L" from a YCbCr JPEG is its Y plane: the same luma as convert("L") of the RGB decode
        image.draft("L", request)


def display_gray(entry, sizes: list[tuple[int, int]], keep_side: int = 0) -> np.ndarray:
    """The displayed grey image of an index entry, by the shortest path that gives the same pixels."""
    from radreview.studies import decode_image, render_display

    if getattr(entry, "kind", "") == "raster":
        try:
            gray = read_display_gray(entry.path, sizes, keep_side)
        except (OSError, ValueError, SyntaxError):
            gray = None  # let the viewer's decoder report the problem in its words
        if gray is not None:
            return to_display_gray(gray)
    return to_display_gray(render_display(decode_image(entry)))
