"""Finding model files, checking them, and refusing the ones radreview cannot trust.

Model folders, in order of increasing priority (a later folder's model of the same name and
precision wins, and the one it replaces is listed as a problem naming both files, so no model is
replaced unseen):
1. the shipped ``models/`` folder (next to the source tree, or inside a frozen app);
2. the per-user folder ``<user data dir>/radreview/models`` (platformdirs);
3. ``$RADREVIEW_MODELS`` when set.
An explicit ``--models DIR`` replaces these defaults, so a batch run uses exactly what it names.

Each ``.onnx`` file must be ONNX, carry a valid card whose weights checksum matches, take
``image`` [N, 3, H, W] at the card's size and give ``logits`` [N, K] and ``cam`` [N, K, h, w]
with the card's K. A file that fails is listed as a :class:`ModelProblem` and skipped.

One model may ship in two precisions (``card.precision``: "float32", and "int8" made from it by
:mod:`radreview.training.quantize`); files are keyed by (name, precision) and
:func:`choose_precision` runs one of them per name: int8 when it was made from that float32 file
(or is the only one), float32 on request.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from radreview.inference.card import ModelCard, ModelCardError, card_from_metadata, read_onnx_file
from radreview.inference.onnx_file import OnnxSummary

USER_MODELS_ENV = "RADREVIEW_MODELS"
PRECISION_CHOICES = ("auto", "int8", "float32")  # auto: int8 where there is one
# ops that only a quantised graph has (QDQ format, or onnxruntime's QOperator / integer ops)
QUANTISED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                           "MatMulInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearGlobalAveragePool"})


@dataclass(frozen=True)
class ModelProblem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class ModelFile:
    """A checked model file and its card."""

    path: Path
    card: ModelCard

    @property
    def key(self) -> str:
        """Name and version: what results and caches record."""
        return f"{self.card.name} {self.card.version}"


@dataclass
class ModelCatalog:
    models: list[ModelFile] = field(default_factory=list)  # one per name, in the chosen precision
    problems: list[ModelProblem] = field(default_factory=list)
    searched: list[Path] = field(default_factory=list)
    available: list[ModelFile] = field(default_factory=list)  # every usable file, one per (name, precision)
    notes: list[ModelProblem] = field(default_factory=list)  # a model that runs in another precision than asked


def shipped_models_dir() -> Path:
    """``models/`` of the source tree or of a frozen (PyInstaller) app."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "models"
    return Path(__file__).resolve().parents[2] / "models"


def user_models_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("radreview", appauthor=False)) / "models"


def default_model_dirs() -> list[Path]:
    dirs = [shipped_models_dir(), user_models_dir()]
    if os.environ.get(USER_MODELS_ENV):
        dirs.append(Path(os.environ[USER_MODELS_ENV]))
    return dirs


def check_model_file(path: str | Path) -> ModelFile:
    """Load and check one file; raise :class:`ModelCardError` naming the file and the problem."""
    from radreview.studies.fileaccess import not_regular_reason

    path = Path(path)
    reason = not_regular_reason(path)  # a FIFO named .onnx would block the read forever
    if reason:
        raise ModelCardError(f"{path}: model file not found" if reason.startswith("file not found") else f"{path}: {reason}")
    summary = read_onnx_file(path)
    card = card_from_metadata(summary.metadata, summary.graph_sha256, path)
    _check_signature(summary, card, path)
    _check_precision(summary, card, path)
    return ModelFile(path=path, card=card)


def _check_precision(model: OnnxSummary, card: ModelCard, path: Path) -> None:
    """The card's precision must be the graph's: an int8 card over a float graph (or the reverse)
    would make every speed and parity figure on the card a statement about another model."""
    quantised = bool(model.op_types & QUANTISED_OPS)
    if card.precision == "int8" and not quantised:
        raise ModelCardError(f"{path}: the card says precision int8 but the graph has no quantised operators "
                             "(a float32 graph with an int8 card)")
    if card.precision == "float32" and quantised:
        raise ModelCardError(f"{path}: the graph is quantised (QuantizeLinear/DequantizeLinear) but the card says "
                             "precision float32")


