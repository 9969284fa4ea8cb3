"""Class-activation maps for display: an absolute logit scale, gated by the operating point.

The exported ``cam`` is in logit units without the bias (``logit = mean(cam) + bias`` for a
global-average-pool + linear head). Adding the bias back gives a *local logit*: the evidence for
the label at that place on the same scale as the image-level logit. Displaying it on one fixed
scale shared by all images, starting at the label's operating point, is honest: a normal study
stays dark. Per-image stretching (``minmax``) is available as an explicit option, and it too
starts at the gate: it stretches only the evidence above the operating point up to the image's
strongest, and shows nothing on an image whose probability is below the gate.

A local logit ``z`` reads as a probability ``sigmoid(z)`` on the label's calibrated scale, so the
colour bar's ends are probabilities (:func:`radreview.inference.presentation.present_heatmap`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

COLOR_MAPS = ("jet", "inferno", "turbo", "viridis", "hot")
# Local logits from the gate to gate + span fill the colour bar. The shipped EfficientNet-Lite0
# (8x8 maps) gives local logits up to about +50 on fractures and below +7 on normal images, so
# 24 keeps strong evidence distinguishable without saturating every positive study.
DEFAULT_SPAN_LOGITS = 24.0
# The overlay's opacity unless the user sets one: the viewer, the reading window, heatmap files
# and DICOM captures alike.
DEFAULT_OPACITY = 0.45


GATES = ("likely", "possible", "0.5")


def gate_probability(label, gate: str = "likely") -> float:
    """The probability that gates a label's map: its "likely" (high-specificity, the default:
    a normal study stays dark) or "possible" (high-sensitivity) operating point, or 0.5.

    A label whose operating points are unreliable (``tier_note`` set: too few validation cases)
    is gated at 0.5: a cut-off that is not trusted for a tier is not trusted for a heatmap either
    (the shipped hardware label's "likely" was p = 0.0034)."""
    if getattr(label, "tier_note", ""):
        return 0.5
    if gate == "likely" and getattr(label, "likely", None) is not None:
        return label.likely
    if gate == "possible" and getattr(label, "possible", None) is not None:
        return label.possible
    return 0.5


def logit(probability: float) -> float:
    p = min(max(float(probability), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def local_logits(cam: np.ndarray, image_logits: np.ndarray) -> np.ndarray:
    """cam [N, K, h, w] (no bias) + image logits [N, K] -> local logits [N, K, h, w]."""
    bias = image_logits - cam.mean(axis=(2, 3))
    return cam + bias[:, :, None, None]


@dataclass(frozen=True)
class CamDisplay:
    """How a local-logit map becomes 0..1 intensities for the overlay.

    ``gate``: the probability threshold below which nothing is shown (default: the threshold
    passed to :meth:`intensity`, or 0.5). ``image_gate``: also hide the whole map when the
    image-level probability is below the gate. Both modes start the colour scale at the gate:
    ``absolute`` spans ``span_logits`` above it, the same for every image; ``minmax`` spans up to
    ``top`` (the image's strongest local logit when not given).
    """

    mode: Literal["absolute", "minmax"] = "absolute"
    span_logits: float = DEFAULT_SPAN_LOGITS
    gate: float | None = None
    image_gate: bool = True
    top: float | None = None  # minmax: the local logit at the top of the scale

    def gate_for(self, threshold: float | None = None) -> float:
        return self.gate if self.gate is not None else (threshold if threshold is not None else 0.5)

    def intensity(self, local: np.ndarray, probability: float, threshold: float | None = None) -> np.ndarray:
        """float32 0..1 of the same shape as ``local`` (0 = transparent)."""
        local = np.asarray(local, dtype=np.float32)
        gate = self.gate_for(threshold)
        if self.image_gate and probability < gate:
            return np.zeros_like(local)
        low, high = self.scale_logits(local, threshold)
        if high <= low:
            return np.zeros_like(local)
        return np.clip((local - low) / (high - low), 0.0, 1.0)

    def scale_logits(self, local: np.ndarray | None = None, threshold: float | None = None) -> tuple[float, float]:
        """The local logits at the bottom and the top of the colour bar."""
        low = logit(self.gate_for(threshold))
        if self.mode == "minmax":
            top = self.top if self.top is not None else (float(np.max(local)) if local is not None and local.size
                                                         else low)
            return low, top
        return low, low + self.span_logits

    def scale_probabilities(self, local: np.ndarray | None = None, threshold: float | None = None) -> tuple[float, float]:
        """The probabilities (sigmoid of the local logit) at the bottom and top of the colour bar."""
        return self.gate_for(threshold), sigmoid(self.scale_logits(local, threshold)[1])

    def scale_labels(self, threshold: float | None = None, local: np.ndarray | None = None) -> tuple[str, str]:
        """The colour bar's end labels, in probability (see :mod:`radreview.inference.presentation`)."""
        from radreview.inference.presentation import scale_texts  # lazy: presentation imports the engine

        return scale_texts(self, threshold, local)


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """uint8 [256, 3] lookup table of a matplotlib colour map."""
    from matplotlib import colormaps  # lazy: only overlays need it

    if name not in colormaps:
        raise ValueError(f"unknown colour map {name!r}; choose one of {', '.join(COLOR_MAPS)}")
    table = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    lut = np.rint(table * 255).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def rgba_lut(colormap: str = "jet", opacity: float = 1.0) -> np.ndarray:
    """uint8 [256, 4]: the colour map, alpha ramping up over the first third of the scale
    (so the gate edge is soft, not a cut-out) times ``opacity``; index 0 is transparent."""
    lut = np.empty((256, 4), np.uint8)
    lut[:, :3] = colormap_lut(colormap)
    ramp = np.clip(np.linspace(0.0, 3.0, 256), 0.0, 1.0) * (255.0 * float(np.clip(opacity, 0.0, 1.0)))
    lut[:, 3] = ramp.astype(np.uint8)
    lut[0, 3] = 0
    return lut


def overlay_rgba(intensity: np.ndarray, colormap: str = "jet", opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """uint8 [H, W, 4]: coloured where intensity > 0, transparent elsewhere (one table lookup)."""
    index = np.clip(np.rint(intensity * 255), 0, 255).astype(np.uint8)
    packed = np.ascontiguousarray(rgba_lut(colormap, opacity)).view(np.uint32)[:, 0]
    return np.take(packed, index).view(np.uint8).reshape(*intensity.shape, 4)


def blend(gray: np.ndarray, intensity: np.ndarray, colormap: str = "jet", opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """uint8 RGB [H, W, 3]: the grey image with the heatmap laid over it (for PNG export)."""
    from PIL import Image

    base = Image.fromarray(np.ascontiguousarray(gray)).convert("RGBA")
    layer = Image.fromarray(overlay_rgba(intensity, colormap, opacity))  # RGBA
    return np.asarray(Image.alpha_composite(base, layer).convert("RGB"))
