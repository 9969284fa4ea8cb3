"""Bone and soft-tissue presets for radiographs, derived from the image's own values.

Radiographs have no Hounsfield scale, so fixed CT-style presets mean nothing: the values
depend on the detector, the exposure and the vendor's processing. Instead:

1. Take the Modality-LUT values (a subsample) and orient them by attenuation, so that high
   means dense (bone) whatever the photometric interpretation (MONOCHROME1 stores bone low).
2. Split air/background from the body with Otsu's threshold.
   Collimator shadows, labels and saturated areas (the densest 2% of the value range) are
   left out first: they are not bone.
3. Bone: from the air/body threshold to the body's 99.5th percentile — air goes black and
   the whole grey range is spent on the body, most of it on bone.
   Soft tissue: from the 1st percentile of everything (air, so the skin line shows) to the
   body's 55th percentile — fat pads and swelling get the grey range, bone saturates.
"""

from __future__ import annotations

import numpy as np

from radreview.studies.pixels import DecodedImage
from radreview.studies.voi import Window, window_from_range

SAMPLE_TARGET = 250_000
BONE = (0.0, 99.5)  # percentiles of the body
SOFT_TISSUE_HIGH = 55.0  # percentile of the body; the low end is the 1st percentile of all


def bone_window(image: DecodedImage) -> Window:
    """A window for bone detail (see the module docstring)."""
    return _preset(image, "Bone", body_low=BONE[0], body_high=BONE[1], use_air_low=False)


def soft_tissue_window(image: DecodedImage) -> Window:
    """A window for soft tissue (see the module docstring)."""
    return _preset(image, "Soft tissue", body_low=0.0, body_high=SOFT_TISSUE_HIGH, use_air_low=True)


def _preset(image: DecodedImage, name: str, body_low: float, body_high: float, use_air_low: bool) -> Window:
    if image.is_color:
        return image.windows[0]
    values = _sample(image.pixels)
    if values.size < 2 or values.min() == values.max():
        return image.windows[0]
    sign = -1.0 if image.inverted_by_file else 1.0
    attenuation = values * sign
    # Collimator shadows, burned-in labels and saturated detector areas sit at the dense end
    # of the range; they are not bone, so the top 2% of the value range is left out.
    top = attenuation.max() - 0.02 * (attenuation.max() - attenuation.min())
    kept = attenuation[attenuation < top]
    attenuation = kept if kept.size >= 16 else attenuation
    body = attenuation[attenuation > otsu_threshold(attenuation)]
    if body.size < 16:
        body = attenuation
    low = np.percentile(attenuation, 1.0) if use_air_low else np.percentile(body, body_low)
    high = np.percentile(body, body_high)
    low, high = sorted((float(low) * sign, float(high) * sign))
    return window_from_range(low, high, name)


def _sample(pixels: np.ndarray) -> np.ndarray:
    step = max(1, int(np.sqrt(pixels.size / SAMPLE_TARGET)))
    return np.asarray(pixels[::step, ::step], dtype=np.float64).ravel()


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (maximum between-class variance) over a histogram of ``values``."""
    counts, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2.0
    weights = counts.astype(np.float64)
    w0 = np.cumsum(weights)
    w1 = w0[-1] - w0
    m0 = np.cumsum(weights * centers)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean0 = m0 / w0
        mean1 = (m0[-1] - m0) / w1
        between = w0 * w1 * (mean0 - mean1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    return float(centers[int(np.argmax(between))])
