"""Make a model file honest: its scope check, calibrated probabilities and operating points on them.

:func:`calibrate_model_file` takes a radreview ``.onnx`` model and the labelled data it was
trained on (with the run's split file) and writes a copy whose card holds
- the **scope check** (:mod:`radreview.inference.scope`): mean and shrunk covariance of the pooled
  backbone features of the *training* split, threshold at the 99th percentile of the *validation*
  split's distances. No out-of-scope image is used;
- per label a **calibration** fitted on the validation split (``auto``: temperature or Platt
  scaling, whichever has the lower validation NLL, or none when the raw logits are better already;
  ``pos_weight`` in the loss shifts the base rate, which only Platt scaling undoes; softmax tasks
  share one temperature);
- **operating points** re-derived on the calibrated validation probabilities, each with the
  number of positives and negatives it rests on (too few: the label gets no tier);
- the heatmap colour scale (``cam.span_logits``) from the validation positives' local evidence.

The graph gains an output ``features`` (the pooled features that feed the linear head) when it
lacks one: the model's answers are unchanged, only exposed. onnxruntime runs it, so no torch is
needed here; the training pipeline and ``radreview calibrate`` both call this.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from radreview.inference.card import Calibration, ModelCard, OperatingPoints, card_from_onnx_model, write_card
from radreview.inference.cam import local_logits
from radreview.inference.scope import (DEFAULT_PERCENTILE, FEATURES_OUTPUT, fit_scope_set, rejection_rate,
                                      scope_outputs_among)
from radreview.metrics.calibration import expected_calibration_error, fit_logit_calibration
from radreview.training.card_sections import validation_section
from radreview.training.datasets import LabelledDataset, load_dataset
from radreview.training.image_cache import Cancelled, load_letterboxed
from radreview.training.letterbox import normalise
from radreview.training.scoring import choose_operating_points, label_probabilities
from radreview.training.splits import read_split

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None] | None
CancelCheck = Callable[[], bool] | None
# The evidence a heatmap's colour map spans: local logits from the gate up to this percentile of
# the validation positives' strongest local evidence: a typical (median) positive reaches the hot end.
SPAN_PERCENTILE = 50.0
MIN_SPAN_LOGITS = 2.0


class CalibrationError(ValueError):
    """The model and data cannot be calibrated together; the message says why."""


# -- the graph ----------------------------------------------------------------------------------
def add_features_output(model: Any) -> Any:
    """Expose the pooled features feeding the linear head as output ``features`` [N, D] (in place).

    The head is the ``Gemm`` (or ``MatMul``) whose output is ``logits``; its first input is the
    pooled (and possibly flattened) feature vector. Returns the model; a graph that already has
    ``features`` is left alone.
    """
    import onnx

    graph = model.graph
    if any(o.name == FEATURES_OUTPUT for o in graph.output):
        return model
    producer = next((n for n in graph.node if "logits" in n.output), None)
    if producer is None or producer.op_type not in ("Gemm", "MatMul"):
        found = producer.op_type if producer is not None else "nothing"
        raise CalibrationError(f"cannot find the linear head: 'logits' is made by {found}, not Gemm/MatMul")
    if any(FEATURES_OUTPUT in n.output for n in graph.node):  # an inner tensor already has the name
        _rename_tensor(graph, FEATURES_OUTPUT, f"{FEATURES_OUTPUT}_inner")
    pooled = producer.input[0]
    graph.node.append(onnx.helper.make_node("Flatten", [pooled], [FEATURES_OUTPUT], axis=1,
                                            name="radreview_scope_features"))
    graph.output.append(onnx.helper.make_tensor_value_info(FEATURES_OUTPUT, onnx.TensorProto.FLOAT, ["N", None]))
    return model


def _rename_tensor(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for info in graph.value_info:
        if info.name == old:
            info.name = new


def run_model(session, pixels: np.ndarray, mean, std, progress: Progress = None, cancel: CancelCheck = None,
              batch_size: int = 16, with_cam: bool = False) -> dict[str, np.ndarray]:
    """Raw logits, scope features (and cam, float16) for letterboxed uint8 pixels [N, H, W]."""
    # ``features`` and, when the graph has it, ``lower_features`` (the frozen lower stages' statistics)
    names = ["logits", *scope_outputs_among(o.name for o in session.get_outputs())] + (["cam"] if with_cam else [])
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(pixels), batch_size):
        if cancel and cancel():
            raise Cancelled("calibration cancelled")
        batch = np.stack([normalise(p.astype(np.float32) / 255.0, mean, std) for p in pixels[start:start + batch_size]])
        for name, value in zip(names, session.run(names, {"image": batch})):
            out[name].append(value.astype(np.float16) if name == "cam" else value)
        if progress:
            progress(min(start + batch_size, len(pixels)), len(pixels))
    return {name: np.concatenate(values) if values else np.zeros((0,)) for name, values in out.items()}


# -- fitting --------------------------------------------------------------------------------------
def _softmax_temperature(logits: np.ndarray, classes: np.ndarray) -> float:
    """The temperature minimising the multi-class NLL (golden-section search on log T)."""
    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), classes]))

    low, high = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if nll(a) < nll(b):
            high = b
        else:
            low = a
    return math.exp((low + high) / 2)


def _best_fit(y: np.ndarray, logits: np.ndarray):
    """Temperature or Platt scaling, whichever gives the lower validation NLL; neither when the raw
    logits are already better (a near-separable label, where Platt's smoothed targets only blur)."""
    fits = [fit_logit_calibration(y, logits, m) for m in ("temperature", "platt")]
    best = min(fits, key=lambda f: f.nll_after)
    if best.nll_after >= best.nll_before:
        return replace(best, method="identity")
    return best


def fit_label_calibrations(card: ModelCard, logits: np.ndarray, targets: np.ndarray, method: str,
                           n_description: str) -> tuple[dict[str, Calibration], dict[str, dict[str, Any]]]:
    """Per label a :class:`Calibration` (and a report: NLL and ECE before/after) from validation data."""
    calibrations: dict[str, Calibration] = {}
    report: dict[str, dict[str, Any]] = {}
    for task in card.tasks:
        labels = sorted(card.labels_of(task), key=lambda lab: lab.index)
        cols = [lab.index for lab in labels]
        if labels[0].activation == "softmax":
            present = targets[:, cols].sum(axis=1) > 0
            if present.sum() < 10:
                continue
            temperature = _softmax_temperature(logits[present][:, cols], targets[present][:, cols].argmax(axis=1))
            for lab in labels:
                calibrations[lab.name] = Calibration("temperature", 1.0 / temperature, 0.0, n_description)
                report[lab.name] = {"method": "temperature", "temperature": temperature}
            continue
        for lab in labels:
            y = (targets[:, lab.index] >= 0.5).astype(int)
            if y.min() == y.max():
                log.warning("label %s: only one class in the validation split; left uncalibrated", lab.name)
                continue
            fit = _best_fit(y, logits[:, lab.index]) if method == "auto" else fit_logit_calibration(y, logits[:, lab.index], method)
            if fit.method == "identity":
                continue
            raw_p = 1 / (1 + np.exp(-logits[:, lab.index]))
            cal_p = 1 / (1 + np.exp(-fit.apply(logits[:, lab.index])))
            calibrations[lab.name] = Calibration(fit.method, fit.scale, fit.offset, n_description)
            report[lab.name] = {"method": fit.method, "scale": fit.scale, "offset": fit.offset,
                                "nll_before": fit.nll_before, "nll_after": fit.nll_after,
                                "ece_before": expected_calibration_error(y, raw_p),
                                "ece_after": expected_calibration_error(y, cal_p), "n": fit.n, "n_pos": fit.n_pos}
    return calibrations, report


def calibrated_logits(card: ModelCard, logits: np.ndarray) -> np.ndarray:
    """Apply each label's card calibration to raw logits [N, K]."""
    out = np.array(logits, dtype=np.float64, copy=True)
    for lab in card.labels:
        if lab.calibration is not None:
            out[:, lab.index] = lab.calibration.apply(out[:, lab.index])
    return out


def cam_spans(card: ModelCard, raw_logits: np.ndarray, cam: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Per finding label: the local calibrated evidence above its "likely" gate that its colour map
    should span (labels differ: an implant's evidence is far stronger than a hairline fracture's)."""
    local = local_logits(cam.astype(np.float32), raw_logits.astype(np.float32))
    spans = {}
    for lab in card.labels:
        if lab.task == "region" or lab.operating_points is None:
            continue
        positives = targets[:, lab.index] >= 0.5
        if not positives.any():
            continue
        maps = local[positives, lab.index]
        if lab.calibration is not None:
            maps = lab.calibration.apply(maps)
        gate = lab.operating_points.likely
        gate_logit = math.log(max(gate, 1e-6) / max(1 - gate, 1e-6))
        strongest = maps.reshape(len(maps), -1).max(axis=1)
        spans[lab.name] = round(max(MIN_SPAN_LOGITS, float(np.percentile(strongest, SPAN_PERCENTILE)) - gate_logit), 2)
    return spans


def cam_display_defaults(card: ModelCard, raw_logits: np.ndarray, cam: np.ndarray, targets: np.ndarray) -> dict:
    """The card's ``cam`` section: a span per label and their median as the model's default."""
    spans = cam_spans(card, raw_logits, cam, targets)
    if not spans:
        return {}
    return {"span_logits": round(float(np.median(list(spans.values()))), 2), "label_span_logits": spans}


def calibrated_card(card: ModelCard, val: dict[str, np.ndarray], val_targets: np.ndarray,
                    train_features: dict[str, np.ndarray],
                    method: str = "auto", percentile: float = DEFAULT_PERCENTILE,
                    reference: dict[str, Any] | None = None) -> tuple[ModelCard, dict[str, Any]]:
    """The card with scope check, calibrations, operating points and CAM span fitted (a pure function).

    ``train_features``: the training split's scope features by graph output (``features`` and, when
    the graph has it, ``lower_features``); one check is fitted per output."""
    n_val = len(val_targets)
    described = f"validation split, {n_val} images"
    calibrations, cal_report = fit_label_calibrations(card, val["logits"], val_targets, method, described)
    labels = [replace(lab, calibration=calibrations.get(lab.name)) for lab in card.labels]
    staged = replace(card, labels=tuple(labels))
    probs = label_probabilities(calibrated_logits(staged, val["logits"]),
                                [{"name": lab.name, "task": lab.task, "activation": lab.activation}
                                 for lab in sorted(staged.labels, key=lambda lab: lab.index)])
    ordered = sorted(staged.labels, key=lambda lab: lab.index)
    points = choose_operating_points(val_targets, probs, ordered)
    new_labels = []
    for lab in staged.labels:
        y = val_targets[:, lab.index] >= 0.5
        ops = points.get(lab.name)
        basis = {"split": "validation", "n_pos": int(y.sum()), "n_neg": int((~y).sum()),
                 "scale": "calibrated probability"}
        new_labels.append(replace(lab, operating_points=OperatingPoints(**ops, basis=basis) if ops else None))
    staged = replace(staged, labels=tuple(new_labels))
    scope = fit_scope_set(train_features, {name: val[name] for name in train_features}, percentile=percentile,
                          reference={"fit_split": "train", "threshold_split": "validation", **(reference or {})})
    n_fit = len(next(iter(train_features.values())))
    spans = cam_display_defaults(staged, val["logits"], val["cam"], val_targets) if "cam" in val else {}
    staged = replace(staged, scope=scope.to_dict(), cam={**card.cam, **spans})
    report = {
        "calibration": cal_report,
        "operating_points": {lab.name: {"possible": lab.operating_points.possible, "likely": lab.operating_points.likely,
                                        "youden": lab.operating_points.youden, **lab.operating_points.basis,
                                        "reliable": lab.operating_points.reliable}
                             for lab in staged.labels if lab.operating_points},
        "scope": {"percentile": percentile, "n_fit": n_fit, "n_threshold": n_val,
                  "validation_rejected": rejection_rate(scope, val),
                  "checks": [{"output": c.output, "threshold": c.threshold, "percentile": c.percentile,
                              "components": int(c.components.shape[0]), "dim": c.dim, "shrinkage": c.shrinkage,
                              "validation_rejected": rejection_rate(c, val[c.output])} for c in scope.checks]},
        "cam_span_logits": spans.get("label_span_logits", {}),
    }
    return staged, report


def validation_figures(validation: str | Path | None, external: Sequence[str | Path] = (),
                       card: ModelCard | None = None, model_name: str = "the model") -> dict[str, Any]:
    """The card's ``validation`` section: internal test figures and, under ``external``, each external
    set's; with ``card``, each file must describe it (``check_figures_describe``)."""
    if card is not None:
        for path in [*([validation] if validation is not None else []), *external]:
            check_figures_describe(card, model_name, path)
    if validation is None:
        section: dict[str, Any] = {"source": "not measured for these operating points: run radreview evaluate on "
                                             "the test split and calibrate again with --validation", "labels": {}}
    else:
        section = validation_section({}, read_metrics(validation))
    if external:
        section["external"] = [validation_section({}, read_metrics(p)) for p in external]
    return section


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A metrics.json written by ``radreview evaluate``, or a CalibrationError naming the file."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{path}: not a metrics.json from radreview evaluate ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("labels"), dict):
        raise CalibrationError(f"{path}: not a metrics.json from radreview evaluate (no 'labels')")
    return document


def load_onnx_model(path: Path):  # type: ignore[no-untyped-def]
    """The ONNX model in ``path``, or a CalibrationError naming the file (not a protobuf traceback)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise CalibrationError(f"{path}: not a readable ONNX model ({exc or type(exc).__name__})") from None


def check_figures_describe(card: ModelCard, model_name: str, validation: str | Path) -> None:
    """Refuse test figures measured on another model: other weights (where metrics.json names
    them) or other cut-offs than the card's (the figures at operating points would be false)."""
    figures = read_metrics(validation)
    measured = (figures.get("model") or {}).get("weights_sha256")
    if measured and measured != card.weights_sha256:
        raise CalibrationError(f"{validation}: measured on other weights ({measured[:8]}...) than "
                               f"{model_name} ({card.weights_sha256[:8]}...); evaluate this model")
    for label in card.labels:
        stored = (figures.get("labels", {}).get(label.name) or {}).get("card_operating_points", {})
        if label.operating_points is None or not stored:
            continue
        for point in ("possible", "likely"):
            mine = getattr(label.operating_points, point)
            theirs = (stored.get(point) or {}).get("threshold")
            if theirs is None or abs(float(theirs) - mine) > 1e-9 * max(1.0, abs(mine)):
                raise CalibrationError(
                    f"{validation}: its {label.name} '{point}' figures are at p {theirs} but {model_name}'s "
                    f"cut-off is p {mine:.6g}: the figures describe another model; evaluate this one")


def embed_figures(model_path: str | Path, out_path: str | Path, validation: str | Path | None,
                  external: Sequence[str | Path] = (), version: str | None = None) -> ModelCard:
    """Write ``radreview evaluate`` figures into a calibrated model's card, changing nothing else
    (the second step: the figures can only be measured once the operating points exist)."""
    model_path, out_path = Path(model_path), Path(out_path)
    model = load_onnx_model(model_path)
    card = card_from_onnx_model(model, model_path, verify_checksum=True)
    if card.scope_check is None and not any(lab.calibration for lab in card.labels):
        raise CalibrationError(f"{model_path}: not calibrated yet; run radreview calibrate without --figures-only")
    section = validation_figures(validation, external, card, model_path.name)  # refuses another model's
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model.onnx"
        staged.write_bytes(model_path.read_bytes())
        written = write_card(staged, replace(card, validation=section, version=version or card.version))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(staged.read_bytes())
    return written


# -- the whole job ----------------------------------------------------------------------------------
def calibrate_model_file(
    model_path: str | Path,
    data: str | Path | LabelledDataset,
    split_file: str | Path,
    out_path: str | Path,
    method: str = "auto",
    percentile: float = DEFAULT_PERCENTILE,
    cache_dir: str | Path | None = None,
    validation: str | Path | None = None,
    external: Sequence[str | Path] = (),
    version: str | None = None,
    progress: Progress = None,
    is_cancelled: CancelCheck = None,
    **dataset_options: Any,
) -> tuple[ModelCard, dict[str, Any]]:
    """Fit scope check, calibration and operating points of ``model_path`` on its training data and
    write the result to ``out_path`` (which may be the same file). Returns (card, report).

    The card's test figures describe the model *with* these operating points, so they are only
    carried over from ``validation`` (``radreview evaluate``'s metrics.json of the calibrated model)
    and ``external`` (the same for external sets); without them the card's validation section says
    that the figures must be re-measured.
    """
    import onnx

    from radreview.inference.sessions import create_session

    model_path, out_path = Path(model_path), Path(out_path)
    model = load_onnx_model(model_path)
    card = card_from_onnx_model(model, model_path, verify_checksum=True)
    add_features_output(model)
    dataset = data if isinstance(data, LabelledDataset) else load_dataset(data, **dataset_options)
    names = [lab.name for lab in sorted(card.labels, key=lambda lab: lab.index)]
    data_names = [lab.name for lab in dataset.labels]
    if data_names != names:
        raise CalibrationError(f"{dataset.source}: the data's labels {data_names} are not the model's {names}")
    split = read_split(split_file, dataset)
    if len(split["train"]) < 10 or len(split["val"]) < 10:
        raise CalibrationError(f"{split_file}: the train and val splits need at least 10 images each")
    height, width = card.input.height, card.input.width
    cache = Path(cache_dir) if cache_dir else None
    train_pixels, train_kept, problems = load_letterboxed(split["train"], height, width, cache, None, is_cancelled)
    val_pixels, val_kept, val_problems = load_letterboxed(split["val"], height, width, cache, None, is_cancelled)
    for problem in (*problems, *val_problems):
        log.warning("skipped %s", problem)
    with tempfile.TemporaryDirectory() as tmp:
        staged_path = Path(tmp) / "model.onnx"
        onnx.save(model, str(staged_path))
        session, _ = create_session(str(staged_path), "cpu")
        total = len(train_pixels) + len(val_pixels)

        def part(offset: int):
            return (lambda done, _n: progress(offset + done, total)) if progress else None

        train = run_model(session, train_pixels, card.input.mean, card.input.std, part(0), is_cancelled)
        val = run_model(session, val_pixels, card.input.mean, card.input.std, part(len(train_pixels)), is_cancelled,
                        with_cam=True)
        del session
        val_targets = np.asarray([s.targets for s in val_kept], dtype=np.float64).reshape(len(val_kept), -1)
        features = {name: train[name] for name in scope_outputs_among(train)}
        new_card, report = calibrated_card(card, val, val_targets, features, method, percentile,
                                           reference={"dataset": Path(str(dataset.source)).name,
                                                      "split_file": Path(split_file).name})
        new_card = replace(new_card, training_run={**card.training_run, "calibration": {
            "method": method, "split_file": Path(split_file).name, "n_train": len(train_kept), "n_val": len(val_kept)}},
            validation=validation_figures(validation, external, new_card, out_path.name),
            version=version or card.version)
        write_card(staged_path, new_card)
        written = card_from_onnx_model(onnx.load(str(staged_path)), out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(staged_path.read_bytes())
    report["unreadable"] = [*problems, *val_problems]
    return written, report
