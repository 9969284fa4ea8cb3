"""Decode every image once into a letterboxed uint8 array, kept in memory and on disk.

Decoding 1024-px JPEGs and DICOMs dominates a CPU epoch; the letterboxed 8-bit pixels are all
training needs (augmentation happens after). The cache file is keyed by the image size and the
files' sha256, so a changed dataset never reuses stale pixels. Unreadable images are reported
with their file name and left out.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from radreview.training.datasets import Sample
from radreview.training.images import ImageReadError, read_display_gray
from radreview.training.letterbox import letterbox

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The user cancelled long work."""


def _cache_key(samples: list[Sample], height: int, width: int) -> str:
    digest = hashlib.sha256(f"{height}x{width}".encode())
    for sample in samples:
        digest.update((sample.sha256 or str(sample.path)).encode())
    return digest.hexdigest()[:16]


def letterboxed_uint8(path: Path, height: int, width: int) -> np.ndarray:
    """The displayed image, letterboxed, as uint8 [H, W] (quantised exactly as the viewer's bytes)."""
    boxed = letterbox(read_display_gray(path), height, width)
    return np.clip(np.rint(boxed * 255.0), 0, 255).astype(np.uint8)


def load_letterboxed(
    samples: list[Sample],
    height: int,
    width: int,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, list[Sample], list[str]]:
    """(uint8 [N, H, W], the samples that loaded, problems) for ``samples``."""
    cache_file = cache_dir / f"pixels_{_cache_key(samples, height, width)}.npz" if cache_dir else None
    if cache_file and cache_file.is_file():
        stored = np.load(cache_file)
        kept_index = stored["kept"]
        return stored["pixels"], [samples[i] for i in kept_index], [str(p) for p in stored["problems"]]
    pixels = np.zeros((len(samples), height, width), dtype=np.uint8)
    kept: list[int] = []
    problems: list[str] = []
    for index, sample in enumerate(samples):
        if is_cancelled and is_cancelled():
            raise Cancelled("cancelled while reading images")
        try:
            pixels[len(kept)] = letterboxed_uint8(sample.path, height, width)
            kept.append(index)
        except ImageReadError as exc:
            problems.append(str(exc))
            log.warning("skipped %s", exc)
        if progress:
            progress(index + 1, len(samples))
    pixels = pixels[: len(kept)]
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, pixels=pixels, kept=np.asarray(kept, dtype=np.int64), problems=np.asarray(problems, dtype=str))
    return pixels, [samples[i] for i in kept], problems
