"""Files -> the displayed grey image by the shortest path that gives the same pixels.

The viewer keeps a float copy and lookup tables of every image for window/level. ``radreview
predict`` needs only the displayed grey pixels. For the files whose display pipeline is the
identity, 8-bit grey or RGB PNG/JPEG/TIFF/BMP (:mod:`radreview.studies` shows them as stored and
the models take their luma, ITU-R 601 as in training), PIL's decoder gives those pixels
directly: ``convert("L")`` is exactly what ``decode_image`` + ``render_display`` +
``to_display_gray`` give (tests/test_inference_fast_paths.py checks it), at about a third of the
CPU time. DICOM files go through :func:`radreview.studies.pixels.decode_display_levels`: the same
pixels without the viewer's float copy (a third to a half of the CPU time of a radiograph's
decoding). Every other file (16-bit, palette, CMYK, several frames) takes the viewer's path.

Decoding a JPEG reduced (libjpeg's DCT scaling, PIL's ``draft``) was measured and is not used:
even with the reduced image still 3.2 times the letterbox size, the shipped model's logits moved
by 0.28 (median over images of the largest label change; up to 0.72), as much as int8 rounding
moves them (docs/performance.md). A model must see the pixels it was trained on.
"""

from __future__ import annotations

import numpy as np

from radreview.inference.preprocess import to_display_gray

DIRECT_MODES = ("L", "RGB")
DIRECT_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")


def read_display_gray(path) -> np.ndarray | None:
    """uint8 [H, W] displayed grey of a plain 8-bit raster file, or None when the file needs the viewer's path.

    The same guards as the viewer's decoder: regular files only, and the size limit checked from
    the header before any pixel is decoded (the file may have changed since it was indexed)."""
    from radreview.studies.fileaccess import open_regular
    from radreview.studies.raster import open_raster
    from radreview.studies.sizes import check_raster_size

    with open_regular(path) as handle, open_raster(handle) as image:
        if (image.format not in DIRECT_FORMATS or image.mode not in DIRECT_MODES
                or getattr(image, "n_frames", 1) != 1):
            return None
        check_raster_size(path, image.width, image.height)
        image.load()
        return np.asarray(image if image.mode == "L" else image.convert("L"))


def display_gray(entry) -> np.ndarray:
    """The displayed grey image of an index entry (what the models take)."""
    from radreview.studies import decode_display_levels
    from radreview.studies.errors import StudyLoadError

    if getattr(entry, "kind", "") == "raster":
        try:
            gray = read_display_gray(entry.path)
        except (OSError, ValueError, SyntaxError, StudyLoadError):
            gray = None  # let the viewer's decoder report the problem in its words
        if gray is not None:
            return to_display_gray(gray)
    return to_display_gray(decode_display_levels(entry))
