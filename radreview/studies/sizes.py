"""Image sizes checked against :mod:`radreview.limits` before anything is decoded."""

from __future__ import annotations

from pathlib import Path

from radreview.limits import hint, limits
from radreview.studies.errors import StudyLoadError

MAX_SAMPLES = 4  # grey, RGB, RGBA/CMYK: more components than this is no radiograph


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} megapixels"


def check_dicom_size(path: Path, rows: int, columns: int, frames: int = 1, samples: int = 1,
                     what: str = "the header") -> None:
    """Refuse a DICOM image whose frame or file is larger than the limits allow."""
    if rows <= 0 or columns <= 0:
        raise StudyLoadError(path, f"damaged image header: {what} says {columns} x {rows} pixels")
    if not 1 <= samples <= MAX_SAMPLES:
        raise StudyLoadError(path, f"unsupported image: {what} says {samples} samples per pixel (at most {MAX_SAMPLES})")
    per_frame = rows * columns
    cap = limits().max_frame_pixels
    if per_frame > cap:
        raise StudyLoadError(path, f"image too large to open: {what} says {columns} x {rows} pixels per frame "
                                   f"({_megapixels(per_frame)}; {hint('max_frame_pixels')})")
    total = per_frame * max(frames, 1)
    if total > limits().max_file_pixels:
        raise StudyLoadError(path, f"image too large to open: {frames} frames of {columns} x {rows} pixels "
                                   f"({_megapixels(total)} in all; {hint('max_file_pixels')})")


def check_raster_size(path: Path, width: int, height: int) -> None:
    """Refuse a PNG/JPEG/TIFF/BMP whose header asks for more pixels than the limit."""
    if width <= 0 or height <= 0:
        raise StudyLoadError(path, f"damaged image header: it says {width} x {height} pixels")
    if width * height > limits().max_raster_pixels:
        raise StudyLoadError(path, f"image too large to open: {width} x {height} pixels "
                                   f"({_megapixels(width * height)}; {hint('max_raster_pixels')})")
