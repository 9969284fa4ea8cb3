"""Reading a training image as the viewer displays it: 8-bit grey, bone white.

DICOM goes through :mod:`radreview.studies` (default window, MONOCHROME1 inverted), so a model
sees what the radiologist sees; JPEG/PNG/TIFF are read with PIL and converted to grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

DICOM_SUFFIXES = {".dcm", ".dicom", ""}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


class ImageReadError(Exception):
    """An image could not be read; ``str()`` names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    if path.suffix.lower() in RASTER_SUFFIXES:
        return False
    with open(path, "rb") as handle:
        head = handle.read(132)
    return head[128:132] == b"DICM"


def _read_dicom_display(path: Path) -> np.ndarray:
    from radreview.studies import decode_display_levels, index_paths

    index = index_paths([path])
    entries = index.images()
    if not entries:
        problems = "; ".join(str(p) for p in getattr(index, "problems", [])) or "no image found"
        raise ImageReadError(path, f"not a readable DICOM image ({problems})")
    try:
        shown = decode_display_levels(entries[0])  # the viewer's first display, without its float copy
    except Exception as exc:  # StudyLoadError and decoder failures: report the file
        raise ImageReadError(path, f"could not decode DICOM pixels ({exc})") from exc
    if shown.ndim == 3:  # colour: the grey the model expects
        shown = np.asarray(Image.fromarray(shown).convert("L"))
    return shown


def read_display_gray(path: str | Path) -> np.ndarray:
    """uint8 [H, W] of the displayed image; raises :class:`ImageReadError` with the file named."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file not found")
    try:
        if _is_dicom(path):
            return _read_dicom_display(path)
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I", "F"):  # 16-bit PNG/TIFF: stretch to 8 bits
                values = np.asarray(image, dtype=np.float32)
                low, high = float(values.min()), float(values.max())
                scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
                return scaled.round().astype(np.uint8)
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageReadError(path, f"not a readable image ({exc})") from exc
