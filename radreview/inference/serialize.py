"""Engine results as plain data and back: :class:`LabelResult`, :class:`ImageResult` <-> dict.

``radreview predict`` writes these dicts into its JSON (``image_results``) and a reader study
stores them per case, so that the reading window rebuilds exactly the :class:`ImageResult` the
viewer would have had and shows it through the same presentation
(:func:`radreview.inference.presentation.present_image`) and heatmap code.

A heatmap (``cam``) is the label's calibrated local-logit map over the model canvas, stored as the
card stores its scope statistics: ``{"shape": [h, w], "dtype": "float32-le", "base64": ...}``
(exact, and a tenth of the size of decimals in an indented JSON file; ``numpy.frombuffer(
base64.b64decode(s), "<f4").reshape(shape)`` reads it back). Nested lists of numbers are accepted
too. ``geometry`` says where the image lay in the canvas. Everything read back is
checked: a hand-edited or truncated file gives a :class:`ResultFormatError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from radreview.inference.engine import ImageResult, LabelResult
from radreview.inference.preprocess import LetterboxGeometry
from radreview.inference.scope import ScopeVerdict

IMAGE_RESULT_FORMAT = "radreview.image_result/1"
TIERS = ("likely", "possible", "below", "out_of_scope", "")
SCOPE_STATUSES = ("in_scope", "out_of_scope", "no_check")
CAM_UNITS = ("logit", "relative")
GEOMETRY_FIELDS = ("rows", "cols", "height", "width", "top", "left", "new_rows", "new_cols")
MAX_CAM_SIDE = 256  # in-graph CAMs are 1/32 of the input; anything larger is not a CAM


class ResultFormatError(ValueError):
    """A serialised result that cannot be used; the message names the field and the problem."""


# -- to plain data -----------------------------------------------------------------------------
CAM_DTYPE = "float32-le"


def cam_to_dict(cam: np.ndarray) -> dict[str, Any]:
    """A [h, w] map as little-endian float32 in base64 (exact)."""
    values = np.ascontiguousarray(cam, dtype="<f4")
    return {"shape": list(values.shape), "dtype": CAM_DTYPE, "base64": base64.b64encode(values.tobytes()).decode("ascii")}


def geometry_to_dict(geometry: LetterboxGeometry) -> dict[str, int]:
    return {name: int(getattr(geometry, name)) for name in GEOMETRY_FIELDS}


def scope_to_dict(verdict: ScopeVerdict) -> dict[str, Any]:
    return {"model": verdict.model, "status": verdict.status,
            "distance": _finite_or_none(verdict.distance), "threshold": _finite_or_none(verdict.threshold),
            "note": verdict.note}


def label_to_dict(label: LabelResult, with_cam: bool = True) -> dict[str, Any]:
    """One label's answer; ``with_cam=False`` leaves the map out (region labels in a study)."""
    return {
        "model": label.model, "version": label.version, "label": label.label,
        "display_name": label.display_name, "task": label.task,
        "probability": float(label.probability), "logit": float(label.logit), "tier": label.tier,
        "possible": label.possible, "likely": label.likely,
        "cam": cam_to_dict(label.cam) if with_cam and label.cam is not None else None,
        "geometry": geometry_to_dict(label.geometry) if label.geometry is not None else None,
        "cam_units": label.cam_units, "in_scope": label.in_scope, "tier_in_scope": label.tier_in_scope,
        "tier_note": label.tier_note, "raw_probability": label.raw_probability, "cam_span": label.cam_span,
    }


def image_to_dict(result: ImageResult, with_cam: bool = True) -> dict[str, Any]:
    return {
        "format": IMAGE_RESULT_FORMAT,
        "labels": [label_to_dict(r, with_cam) for r in result.labels],
        "regions": list(result.regions),
        "providers": list(result.providers),
        "scopes": {name: scope_to_dict(v) for name, v in result.scopes.items()},
    }


# -- back ----------------------------------------------------------------------------------------
def image_from_dict(raw: Any, where: str = "image result") -> ImageResult:
    if not isinstance(raw, dict):
        raise ResultFormatError(f"{where}: expected an object, got {type(raw).__name__}")
    fmt = raw.get("format", IMAGE_RESULT_FORMAT)
    if fmt != IMAGE_RESULT_FORMAT:
        raise ResultFormatError(f"{where}: format {fmt!r} is not {IMAGE_RESULT_FORMAT!r}")
    labels = raw.get("labels")
    if not isinstance(labels, list):
        raise ResultFormatError(f"{where}: 'labels' must be a list")
    scopes = raw.get("scopes", {})
    if not isinstance(scopes, dict):
        raise ResultFormatError(f"{where}: 'scopes' must be an object")
    return ImageResult(
        labels=[label_from_dict(item, f"{where}, label {i + 1}") for i, item in enumerate(labels)],
        regions=tuple(_strings(raw.get("regions", []), f"{where}: 'regions'")),
        providers=tuple(_strings(raw.get("providers", []), f"{where}: 'providers'")),
        scopes={str(name): scope_from_dict(v, f"{where}, scope {name!r}") for name, v in scopes.items()},
    )


