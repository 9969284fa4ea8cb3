"""Displayed pixels -> model input, and the way back for class-activation maps.

Training (``radreview.training.letterbox``) imports :func:`letterbox` from here, so a model sees
at inference exactly the pixels it was trained on: the viewer's displayed 8-bit grey image,
resized with PIL's bilinear filter keeping the aspect ratio, scaled to 0..1, centred in a
``height x width`` canvas filled with ``pad_value``, repeated over three channels and
normalised with the card's mean and standard deviation.

:class:`LetterboxGeometry` records where the image sits in the canvas, so that a CAM computed on
the canvas can be cropped and stretched back onto the original image (:func:`cam_to_image`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from radreview.inference.card import InputCard

MIN_SIDE = 8  # smaller images carry no usable detail for any classifier


class ImageInputError(ValueError):
    """An image the models cannot take (the message says why)."""


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where an ``rows x cols`` image lies inside the ``height x width`` model canvas."""

    rows: int
    cols: int
    height: int
    width: int
    top: int
    left: int
    new_rows: int
    new_cols: int

    @classmethod
    def fit(cls, rows: int, cols: int, height: int, width: int, resize: str = "letterbox") -> LetterboxGeometry:
        if resize == "stretch":
            return cls(rows, cols, height, width, 0, 0, height, width)
        scale = min(height / rows, width / cols)
        new_rows = max(1, min(height, round(rows * scale)))
        new_cols = max(1, min(width, round(cols * scale)))
        return cls(rows, cols, height, width, (height - new_rows) // 2, (width - new_cols) // 2, new_rows, new_cols)

    def canvas_box(self, cam_rows: int, cam_cols: int) -> tuple[float, float, float, float]:
        """The image's box (left, top, right, bottom) in the coordinates of a ``cam_rows x cam_cols`` map."""
        sy = cam_rows / self.height
        sx = cam_cols / self.width
        return (self.left * sx, self.top * sy, (self.left + self.new_cols) * sx, (self.top + self.new_rows) * sy)


def letterbox(gray: np.ndarray, height: int, width: int, pad_value: float = 0.0) -> np.ndarray:
    """float32 [height, width] in 0..1: aspect-preserving bilinear resize, centred, padded.

    ``gray`` is the displayed uint8 [H, W] image (a float image in 0..1 is quantised to 8 bits
    first, as the display would). Training imports this function (radreview.training.letterbox).
    """
    canvas, _ = letterbox_with_geometry(gray, height, width, pad_value)
    return canvas


def letterbox_with_geometry(
    gray: np.ndarray, height: int, width: int, pad_value: float = 0.0, resize: str = "letterbox"
) -> tuple[np.ndarray, LetterboxGeometry]:
    """:func:`letterbox` plus the geometry needed to map a CAM back onto ``gray``."""
    if gray.ndim != 2:
        raise ValueError(f"letterbox expects a 2-D grey image, got shape {gray.shape}")
    gray = _as_uint8(gray)
    rows, cols = gray.shape
    geometry = LetterboxGeometry.fit(rows, cols, height, width, resize)
    resized = Image.fromarray(np.ascontiguousarray(gray)).resize((geometry.new_cols, geometry.new_rows), Image.BILINEAR)
    canvas = np.full((height, width), pad_value, dtype=np.float32)
    canvas[geometry.top : geometry.top + geometry.new_rows, geometry.left : geometry.left + geometry.new_cols] = (
        np.asarray(resized, dtype=np.float32) / 255.0
    )
    return canvas, geometry


def _as_uint8(gray: np.ndarray) -> np.ndarray:
    if gray.dtype == np.uint8:
        return gray
    if np.issubdtype(gray.dtype, np.floating):
        return np.clip(np.rint(gray * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"letterbox expects uint8 (or 0..1 float) pixels, got {gray.dtype}")


def to_display_gray(pixels: np.ndarray) -> np.ndarray:
    """Any displayed image -> uint8 [H, W] grey, as training reads it.

    RGB(A) goes through PIL's ``convert("L")`` (ITU-R 601 luma, like training); 16-bit or float
    pixels that did not go through the display pipeline are stretched min..max to 8 bits, the
    same rule training applies to 16-bit PNG/TIFF. Raises :class:`ImageInputError` for shapes no
    model can take.
    """
    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if array.dtype != np.uint8:
            array = _stretch(array[:, :, :3])
        array = np.asarray(Image.fromarray(np.ascontiguousarray(array)).convert("L"))
    if array.ndim != 2:
        raise ImageInputError(f"cannot use an image of shape {array.shape} (expected grey or RGB)")
    if min(array.shape) < MIN_SIDE:
        raise ImageInputError(f"image of {array.shape[1]}x{array.shape[0]} pixels is too small (min {MIN_SIDE})")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        array = _stretch(array)
    return array


def _stretch(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if not np.isfinite(low) or not np.isfinite(high):
        raise ImageInputError("image contains NaN or infinite values")
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return ((values - low) / (high - low) * 255.0).round().astype(np.uint8)


def normalise(letterboxed: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """[H, W] in 0..1 -> float32 [3, H, W] repeated over channels and normalised per channel."""
    mean_arr = np.asarray(mean, dtype=np.float32)[:, None, None]
    inv_std = (1.0 / np.asarray(std, dtype=np.float32))[:, None, None]
    return (letterboxed[None, :, :] - mean_arr) * inv_std


def prepare(display: np.ndarray, spec: InputCard, out: np.ndarray | None = None) -> tuple[np.ndarray, LetterboxGeometry]:
    """A displayed image -> (float32 [3, H, W] model input, geometry) as the card says.

    The same values as ``normalise(letterbox(...))`` to the bit, in one pass: the resized 8-bit
    pixels index a 256-entry table per channel that holds ``(v / 255 - mean) / std`` computed
    with the same float32 operations. ``out`` ([3, H, W] float32) is filled instead of a new array.
    """
    gray = _as_uint8(to_display_gray(display))
    rows, cols = gray.shape
    geometry = LetterboxGeometry.fit(rows, cols, spec.height, spec.width, spec.resize)
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(gray)).resize(
        (geometry.new_cols, geometry.new_rows), Image.BILINEAR))
    tables, pad = _normalise_tables(tuple(spec.mean), tuple(spec.std), float(spec.pad_value))
    tensor = out if out is not None else np.empty((3, spec.height, spec.width), np.float32)
    inside = (slice(geometry.top, geometry.top + geometry.new_rows), slice(geometry.left, geometry.left + geometry.new_cols))
    full = geometry.new_rows == spec.height and geometry.new_cols == spec.width
    index = resized.astype(np.intp)  # once, not once per channel inside np.take
    for channel in range(3):
        plane = tensor[channel]
        if not full:
            plane.fill(pad[channel])
        np.take(tables[channel], index, out=plane[inside], mode="clip")  # 8-bit indices: always in range
    return tensor, geometry


@lru_cache(maxsize=16)
def _normalise_tables(mean: tuple[float, ...], std: tuple[float, ...], pad_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: the normalised value of each 8-bit level [3, 256] and of the padding [3]."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    tables = normalise(np.broadcast_to(levels, (1, 256)).copy(), mean, std)[:, 0, :]
    pad = normalise(np.full((1, 1), pad_value, np.float32), mean, std)[:, 0, 0]
    tables.setflags(write=False)
    return np.ascontiguousarray(tables), pad


def preprocessing_key(spec: InputCard) -> tuple:
    """Models whose cards give the same key share one preprocessed tensor."""
    return (spec.height, spec.width, tuple(spec.mean), tuple(spec.std), spec.resize, spec.pad_value, spec.pixel_source)


def cam_to_image(
    cam: np.ndarray, geometry: LetterboxGeometry, out_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """A [h, w] map over the model canvas -> float32 [rows, cols] over the original image.

    The padding is cropped away and the image's part stretched back to ``out_shape`` (default:
    the original size; pass a smaller shape of the same aspect for display) in one bilinear
    resample, so the map stays registered with the pixels it describes.
    """
    rows, cols = out_shape or (geometry.rows, geometry.cols)
    box = geometry.canvas_box(*cam.shape)
    image = Image.fromarray(np.ascontiguousarray(cam, dtype=np.float32))  # mode "F"
    return np.asarray(image.resize((int(cols), int(rows)), Image.BILINEAR, box=box), dtype=np.float32)


def display_shape(rows: int, cols: int, max_side: int = 1024) -> tuple[int, int]:
    """A shape of the same aspect no larger than ``max_side`` (for overlays of huge images)."""
    scale = min(1.0, max_side / max(rows, cols))
    return max(1, round(rows * scale)), max(1, round(cols * scale))
