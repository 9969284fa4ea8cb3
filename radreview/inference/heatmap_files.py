"""Heatmap overlay files for batch prediction: one table lookup per pixel and a fast encoder.

``radreview predict --cam-dir`` writes one image per finding whose heatmap the viewer draws: the
displayed grey image (at display resolution, at most ``max_side`` pixels) with the label's
class-activation map laid over it in a colour map. Measured on the 2-core machine (docs/performance.md), Pillow's
PNG writer spent most of its time choosing a filter for every row and compressing, holding the
GIL while it did. Here:

- the blend of grey and colour is a lookup in a [heat level x grey level] table built once per
  colour map and opacity (:func:`blend_table`), the same arithmetic as an alpha composite;
- PNG rows use the "Up" filter (one numpy subtraction) and are deflated by Intel's ISA-L
  (python-isal; PSF-2.0 bindings, ISA-L BSD-3-Clause) at its level 1: on overlays of FracAtlas
  radiographs four times zlib level 1's speed for files of the same size within 1-2 % (libdeflate
  was 2x, zlib-ng 2.7x with 40 % larger files; tests/benchmarks/bench_heatmap_files.py). The output is an
  ordinary zlib stream that any PNG reader opens; both release the GIL, so two worker threads
  encode side by side (:func:`png_bytes`). Where python-isal is missing the standard zlib does
  the same at a quarter of the speed;
- JPEG (``--cam-format jpeg``) writes files a sixth of the size in about the same time, for
  overviews where a lossy file is acceptable.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

from radreview.inference.cam import DEFAULT_OPACITY, rgba_lut

try:
    from isal import isal_zlib as _deflate
except ImportError:  # the same zlib stream, about four times slower (see the module docstring)
    _deflate = zlib  # type: ignore[assignment]

CAM_FORMATS = ("png", "jpeg")
# The series of heatmap captures radreview returns to the PACS (radreview.pacs.sr): derived images,
# never predicted again when the study comes back with them.
HEATMAP_SERIES_DESCRIPTION = "radreview AI heatmaps (research use only)"
PNG_LEVEL = 1  # ISA-L's 0..3 (zlib's 1..9 where ISA-L is missing): 1 is as small as zlib's 1, 4x as fast
DEFLATE = "isal" if _deflate is not zlib else "zlib"  # what compresses the heatmap PNGs here
JPEG_QUALITY = 90


@lru_cache(maxsize=8)
def blend_table(colormap: str = "jet", opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """[256 * 256] of 3-byte RGB pixels (numpy void "V3"): entry ``heat * 256 + grey`` is the pixel of
    grey level ``grey`` under heat level ``heat`` (0..255, 0 transparent): ``grey + alpha * (colour -
    grey)`` with the overlay's colour and alpha (:func:`radreview.inference.cam.rgba_lut`). Gathering
    whole 3-byte pixels gives a contiguous RGB image, over whose rows the PNG filter runs fast: on a
    1024x819 file the gather takes 2.5 ms against 0.8 for 4-byte words, but dropping the spare
    fourth byte again cost 7 ms (3-byte rows by fancy indexing: 16 ms)."""
    lut = rgba_lut(colormap, opacity).astype(np.float64)
    alpha = lut[:, 3:4] / 255.0  # [256, 1]
    grey = np.arange(256, dtype=np.float64)[None, :, None]  # [1, 256, 1]
    rgb = np.rint(grey * (1.0 - alpha[:, None, :]) + lut[:, None, :3] * alpha[:, None, :]).astype(np.uint8)
    table = np.ascontiguousarray(rgb.reshape(256 * 256, 3)).view("V3").reshape(256 * 256)
    table.setflags(write=False)
    return table


def heat_levels(intensity: np.ndarray) -> np.ndarray:
    """0..1 intensities -> uint16 heat levels 0..255 (rounded; in place on ``intensity``)."""
    np.multiply(intensity, 255.0, out=intensity)
    intensity += 0.5
    np.clip(intensity, 0.0, 255.0, out=intensity)
    return intensity.astype(np.uint16)


def overlay(gray: np.ndarray, intensity: np.ndarray, colormap: str = "jet", opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """uint8 RGB [H, W, 3], C-contiguous: ``gray`` [H, W] uint8 with ``intensity`` [H, W] (0..1,
    float32, used as scratch) laid over it. Equal to :func:`radreview.inference.cam.blend` within
    one grey level."""
    index = heat_levels(intensity)
    index <<= 8
    index |= gray
    pixels = np.take(blend_table(colormap, float(opacity)), index)
    return pixels.view(np.uint8).reshape(*gray.shape, 3)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", _deflate.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(rgb: np.ndarray, text: dict[str, str] | None = None, level: int = PNG_LEVEL) -> bytes:
    """An 8-bit RGB (or grey, 2-D) PNG of ``rgb`` with ``text`` as tEXt chunks (Latin-1).

    Every row uses filter type 2 ("Up": the difference to the row above, PNG spec 9.2), which
    suits radiographs and smooth overlays; the compressor releases the GIL while it works.
    """
    image = np.asarray(rgb)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"png_bytes expects uint8 grey [H, W] or RGB [H, W, 3], got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    rows = np.empty((height, 1 + image[0].size), np.uint8)
    rows[:, 0] = 2
    pixels = rows[:, 1:].reshape(image.shape)  # filtered rows, laid out like the image (strided input is fine)
    pixels[0] = image[0]
    np.subtract(image[1:], image[:-1], out=pixels[1:])  # uint8 arithmetic wraps modulo 256, as PNG wants
    colour_type = 2 if image.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    for key, value in (text or {}).items():
        chunks.append(_chunk(b"tEXt", key.encode("latin-1", "replace") + b"\0" + value.encode("latin-1", "replace")))
    chunks.append(_chunk(b"IDAT", _deflate.compress(rows, level)))
    chunks.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def jpeg_bytes(rgb: np.ndarray, comment: str = "", quality: int = JPEG_QUALITY) -> bytes:
    """A baseline JPEG of ``rgb`` with ``comment`` in a COM segment."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(
        buffer, format="JPEG", quality=quality, comment=comment.encode("utf-8", "replace"))
    return buffer.getvalue()


def encode(rgb: np.ndarray, fmt: str, text: dict[str, str]) -> bytes:
    """The file's bytes in ``fmt`` ("png" or "jpeg")."""
    if fmt == "png":
        return png_bytes(rgb, text)
    if fmt == "jpeg":
        return jpeg_bytes(rgb, "; ".join(f"{k}: {v}" for k, v in text.items()))
    raise ValueError(f"unknown heatmap format {fmt!r}; choose one of {', '.join(CAM_FORMATS)}")