def label_from_dict(raw: Any, where: str = "label") -> LabelResult:
    if not isinstance(raw, dict):
        raise ResultFormatError(f"{where}: expected an object, got {type(raw).__name__}")
    probability = _number(raw, "probability", where)
    if not 0.0 <= probability <= 1.0:
        raise ResultFormatError(f"{where}: probability {probability} is not between 0 and 1")
    tier = _text(raw, "tier", where)
    if tier not in TIERS:
        raise ResultFormatError(f"{where}: tier {tier!r} is not one of {', '.join(repr(t) for t in TIERS)}")
    units = _text(raw, "cam_units", where, "logit")
    if units not in CAM_UNITS:
        raise ResultFormatError(f"{where}: cam_units {units!r} is not one of {', '.join(CAM_UNITS)}")
    in_scope = raw.get("in_scope")
    if in_scope is not None and not isinstance(in_scope, bool):
        raise ResultFormatError(f"{where}: in_scope must be true, false or null")
    return LabelResult(
        model=_text(raw, "model", where), version=_text(raw, "version", where, ""),
        label=_text(raw, "label", where), display_name=_text(raw, "display_name", where, "") or _text(raw, "label", where),
        task=_text(raw, "task", where), probability=probability,
        logit=_number(raw, "logit", where, default=_logit(probability)), tier=tier,
        possible=_optional_number(raw, "possible", where), likely=_optional_number(raw, "likely", where),
        cam=_cam(raw.get("cam"), f"{where}: cam"), geometry=_geometry(raw.get("geometry"), f"{where}: geometry"),
        cam_units=units, in_scope=in_scope, tier_in_scope=_text(raw, "tier_in_scope", where, ""),
        tier_note=_text(raw, "tier_note", where, ""),
        raw_probability=_optional_number(raw, "raw_probability", where),
        cam_span=_optional_number(raw, "cam_span", where),
    )


def scope_from_dict(raw: Any, where: str = "scope") -> ScopeVerdict:
    if not isinstance(raw, dict):
        raise ResultFormatError(f"{where}: expected an object")
    status = _text(raw, "status", where)
    if status not in SCOPE_STATUSES:
        raise ResultFormatError(f"{where}: status {status!r} is not one of {', '.join(SCOPE_STATUSES)}")
    return ScopeVerdict(_text(raw, "model", where), status, _optional_number(raw, "distance", where),  # type: ignore[arg-type]
                        _optional_number(raw, "threshold", where), _text(raw, "note", where, ""))


# -- checks --------------------------------------------------------------------------------------
def _finite_or_none(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def _text(raw: dict, key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ResultFormatError(f"{where}: '{key}' must be text" + ("" if key in raw else " (missing)"))
    return value


def _number(raw: dict, key: str, where: str, default: float | None = None) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultFormatError(f"{where}: '{key}' must be a number" + ("" if key in raw else " (missing)"))
    if not math.isfinite(value):
        raise ResultFormatError(f"{where}: '{key}' is not finite")
    return float(value)


def _optional_number(raw: dict, key: str, where: str) -> float | None:
    return None if raw.get(key) is None else _number(raw, key, where)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResultFormatError(f"{where} must be a list of text")
    return value


def _cam(value: Any, where: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return _cam_from_base64(value, where)
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise ResultFormatError(f"{where} must be a non-empty list of rows")
    widths = {len(row) for row in value}
    if len(widths) != 1 or 0 in widths:
        raise ResultFormatError(f"{where}: rows of different or zero length")
    if len(value) > MAX_CAM_SIDE or max(widths) > MAX_CAM_SIDE:
        raise ResultFormatError(f"{where}: {len(value)}x{widths.pop()} is larger than a CAM can be")
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ResultFormatError(f"{where}: not numbers ({exc})") from None
    if not np.all(np.isfinite(array)):
        raise ResultFormatError(f"{where}: values that are not finite")
    return array


def _cam_from_base64(value: dict, where: str) -> np.ndarray:
    shape, dtype, data = value.get("shape"), value.get("dtype"), value.get("base64")
    if dtype != CAM_DTYPE:
        raise ResultFormatError(f"{where}: dtype {dtype!r} is not {CAM_DTYPE!r}")
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_CAM_SIDE for n in shape)):
        raise ResultFormatError(f"{where}: shape must be [rows, cols] of whole numbers from 1 to {MAX_CAM_SIDE}")
    if not isinstance(data, str):
        raise ResultFormatError(f"{where}: 'base64' must be text")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ResultFormatError(f"{where}: not base64 ({exc})") from None
    if len(raw) != 4 * shape[0] * shape[1]:
        raise ResultFormatError(f"{where}: {len(raw)} bytes, a {shape[0]}x{shape[1]} float32 map has {4 * shape[0] * shape[1]}")
    array = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ResultFormatError(f"{where}: values that are not finite")
    return array


def _geometry(value: Any, where: str) -> LetterboxGeometry | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ResultFormatError(f"{where} must be an object")
    numbers = {}
    for name in GEOMETRY_FIELDS:
        item = value.get(name)
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ResultFormatError(f"{where}: '{name}' must be a whole number >= 0")
        numbers[name] = item
    geometry = LetterboxGeometry(**numbers)
    if (min(geometry.rows, geometry.cols, geometry.height, geometry.width, geometry.new_rows, geometry.new_cols) < 1
            or geometry.top + geometry.new_rows > geometry.height or geometry.left + geometry.new_cols > geometry.width):
        raise ResultFormatError(f"{where}: the image does not lie inside the model canvas")
    return geometry
