"""Plain, strict-JSON values for the results' ``to_dict()``.

numpy arrays become lists and numpy scalars Python numbers; NaN (undefined, e.g. a PPV with
no positive calls) becomes ``None``; infinities (a threshold that calls nothing positive, the
df of a normal reference distribution) become the strings ``"inf"`` / ``"-inf"``, so that
``json.dumps(result.to_dict(), allow_nan=False)`` always works.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


class DictMixin:
    """``to_dict()`` over a dataclass's fields, with :func:`json_safe` values."""

    def to_dict(self) -> dict:
        return {f.name: json_safe(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
