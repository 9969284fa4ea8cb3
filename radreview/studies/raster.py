"""PNG/JPEG/TIFF (and BMP) files: header reading for the index and decoding on demand."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from radreview.studies.errors import StudyLoadError
from radreview.studies.fileaccess import open_regular
from radreview.studies.pixels import DecodedImage, _offsets, to_rgb8
from radreview.studies.sizes import check_raster_size
from radreview.studies.voi import window_from_range

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp"})


@dataclass(frozen=True)
class RasterHeader:
    format: str
    width: int
    height: int
    mode: str
    frames: int


@contextmanager
def open_raster(handle) -> Iterator[Image.Image]:
    """``Image.open`` without Pillow's decompression-bomb warning: radreview's own, lower limit
    (:func:`check_raster_size`) decides, before any pixel is decoded, with a message that names it
    (Pillow's error at 179 M pixels stays in force). Only this call is affected, not the process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(handle)
    with image:
        yield image


def read_raster_header(path: Path) -> RasterHeader:
    """Size and mode without decoding pixels (PIL opens lazily); refuses images over the limit."""
    try:
        with open_regular(path) as handle, open_raster(handle) as image:
            check_raster_size(path, image.width, image.height)
            frames = int(getattr(image, "n_frames", 1) or 1)
            return RasterHeader(image.format or path.suffix.lstrip(".").upper(), image.width, image.height, image.mode, frames)
    except StudyLoadError:
        raise
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit: ours is lower
        raise StudyLoadError(path, f"image too large to open ({exc})") from exc
    except PermissionError as exc:
        raise StudyLoadError(path, "permission denied") from exc
    except FileNotFoundError as exc:
        raise StudyLoadError(path, "file not found") from exc
    except UnidentifiedImageError as exc:
        raise StudyLoadError(path, f"not a readable {path.suffix.lstrip('.').upper() or 'image'} file (unrecognised or damaged header)") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises SyntaxError for some bad headers
        raise StudyLoadError(path, f"damaged image file ({exc})") from exc


def decode_raster(path: Path, frame: int = 0) -> DecodedImage:
    """Decode a raster file: grey -> float32 [H, W]; colour -> uint8 [H, W, 3] (grey if R=G=B)."""
    path = Path(path)
    try:
        with open_regular(path) as handle, open_raster(handle) as image:
            frames = int(getattr(image, "n_frames", 1) or 1)
            if not 0 <= frame < frames:
                raise StudyLoadError(path, f"frame {frame} does not exist (the file has {frames})")
            if frame:
                image.seek(frame)
            check_raster_size(path, image.width, image.height)  # each page of a TIFF has its own size
            image.load()
            array, bits = _as_array(image)
    except StudyLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise StudyLoadError(path, f"image too large to open ({exc})") from exc
    except PermissionError as exc:
        raise StudyLoadError(path, "permission denied") from exc
    except FileNotFoundError as exc:
        raise StudyLoadError(path, "file not found") from exc
    except UnidentifiedImageError as exc:
        raise StudyLoadError(path, "not a readable image file (unrecognised or damaged header)") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated/corrupt data: "image file is truncated"
        raise StudyLoadError(path, f"damaged image data ({exc})") from exc
    if array.ndim == 3:
        return DecodedImage(
            pixels=array, photometric="RGB", windows=(window_from_range(0, 255, "Full range"),),
            frame=frame, number_of_frames=frames, bits_stored=8, path=path,
        )
    integer = np.issubdtype(array.dtype, np.integer)
    if integer:
        low, high = int(array.min()), int(array.max())
        index = _offsets(array, low, np.uint16 if high - low < 65536 else np.uint32)
        table = np.arange(low, high + 1, dtype=np.float64)
        pixels = table.astype(np.float32)[index]
    else:
        index = table = None
        pixels = array.astype(np.float32)
    value_range = (float(pixels.min()), float(pixels.max()))
    # 8-bit files are shown as stored (identity window); deeper ones stretched over their data.
    window = window_from_range(0, 255, "Full range") if bits == 8 else window_from_range(*value_range, "Data range")
    return DecodedImage(
        pixels=pixels, photometric="MONOCHROME2", windows=(window,), frame=frame, number_of_frames=frames,
        bits_stored=bits, path=path, value_range=value_range, stored_index=index, value_table=table,
    )


def _as_array(image: Image.Image) -> tuple[np.ndarray, int]:
    mode = image.mode
    if mode in ("L", "1", "LA"):
        return np.asarray(image.convert("L"), dtype=np.uint8), 8
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(image)
        return array.astype(np.int32 if mode == "I" else np.uint16), 16
    if mode == "F":
        return np.asarray(image, dtype=np.float32), 32
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    # Radiographs saved as RGB (or palette) are usually grey: keep them grey so windowing works.
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0]), 8
    return to_rgb8(rgb, 8), 8