def _check_signature(model: OnnxSummary, card: ModelCard, path: Path) -> None:
    inputs, outputs = model.inputs, model.outputs
    if "image" not in inputs:
        raise ModelCardError(f"{path}: the model has no input named 'image' (has {', '.join(inputs) or 'none'})")
    shape = inputs["image"]
    expected = [3, card.input.height, card.input.width]
    # a symbolic (dynamic) dimension takes whatever the card says
    if len(shape) != 4 or any(isinstance(s, int) and s != e for s, e in zip(shape[1:], expected)):
        raise ModelCardError(
            f"{path}: wrong input shape {shape} for 'image' (the card says [N, {expected[0]}, {expected[1]}, {expected[2]}])"
        )
    for name, rank in (("logits", 2), ("cam", 4)):
        if name not in outputs:
            raise ModelCardError(f"{path}: the model has no output named {name!r}")
        dims = outputs[name]
        if len(dims) != rank:
            raise ModelCardError(f"{path}: output {name!r} has rank {len(dims)}, expected {rank}")
        k = dims[1]
        if isinstance(k, int) and k and k != len(card.labels):
            raise ModelCardError(f"{path}: output {name!r} has {k} channels but the card lists {len(card.labels)} labels")


def discover(dirs: Sequence[str | Path] | None = None, files: Iterable[str | Path] = (),
             precision: str = "auto") -> ModelCatalog:
    """Every usable model in ``dirs`` (default: :func:`default_model_dirs`) plus ``files``.

    A model found again (same name and precision) in a later folder replaces the earlier one
    (user models override shipped ones); the replaced file becomes a problem that names the file
    replacing it. ``precision`` chooses between the two precisions of a model
    (:func:`choose_precision`). Problems are collected, never raised.
    """
    catalog = ModelCatalog()
    by_key: dict[tuple[str, str], ModelFile] = {}
    paths: list[Path] = []
    for folder in [Path(d) for d in (dirs if dirs is not None else default_model_dirs())]:
        catalog.searched.append(folder)
        if folder.is_file():
            paths.append(folder)
        elif folder.is_dir():
            paths.extend(sorted(folder.glob("*.onnx")))
        elif dirs is not None:  # a folder the user named must exist
            catalog.problems.append(ModelProblem(folder, "models folder not found"))
    paths.extend(Path(f) for f in files)
    for path in list(dict.fromkeys(paths)):  # the same file named twice is one model
        try:
            model = check_model_file(path)
        except ModelCardError as exc:
            catalog.problems.append(ModelProblem(path, str(exc).removeprefix(f"{path}: ")))
            continue
        key = (model.card.name, model.card.precision)
        shadowed = by_key.get(key)
        if shadowed is not None:
            catalog.problems.append(ModelProblem(
                shadowed.path, f"not used: {model.path} has the same model name {model.card.name!r} and precision "
                               f"{model.card.precision} (version {model.card.version}, replacing "
                               f"{shadowed.card.version}) and takes its place"))
        by_key[key] = model
    catalog.available = list(by_key.values())
    catalog.models, catalog.notes = choose_precision(catalog.available, precision)
    return catalog


def choose_precision(models: Sequence[ModelFile], precision: str = "auto") -> tuple[list[ModelFile], list[ModelProblem]]:
    """One file per model name, and a note (on the file that runs) for each model that runs in
    another precision than asked.

    ``auto`` takes the int8 file when it was quantised from the float32 file next to it (its card
    records that file's weights checksum) or when there is no float32 file; an int8 file made from
    another float32 model (e.g. the float32 model was retrained and not quantised again) is not
    used. ``float32``/``int8`` take that precision where the model has it, else the other.
    """
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_CHOICES)}")
    by_name: dict[str, dict[str, ModelFile]] = {}
    for model in models:
        by_name.setdefault(model.card.name, {})[model.card.precision] = model
    chosen: list[ModelFile] = []
    notes: list[ModelProblem] = []
    for name, files in by_name.items():
        float32, int8 = files.get("float32"), files.get("int8")
        if precision == "auto":
            stale = (float32 is not None and int8 is not None
                     and int8.card.quantization.get("float32_sha256") != float32.card.weights_sha256)
            if stale:
                notes.append(ModelProblem(float32.path, f"running float32: {int8.path.name} was quantised from "  # type: ignore[union-attr]
                                          "another float32 model (quantise this one again: radreview quantize)"))
            chosen.append(float32 if stale or int8 is None else int8)  # type: ignore[arg-type]
            continue
        wanted = files.get(precision)
        if wanted is None:
            other = next(iter(files.values()))
            notes.append(ModelProblem(other.path, f"model {name!r} has no {precision} file; running {other.card.precision}"))
            wanted = other
        chosen.append(wanted)
    return chosen, notes
