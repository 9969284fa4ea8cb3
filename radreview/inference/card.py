"""The model card: what a radreview ``.onnx`` file says about itself.

A radreview model is one ONNX file with
- input ``image``: float32 [N, 3, H, W], already normalised as ``card.input`` says;
- output ``logits``: float32 [N, K], one column per label in ``card.labels`` (``label.index``);
- output ``cam``: float32 [N, K, h, w], class-activation maps in logit units, computed inside the
  graph from the last feature map and the classifier weights (exact CAM for a global-average-
  pool + linear head: ``logit_k = mean(cam_k) + bias_k``).
The card is JSON in the model's metadata under the key :data:`CARD_METADATA_KEY`.

Several tasks may share one backbone: each label names its ``task`` (``region``, ``fracture``,
``hardware``, ``abnormality``, ``dislocation``...), so one forward pass answers all of them.

Optional parts, each checked when the card is read:
- ``scope``: the statistics of the scope check (:mod:`radreview.inference.scope`) over a graph
  output ``features`` [N, D], or (``all-of``) several checks over outputs such as ``features``
  and ``lower_features``. Unusable statistics do not make the model unusable: the card is
  read without them and says why in :attr:`ModelCard.notes` ("no scope check").
- per label ``calibration``: p = sigmoid(scale * logit + offset), fitted on the validation split;
  the operating points are thresholds on these calibrated probabilities, and ``basis`` says how
  many validation positives and negatives they rest on.
- ``precision``: "float32" or "int8" (a quantised graph); an int8 card's ``quantization`` records
  how it was made: the float32 model's weights sha256, the calibration set (split, count) and the
  parity figures against float32 on the validation split (:mod:`radreview.training.quantize`).

This module is pure Python (json, hashlib); ``onnx`` is imported lazily only to read or write
files, so that the card can be built and validated anywhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from radreview.inference.scope import ScopeError, ScopeSet
from radreview.limits import hint, limits

CARD_METADATA_KEY = "radreview.model_card"
CARD_SCHEMA = "radreview.model_card/1"
INTENDED_USE = "Research use only, not for clinical diagnosis."

Activation = Literal["sigmoid", "softmax"]
TASKS = ("region", "fracture", "hardware", "abnormality", "dislocation")


class ModelCardError(ValueError):
    """A model file's card is missing or malformed; the message names the file and the field."""


# Fewer validation positives (or negatives) than this and a label's operating points are too
# unstable to label an image "likely" or "possible": a threshold set on 8 positives moves by a
# whole tier when one of them changes. Such labels show their probability but no tier.
MIN_OPERATING_POINT_CASES = 20


@dataclass(frozen=True)
class OperatingPoints:
    """Probability thresholds of one label.

    ``possible`` is a high-sensitivity threshold, ``likely`` a high-specificity one
    (``possible <= likely``). ``youden`` is kept for reference when known. ``basis`` records the
    data they were chosen on (``split``, ``n_pos``, ``n_neg``, and ``method`` when they are not
    plain validation-split thresholds).
    """

    possible: float
    likely: float
    youden: float | None = None
    basis: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def reliable(self) -> bool:
        """False when the basis is known and has too few positives or negatives."""
        n_pos, n_neg = self.basis.get("n_pos"), self.basis.get("n_neg")
        if isinstance(n_pos, int) and n_pos < MIN_OPERATING_POINT_CASES:
            return False
        return not (isinstance(n_neg, int) and n_neg < MIN_OPERATING_POINT_CASES)

    @property
    def unreliable_reason(self) -> str:
        if self.reliable:
            return ""
        return (f"operating points rest on only {self.basis.get('n_pos')} positive and "
                f"{self.basis.get('n_neg')} negative {self.basis.get('split', 'validation')} images")

    def tier(self, probability: float) -> str:
        """'likely', 'possible' or 'below' for a probability."""
        if probability >= self.likely:
            return "likely"
        if probability >= self.possible:
            return "possible"
        return "below"


@dataclass(frozen=True)
class LabelCard:
    """One output column of ``logits`` (and one map of ``cam``)."""

    name: str  # e.g. "fractured", "hand", "hardware"
    task: str  # e.g. "fracture", "region"
    index: int  # column in logits / channel in cam
    activation: Activation = "sigmoid"  # softmax is taken over the labels of the same task
    operating_points: OperatingPoints | None = None
    display_name: str = ""
    # For the chain: this label is shown only when the region model found one of these
    # regions (empty: applies to every region).
    applies_to_regions: tuple[str, ...] = ()
    calibration: Calibration | None = None


