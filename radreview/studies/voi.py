"""VOI LUT: window center/width (LINEAR, LINEAR_EXACT, SIGMOID) and VOI LUT tables.

Formulas from DICOM PS3.3 C.11.2.1.2 (Window Center and Window Width) and C.11.2.1.3
(VOI LUT Function). Output is scaled to ``[0, out_max]`` as floats; rounding to display
levels happens in :mod:`radreview.studies.display`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]
VOI_FUNCTIONS: tuple[str, ...] = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True, eq=False)
class VoiLutTable:
    """One item of the VOI LUT Sequence (0028,3010): LUT Descriptor and LUT Data."""

    first_mapped: int  # the input value mapped to data[0]
    bits: int  # bits per LUT entry (output range 0 .. 2**bits - 1)
    data: np.ndarray = field(repr=False)  # the LUT Data, one output value per input step

    def apply(self, values: np.ndarray, out_max: float = 255.0) -> np.ndarray:
        """Map input values through the table: below the first entry -> data[0], above -> data[-1]."""
        index = np.clip(np.rint(values).astype(np.int64) - self.first_mapped, 0, len(self.data) - 1)
        top = float(2**self.bits - 1)
        # Some writers declare 16 bits but only use 8, or the reverse; scale by the declared
        # range unless the data exceeds it (then by the data's own maximum).
        top = max(top, float(self.data.max())) if len(self.data) else top
        return self.data[index].astype(np.float64) * (out_max / top)


@dataclass(frozen=True)
class Window:
    """A VOI preset: center/width with a VOI LUT Function, or a VOI LUT table.

    For a table, ``center``/``width`` describe the input range it covers, so that a viewer can
    start dragging from it; ``lut`` holds the table itself.
    """

    center: float
    width: float
    function: VoiFunction = "LINEAR"
    name: str = ""
    lut: VoiLutTable | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        if self.lut is not None:
            return self.name or "VOI LUT"
        text = f"C {self.center:g} / W {self.width:g}"
        return f"{self.name} ({text})" if self.name else text

    def with_center_width(self, center: float, width: float) -> Window:
        """The same function at another center/width (a table becomes LINEAR: dragging leaves it)."""
        function = self.function if self.lut is None else "LINEAR"
        return Window(center, max(width, minimum_width(function)), function, "")


def minimum_width(function: str) -> float:
    # LINEAR needs width >= 1 (its formula divides by width - 1); the others width > 0.
    return 1.0 if function == "LINEAR" else 1e-6


def apply_window(values: np.ndarray, window: Window, out_max: float = 255.0) -> np.ndarray:
    """Apply a VOI preset to Modality-LUT output values; returns floats in ``[0, out_max]``."""
    if window.lut is not None:
        return window.lut.apply(values, out_max)
    x = np.asarray(values, dtype=np.float64)
    c, w = float(window.center), float(window.width)
    if window.function == "SIGMOID":
        # C.11.2.1.3.1: y = ymax / (1 + exp(-4 (x - c) / w))
        return out_max / (1.0 + np.exp(-4.0 * (x - c) / max(w, minimum_width("SIGMOID"))))
    if window.function == "LINEAR_EXACT":
        # C.11.2.1.3.2: x <= c - w/2 -> ymin; x > c + w/2 -> ymax; else ((x - c) / w + 0.5) * ymax
        w = max(w, minimum_width("LINEAR_EXACT"))
        y = ((x - c) / w + 0.5) * out_max
        return np.clip(y, 0.0, out_max)
    # LINEAR, C.11.2.1.2.1: x <= c - 0.5 - (w-1)/2 -> ymin; x > c - 0.5 + (w-1)/2 -> ymax;
    # else ((x - (c - 0.5)) / (w - 1) + 0.5) * ymax. With w == 1 it is a threshold at c - 0.5.
    w = max(w, 1.0)
    if w == 1.0:
        return np.where(x > c - 0.5, out_max, 0.0)
    y = ((x - (c - 0.5)) / (w - 1.0) + 0.5) * out_max
    return np.clip(y, 0.0, out_max)


def window_from_range(low: float, high: float, name: str) -> Window:
    """A LINEAR window mapping ``low`` exactly to black and ``high`` exactly to white.

    With LINEAR, center ``(low + high + 1) / 2`` and width ``high - low + 1`` give
    ``y = (x - low) / (high - low) * ymax``: for 8-bit data 0..255 that is the identity.
    """
    if high <= low:
        high = low + 1.0
    return Window(center=(low + high + 1.0) / 2.0, width=high - low + 1.0, function="LINEAR", name=name)
