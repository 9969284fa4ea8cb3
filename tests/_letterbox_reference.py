"""An independent copy of the letterbox that training and inference share, as a reference for tests:
PIL bilinear resize of the uint8 image keeping the aspect ratio, then /255, centred in a
``height x width`` canvas filled with ``pad_value``."""

from __future__ import annotations

import numpy as np
from PIL import Image


def _letterbox_copy(gray_uint8: np.ndarray, height: int, width: int, pad_value: float = 0.0) -> np.ndarray:
    """float32 [height, width] in 0..1: aspect-preserving bilinear resize, centred, padded."""
    if gray_uint8.ndim != 2:
        raise ValueError(f"letterbox expects a 2-D grey image, got shape {gray_uint8.shape}")
    rows, cols = gray_uint8.shape
    scale = min(height / rows, width / cols)
    new_rows = max(1, min(height, round(rows * scale)))
    new_cols = max(1, min(width, round(cols * scale)))
    resized = Image.fromarray(np.ascontiguousarray(gray_uint8, dtype=np.uint8)).resize(
        (new_cols, new_rows), Image.BILINEAR
    )
    canvas = np.full((height, width), pad_value, dtype=np.float32)
    top = (height - new_rows) // 2
    left = (width - new_cols) // 2
    canvas[top : top + new_rows, left : left + new_cols] = np.asarray(resized, dtype=np.float32) / 255.0
    return canvas