@dataclass(frozen=True)
class Calibration:
    """Calibrated probability = sigmoid(scale * logit + offset) (softmax tasks: offset 0)."""

    method: str  # "temperature" | "platt"
    scale: float
    offset: float = 0.0
    fitted_on: str = ""  # e.g. "validation split, 319 images (8 positive)"

    def apply(self, logits):
        return self.scale * logits + self.offset


@dataclass(frozen=True)
class InputCard:
    """How displayed pixels become the ``image`` tensor."""

    height: int
    width: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # "letterbox": aspect-preserving resize, padded with ``pad_value`` (on the 0..1 scale)
    resize: Literal["letterbox", "stretch"] = "letterbox"
    pad_value: float = 0.0
    # The source pixels are the viewer's displayed 8-bit image (default window, bone white),
    # scaled to 0..1 and repeated over 3 channels.
    pixel_source: Literal["display_uint8"] = "display_uint8"


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    labels: tuple[LabelCard, ...]
    input: InputCard
    architecture: str = ""
    description: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)  # source, licence, attribution, counts
    validation: dict[str, Any] = field(default_factory=dict)  # per label: auc, ci, n, split
    training_run: dict[str, Any] = field(default_factory=dict)  # command, seed, hardware, duration
    licence: str = ""
    intended_use: str = INTENDED_USE
    weights_sha256: str = ""
    created: str = ""
    precision: str = "float32"  # "float32" | "int8"
    quantization: dict[str, Any] = field(default_factory=dict)  # int8: source sha256, calibration set, parity
    scope: dict[str, Any] = field(default_factory=dict)  # radreview.inference.scope statistics, or {}
    cam: dict[str, Any] = field(default_factory=dict)  # display defaults, e.g. {"span_logits": 12.0}
    schema: str = CARD_SCHEMA
    # Problems found while reading the card that leave the model usable (not serialised).
    notes: tuple[str, ...] = field(default=(), compare=False, repr=False)

    # -- the scope check -----------------------------------------------------------------------
    @cached_property
    def scope_check(self) -> ScopeSet | None:
        """The parsed scope check, or None (no statistics, or unusable ones: see :attr:`scope_note`)."""
        return _parse_scope(self.scope)[0]

    @property
    def scope_note(self) -> str:
        """Why there is no scope check ("" when there is one)."""
        return _parse_scope(self.scope)[1] if self.scope_check is None else ""

    # -- queries -------------------------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(label.task for label in self.labels))

    def labels_of(self, task: str) -> tuple[LabelCard, ...]:
        return tuple(label for label in self.labels if label.task == task)

    # -- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        raw = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "notes"}
        return json.loads(json.dumps(raw, default=_jsonable))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> ModelCard:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"{source}: the model card is not valid JSON ({exc})") from exc
        return cls.from_dict(raw, source)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "model card") -> ModelCard:
        """Build and validate a card from parsed JSON; every field's type is checked (a string where
        a list belongs is refused with the field's name, never an AttributeError)."""
        if not isinstance(raw, dict):
            raise ModelCardError(f"{source}: the model card is not a JSON object")
        schema = raw.get("schema", "")
        if schema != CARD_SCHEMA:
            raise ModelCardError(f"{source}: unknown model card schema {_preview(schema)} (expected {CARD_SCHEMA})")
        field_of = _FieldReader(source)
        try:
            raw_input = field_of(raw, "input", "object")
            input_card = InputCard(
                height=field_of(raw_input, "height", "int", "input."),
                width=field_of(raw_input, "width", "int", "input."),
                mean=tuple(field_of.numbers(raw_input, "mean", 3, "input.", InputCard.mean)),  # type: ignore[arg-type]
                std=tuple(field_of.numbers(raw_input, "std", 3, "input.", InputCard.std)),  # type: ignore[arg-type]
                resize=field_of(raw_input, "resize", "str", "input.", "letterbox"),
                pad_value=float(field_of(raw_input, "pad_value", "number", "input.", 0.0)),
                pixel_source=field_of(raw_input, "pixel_source", "str", "input.", "display_uint8"),
            )
            labels = []
            for i, raw_label in enumerate(field_of(raw, "labels", "list")):
                where = f"labels[{i}]."
                if not isinstance(raw_label, dict):
                    raise ModelCardError(f"{source}: 'labels[{i}]' must be an object, got {_kind(raw_label)}")
                ops = field_of(raw_label, "operating_points", "object", where, None)
                calibration = field_of(raw_label, "calibration", "object", where, None)
                regions = field_of(raw_label, "applies_to_regions", "list", where, [])
                if not all(isinstance(r, str) for r in regions):
                    raise ModelCardError(f"{source}: '{where}applies_to_regions' must be a list of strings")
                labels.append(
                    LabelCard(
                        name=field_of(raw_label, "name", "str", where),
                        task=field_of(raw_label, "task", "str", where),
                        index=field_of(raw_label, "index", "int", where),
                        activation=field_of(raw_label, "activation", "str", where, "sigmoid"),
                        operating_points=_operating_points(ops, field_of, where) if ops else None,
                        display_name=field_of(raw_label, "display_name", "str", where, ""),
                        applies_to_regions=tuple(regions),
                        calibration=_calibration(calibration, f"labels[{i}]") if calibration else None,
                    )
                )
            optional = {k: field_of(raw, k, _OPTIONAL_FIELDS[k], "") for k in _OPTIONAL_FIELDS if k in raw}
            card = cls(
                name=field_of(raw, "name", "str"),
                version=field_of(raw, "version", "str"),
                labels=tuple(labels),
                input=input_card,
                **optional,
            )
            if card.scope and card.scope_check is None:
                card = replace(card, notes=(*card.notes, f"no scope check: {card.scope_note}"))
        except ModelCardError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelCardError(f"{source}: malformed model card ({exc})") from exc
        card.validate(source)
        return card

    def validate(self, source: str = "model card") -> None:
        """Raise :class:`ModelCardError` when the card contradicts itself or asks for the unsafe.

        Names (model, version, labels, tasks, regions) become file names and spreadsheet cells:
        they must match :data:`SAFE_NAME` and be at most ``max_name_length`` characters.
        Normalisation must be finite with std > 0, and the input size within ``max_model_input_pixels``.
        """
        check_name(self.name, "model name", source)
        check_name(self.version, "model version", source)
        if not self.labels:
            raise ModelCardError(f"{source}: the model card lists no labels")
        indices = sorted(label.index for label in self.labels)
        if indices != list(range(len(self.labels))):
            raise ModelCardError(f"{source}: label indices must be 0..K-1, got {indices}")
        seen: set[str] = set()
        for label in self.labels:
            check_name(label.name, "label name", source)
            check_name(label.task, f"task of label {label.name!r}", source)
            for region in label.applies_to_regions:
                check_name(region, f"region of label {label.name!r}", source)
            if label.name in seen:
                raise ModelCardError(f"{source}: label name {label.name!r} appears twice")
            seen.add(label.name)
            if len(label.display_name) > MAX_DISPLAY_NAME or any(ord(c) < 32 or ord(c) == 127 for c in label.display_name):
                raise ModelCardError(f"{source}: label {label.name!r} has a display name longer than "
                                     f"{MAX_DISPLAY_NAME} characters or with control characters")
            if label.activation not in ("sigmoid", "softmax"):
                raise ModelCardError(f"{source}: label {label.name!r} has activation {label.activation!r}")
            ops = label.operating_points
            if ops and not all(math.isfinite(v) for v in (ops.possible, ops.likely, ops.youden or 0.0)):
                raise ModelCardError(f"{source}: label {label.name!r} has operating points that are not finite numbers")
            if ops and not (0.0 <= ops.possible <= ops.likely <= 1.0):
                raise ModelCardError(f"{source}: label {label.name!r} has operating points out of order")
            cal = label.calibration
            if cal is not None:
                if not (math.isfinite(cal.scale) and cal.scale > 0 and math.isfinite(cal.offset)):
                    raise ModelCardError(f"{source}: label {label.name!r} has an unusable calibration "
                                         f"(scale {cal.scale}, offset {cal.offset}; scale must be > 0)")
                if label.activation == "softmax" and cal.offset != 0.0:
                    raise ModelCardError(f"{source}: softmax label {label.name!r} can only be temperature-scaled")
        for task in self.tasks:
            scales = {lab.calibration.scale if lab.calibration else 1.0
                      for lab in self.labels_of(task) if lab.activation == "softmax"}
            if len(scales) > 1:
                raise ModelCardError(f"{source}: the softmax labels of task {task!r} need one shared temperature")
        if self.precision not in PRECISIONS:
            raise ModelCardError(f"{source}: precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        self._validate_input(source)
        if "research" not in self.intended_use.lower():
            raise ModelCardError(f"{source}: intended use must state research use")

    def _validate_input(self, source: str) -> None:
        spec = self.input
        if spec.height < 8 or spec.width < 8:
            raise ModelCardError(f"{source}: input size {spec.height}x{spec.width} is too small")
        cap = limits().max_model_input_pixels
        if spec.height * spec.width > cap:
            raise ModelCardError(f"{source}: input size {spec.height}x{spec.width} is larger than radreview "
                                 f"allows ({hint('max_model_input_pixels')})")
        if len(spec.mean) != 3 or len(spec.std) != 3:
            raise ModelCardError(f"{source}: input mean and std need 3 values each (one per channel)")
        if not all(math.isfinite(v) for v in (*spec.mean, *spec.std, spec.pad_value)):
            raise ModelCardError(f"{source}: input normalisation is not finite (mean {list(spec.mean)}, "
                                 f"std {list(spec.std)}, pad {spec.pad_value}): every probability would be NaN")
        if not all(v > 0 for v in spec.std):
            raise ModelCardError(f"{source}: input std must be > 0 for every channel, got {list(spec.std)}")
        if not 0.0 <= spec.pad_value <= 1.0:
            raise ModelCardError(f"{source}: input pad_value must be between 0 and 1, got {spec.pad_value}")
        if spec.resize not in ("letterbox", "stretch"):
            raise ModelCardError(f"{source}: input resize {spec.resize!r} is not 'letterbox' or 'stretch'")
        if spec.pixel_source != "display_uint8":
            raise ModelCardError(f"{source}: input pixel_source {spec.pixel_source!r} is not 'display_uint8'")


# Names that become parts of file names (heatmaps) and cells of spreadsheets: ASCII letters and
# digits first and last, then letters, digits, space, '_', '.', '+', '-' (so never '/', '\',
# '..' alone, or a leading '=', '+', '-', '@' that a spreadsheet would run).
SAFE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _.+-]*[A-Za-z0-9_+-])?")
MAX_DISPLAY_NAME = 200


def check_name(value: str, what: str, source: str = "model card") -> str:
    """Refuse a name outside :data:`SAFE_NAME` or longer than ``max_name_length``."""
    cap = limits().max_name_length
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or ".." in value:
        raise ModelCardError(f"{source}: {what} {_preview(value)} is not allowed: names use letters, digits, "
                             "space, '_', '.', '+' and '-', and start and end with a letter or digit")
    if len(value) > cap:
        raise ModelCardError(f"{source}: {what} {_preview(value)} is longer than {cap} characters "
                             f"({hint('max_name_length')})")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _preview(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_REQUIRED = object()
_KINDS = {"str": "a string", "int": "a whole number", "number": "a number", "list": "a list", "object": "an object"}


class _FieldReader:
    """Typed access to the card's JSON: the wrong type is a :class:`ModelCardError` naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, mapping: Any, key: str, kind: str, where: str = "", default: Any = _REQUIRED) -> Any:
        if not isinstance(mapping, dict) or key not in mapping or (mapping[key] is None and default is not _REQUIRED):
            if default is _REQUIRED:
                raise ModelCardError(f"{self.source}: the model card has no '{where}{key}'")
            return default
        value = mapping[key]
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "list": isinstance(value, list),
            "object": isinstance(value, dict),
        }[kind]
        if not ok:
            raise ModelCardError(f"{self.source}: '{where}{key}' must be {_KINDS[kind]}, got {_kind(value)} "
                                 f"{_preview(value, 40)}")
        return value

    def numbers(self, mapping: Any, key: str, count: int, where: str, default: tuple[float, ...]) -> list[float]:
        values = self(mapping, key, "list", where, list(default))
        if len(values) != count or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ModelCardError(f"{self.source}: '{where}{key}' must be a list of {count} numbers, got {_preview(values, 40)}")
        return [float(v) for v in values]


PRECISIONS = ("float32", "int8")


def _operating_points(raw: Any, field_of: _FieldReader, where: str) -> OperatingPoints:
    where = f"{where}operating_points."
    basis = raw.get("basis", {})
    youden = field_of(raw, "youden", "number", where, None)
    return OperatingPoints(possible=float(field_of(raw, "possible", "number", where)),
                           likely=float(field_of(raw, "likely", "number", where)),
                           youden=None if youden is None else float(youden),
                           basis=dict(basis) if isinstance(basis, dict) else {})


def _calibration(raw: Any, where: str) -> Calibration:
    if not isinstance(raw, dict):
        raise TypeError(f"{where}.calibration must be an object")
    method = raw.get("method")
    if method not in ("temperature", "platt"):
        raise ValueError(f"{where}.calibration.method {method!r} is not 'temperature' or 'platt'")
    return Calibration(method=method, scale=float(raw["scale"]), offset=float(raw.get("offset", 0.0)),
                       fitted_on=str(raw.get("fitted_on", "")))


def _parse_scope(raw: dict[str, Any]) -> tuple[ScopeSet | None, str]:
    if not raw:
        return None, "the model card has no scope statistics"
    try:
        return ScopeSet.from_dict(raw), ""
    except ScopeError as exc:
        return None, f"unusable scope statistics ({exc})"


def _jsonable(value: Any) -> Any:
    if is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# Optional top-level fields and the JSON type each must have.
_OPTIONAL_FIELDS = {
    "precision": "str",
    "quantization": "object",
    "scope": "object",
    "cam": "object",
    "architecture": "str",
    "description": "str",
    "training_data": "object",
    "validation": "object",
    "training_run": "object",
    "licence": "str",
    "intended_use": "str",
    "weights_sha256": "str",
    "created": "str",
}


# -- ONNX files -----------------------------------------------------------------------------
def weights_sha256(model: Any) -> str:
    """sha256 of the graph (structure and every initializer), excluding the metadata.

    Hashing the serialised graph rather than the file lets the card, which lives in the
    metadata, record the checksum of the weights it describes.
    """
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def write_card(model_path: str | Path, card: ModelCard) -> ModelCard:
    """Store ``card`` (with the weights' sha256 filled in) in the metadata of an ONNX file."""
    import onnx  # lazy, and only here: the viewer reads model files without it (onnx_file)

    model = onnx.load(str(model_path))
    card = replace(card, weights_sha256=weights_sha256(model))
    card.validate(str(model_path))
    kept = [p for p in model.metadata_props if p.key != CARD_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=CARD_METADATA_KEY, value=card.to_json())
    onnx.save(model, str(model_path))
    return card


def read_card(model_path: str | Path, verify_checksum: bool = True) -> ModelCard:
    """Read and validate the card of an ONNX file; raise :class:`ModelCardError` if unusable.

    Reads the file's protobuf directly (:mod:`radreview.inference.onnx_file`): the viewer and
    ``predict`` need no onnx package."""
    path = Path(model_path)
    summary = read_onnx_file(path)
    return card_from_metadata(summary.metadata, summary.graph_sha256 if verify_checksum else None, path)


def read_onnx_file(path: Path):  # type: ignore[no-untyped-def]
    """The file's :class:`~radreview.inference.onnx_file.OnnxSummary`, with bytes that are not ONNX
    (or a file that cannot be read) reported as a :class:`ModelCardError` naming the file."""
    from radreview.inference.onnx_file import OnnxFormatError, read_onnx_summary

    try:
        return read_onnx_summary(path)
    except OnnxFormatError as exc:
        raise ModelCardError(f"{path}: not an ONNX model ({exc})") from exc
    except OSError as exc:
        raise ModelCardError(f"{path}: not an ONNX model (cannot read it: {exc.strerror or exc})") from exc


def card_from_onnx_model(model: Any, path: str | Path, verify_checksum: bool = True) -> ModelCard:
    """The card of an already loaded ``onnx.ModelProto`` (``path`` names it in messages)."""
    props = {p.key: p.value for p in model.metadata_props}
    return card_from_metadata(props, weights_sha256(model) if verify_checksum else None, path)


def card_from_metadata(props: dict[str, str], graph_sha256: str | None, path: str | Path) -> ModelCard:
    """The card in a model's metadata, checked against the sha256 of its graph (None: unchecked)."""
    if CARD_METADATA_KEY not in props:
        raise ModelCardError(f"{path}: no radreview model card in the model's metadata")
    text = props[CARD_METADATA_KEY]
    if len(text) > limits().max_card_bytes:  # before parsing: a card is a few kB, its scope a few MB
        raise ModelCardError(f"{path}: the model card is {len(text)} characters long, more than radreview reads "
                             f"({hint('max_card_bytes')})")
    card = ModelCard.from_json(text, str(path))
    if graph_sha256 is not None and card.weights_sha256 != graph_sha256:
        raise ModelCardError(
            f"{path}: weights checksum mismatch (card {card.weights_sha256[:12]}..., "
            f"file {graph_sha256[:12]}...): the file was altered or corrupted"
        )
    return card
