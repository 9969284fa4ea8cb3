"""``radreview evaluate``: a model (exported ``.onnx`` or a checkpoint) on a labelled dataset.

Writes to one folder: ``metrics.json`` (every figure), ``roc.png`` (all labels) and
``roc_<label>.png``, ``reliability.png``, ``predictions.csv`` (pseudonymous: file name and
scores only) and class-activation examples under ``cam/`` (Grad-CAM with the grad-cam package
for a checkpoint, the model file's in-graph CAM for an ``.onnx``). The statistics come from
:mod:`radreview.metrics`.

The operating points judged are the model's own (chosen on its validation split, so figures
on a test split are honest) plus this data's Youden point (optimistic: chosen on the same data).
An ONNX model needs no torch; only a checkpoint and Grad-CAM do.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radreview import RESEARCH_USE_NOTICE
from radreview.metrics import operating_point, roc_curve, youden_threshold
from radreview.metrics.calibration import brier_score, expected_calibration_error, reliability_curve
from radreview.metrics.delong import auc_ci
from radreview.metrics.small_sample import auc_conservative_interval, delong_unreliable_reason
from radreview.training.datasets import DatasetError, LabelledDataset, Sample, load_dataset
from radreview.training.image_cache import Cancelled, load_letterboxed
from radreview.training.letterbox import normalise
from radreview.training.scoring import label_probabilities
from radreview.training.splits import SPLITS, deduplicate, read_split

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None] | None
CancelCheck = Callable[[], bool] | None
CALIBRATION_BINS = 10


class EvaluationError(ValueError):
    """The model and the data cannot be evaluated together; the message says why."""


@dataclass
class EvalModel:
    """What evaluation needs from a model, whichever file it came from."""

    path: Path
    kind: str  # "onnx" | "checkpoint"
    labels: list[dict[str, Any]]  # name, task, activation
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    operating_points: dict[str, dict[str, float]]
    split_file: Path | None
    run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # normalised batch -> (logits, cam)
    torch_model: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    scope: Any = None  # the card's ScopeSet, when the model has one
    distances: list[np.ndarray] = field(default_factory=list)  # [2, n] (distance, threshold) per batch, from run()


def load_eval_model(path: str | Path, provider: str = "cpu") -> EvalModel:
    """An ``.onnx`` model file (onnxruntime, no torch) or a ``checkpoint.pt`` (torch)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: model file not found")
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path, provider)
    return _load_checkpoint(path)


def _load_onnx(path: Path, provider: str) -> EvalModel:
    from radreview.inference.card import read_card
    from radreview.inference.sessions import create_session

    card = read_card(path)
    session, _ = create_session(str(path), provider)
    outputs = [o.name for o in session.get_outputs()]
    scope = card.scope_check if card.scope_check is not None and set(card.scope_check.outputs) <= set(outputs) else None
    scale = np.ones(len(card.labels), np.float32)
    offset = np.zeros(len(card.labels), np.float32)
    for label in card.labels:
        if label.calibration is not None:
            scale[label.index], offset[label.index] = label.calibration.scale, label.calibration.offset
    distances: list[np.ndarray] = []

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # the card's calibration applies before anything is judged: its operating points are
        # thresholds on calibrated probabilities (the viewer's engine does the same)
        result = session.run(None, {"image": batch.astype(np.float32)})
        named = dict(zip(outputs, result))
        if scope is not None:
            distances.append(np.stack(scope.judge(named)))  # [2, n]: deciding distance, its threshold
        cam = named.get("cam", np.zeros((len(batch), 0, 1, 1), np.float32))
        return named["logits"] * scale + offset, cam

    labels = [{"name": l.name, "task": l.task, "activation": l.activation} for l in sorted(card.labels, key=lambda l: l.index)]
    points = {
        l.name: {"possible": l.operating_points.possible, "likely": l.operating_points.likely,
                 **({"youden": l.operating_points.youden} if l.operating_points.youden is not None else {})}
        for l in card.labels if l.operating_points
    }
    meta = {"name": card.name, "version": card.version, "precision": card.precision,
            "weights_sha256": card.weights_sha256,  # which weights these figures describe (calibrate checks it)
            # labels whose cut-offs rest on too few validation cases: the viewer shows them no tier
            "no_tier": {l.name: l.operating_points.unreliable_reason for l in card.labels
                        if l.operating_points and not l.operating_points.reliable},
            "calibrated": bool(np.any(scale != 1) or np.any(offset != 0)), "scope_check": scope is not None}
    model = EvalModel(path, "onnx", labels, card.input.height, card.input.width, tuple(card.input.mean),
                      tuple(card.input.std), points, None, run, meta=meta)
    model.scope = scope
    model.distances = distances
    return model


def _load_checkpoint(path: Path) -> EvalModel:
    import torch

    from radreview.training.checkpoint import load_model

    model, meta = load_model(path)
    names = [label["name"] for label in meta["labels"]]
    calibration = meta.get("calibration", {})
    scale = np.array([calibration.get(n, {}).get("scale", 1.0) for n in names], np.float32)
    offset = np.array([calibration.get(n, {}).get("offset", 0.0) for n in names], np.float32)

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # calibrated as the exported card will be: the operating points are on that scale
        with torch.no_grad():
            logits, cam = model.forward_with_cam(torch.from_numpy(batch.astype(np.float32)))
        return logits.numpy() * scale + offset, cam.numpy()

    split_file = meta.get("training_data", {}).get("split_file")
    inp = meta["input"]
    points = {name: {k: float(v) for k, v in ops.items() if k in ("possible", "likely", "youden") and v is not None}
              for name, ops in meta.get("operating_points", {}).items()}
    return EvalModel(path, "checkpoint", list(meta["labels"]), inp["height"], inp["width"], tuple(inp["mean"]),
                     tuple(inp["std"]), points, Path(split_file) if split_file else None,
                     run, torch_model=model, meta={"name": meta["name"], "version": meta["version"],
                                                   "calibrated": bool(calibration)})


def _match_labels(model: EvalModel, dataset: LabelledDataset) -> list[tuple[int, int, str]]:
    """(model column, data column, name) for the labels both know; a two-class dataset with
    one label is matched to a one-label model even when the names differ."""
    model_names = [l["name"] for l in model.labels]
    pairs = [(model_names.index(l.name), j, l.name) for j, l in enumerate(dataset.labels) if l.name in model_names]
    if not pairs and len(model.labels) == 1 and len(dataset.labels) == 1:
        log.info("matching the data's label %r to the model's only label %r", dataset.labels[0].name, model_names[0])
        pairs = [(0, 0, model_names[0])]
    if not pairs:
        raise EvaluationError(
            f"{dataset.source}: none of the data's labels {[l.name for l in dataset.labels]} "
            f"is an output of {model.path.name} {model_names}"
        )
    return pairs


def _choose_samples(dataset: LabelledDataset, split: str, split_file: Path | None) -> tuple[list[Sample], str]:
    if split == "all":
        unique, notes = deduplicate(dataset)
        return unique.samples, f"all images ({len(dataset.samples) - len(unique.samples)} duplicate file(s) removed)"
    if split not in SPLITS:
        raise EvaluationError(f"unknown split {split!r}: choose test, val, train or all")
    if split_file is None or not split_file.is_file():
        which = "none was given and the model does not name one" if split_file is None else f"{split_file} not found"
        raise EvaluationError(
            f"split {split!r} needs the run's split file (--split-file; {which}); "
            "use --split all for an external test set"
        )
    return read_split(split_file, dataset)[split], f"{split} split of {split_file}"


def _predict(
    model: EvalModel, pixels: np.ndarray, progress: Progress, is_cancelled: CancelCheck, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    logits, cams = [], []
    for i in range(0, len(pixels), batch_size):
        if is_cancelled and is_cancelled():
            raise Cancelled("evaluation cancelled")
        batch = np.stack([normalise(p.astype(np.float32) / 255.0, model.mean, model.std) for p in pixels[i : i + batch_size]])
        out_logits, out_cam = model.run(batch)
        logits.append(out_logits)
        cams.append(out_cam.astype(np.float16))  # kept for the CAM examples; half is plenty
        if progress:
            progress(min(i + batch_size, len(pixels)), len(pixels))
    return np.concatenate(logits), np.concatenate(cams)


def calibration_figures(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability curve (equal-width bins), ECE and Brier score, from :mod:`radreview.metrics`."""
    return {
        "brier": brier_score(y, p),
        "ece": expected_calibration_error(y, p, bins),
        "bins": bins,
        "reliability": reliability_curve(y, p, bins).to_dict(),
    }


def _label_figures(y: np.ndarray, p: np.ndarray, points: dict[str, float]) -> dict[str, Any]:
    ci = auc_ci(y, p)
    auc: dict[str, Any] = {"auc": ci.auc, "low": ci.lower, "high": ci.upper, "se": ci.se, "method": "DeLong 95% CI",
                           "n_pos": ci.n_positive, "n_neg": ci.n_negative}
    unreliable = delong_unreliable_reason(ci.auc, ci.n_positive, ci.n_negative)
    if unreliable:  # few cases or an AUC of 0/1: DeLong's interval is too narrow; say so, give the safe one
        low, high = auc_conservative_interval(ci.auc, ci.n_positive, ci.n_negative)
        auc.update(unreliable=unreliable, conservative_low=low, conservative_high=high)
    out: dict[str, Any] = {
        "n": int(len(y)),
        "auc": auc,
        "roc": roc_curve(y, p).to_dict(),
        "card_operating_points": {name: operating_point(y, p, float(t)).to_dict() for name, t in points.items()},
        "youden_on_this_data": youden_threshold(y, p).to_dict(),
    }
    out["calibration"] = calibration_figures(y, p)
    return out


def evaluate_model(
    model_path: str | Path,
    data: str | Path,
    out_dir: str | Path,
    split: str = "test",
    split_file: str | Path | None = None,
    cam_examples: int = 4,
    provider: str = "cpu",
    progress: Progress = None,
    is_cancelled: CancelCheck = None,
    **dataset_options: Any,
) -> dict[str, Any]:
    """Evaluate and write the folder; returns the ``metrics.json`` content."""
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_eval_model(model_path, provider)
    dataset = load_dataset(data, **dataset_options)
    pairs = _match_labels(model, dataset)
    chosen_split = Path(split_file) if split_file else model.split_file
    samples, description = _choose_samples(dataset, split, chosen_split)
    if not samples:
        raise EvaluationError(f"{data}: no images in the {split} split")
    pixels, kept, problems = load_letterboxed(samples, model.height, model.width, None, None, is_cancelled)
    for problem in problems:
        log.warning("%s", problem)
    if not kept:
        raise EvaluationError(f"none of the {len(samples)} images could be read ({len(problems)} problems, "
                              f"the first: {problems[0] if problems else 'none'}): check the data folder and "
                              "the split file's paths")
    logits, cams = _predict(model, pixels, progress, is_cancelled)
    probs = label_probabilities(logits, model.labels)
    targets = np.asarray([s.targets for s in kept], dtype=np.float64).reshape(len(kept), -1)

    labels: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for model_col, data_col, name in pairs:
        y = (targets[:, data_col] >= 0.5).astype(int)
        if y.min() == y.max():
            skipped[name] = f"only {'positives' if y[0] else 'negatives'} in the data: no AUC"
            continue
        labels[name] = _label_figures(y, probs[:, model_col], model.operating_points.get(name, {}))
        if name in model.meta.get("no_tier", {}):
            labels[name]["no_tier"] = model.meta["no_tier"][name]
    if not labels:
        raise EvaluationError(f"{data}: every label lacks positives or negatives ({skipped})")
    aucs = [v["auc"]["auc"] for v in labels.values()]
    result: dict[str, Any] = {
        "model": {"file": model.path.name, "kind": model.kind, **model.meta},
        "dataset": str(data),
        "split": split,
        "description": f"radreview evaluate on the {description}",
        "n_images": len(kept),
        "unreadable": problems,
        "macro_auc": float(np.mean(aucs)),
        "labels": labels,
        "skipped_labels": skipped,
        "notice": RESEARCH_USE_NOTICE,
    }
    by_task: dict[str, list[float]] = {}
    for model_col, _, name in pairs:
        if name in labels:
            by_task.setdefault(model.labels[model_col]["task"], []).append(labels[name]["auc"]["auc"])
    result["macro_auc_by_task"] = {task: float(np.mean(v)) for task, v in by_task.items()}
    result["localisation"] = _localisation(data, kept, targets, probs, cams, pairs, labels, model)
    if model.scope is not None and model.distances:
        distances, thresholds = np.concatenate(model.distances, axis=1)
        rejected = int(np.sum(~(distances <= thresholds)))
        limits = [check.threshold for check in model.scope.checks]
        result["scope"] = {"threshold": limits[0] if len(limits) == 1 else limits, "n": int(len(distances)),
                           "outputs": list(model.scope.outputs), "rejected": rejected,
                           "rejected_share": rejected / len(distances),
                           "distance_percentiles": {str(q): float(np.percentile(distances, q)) for q in (50, 90, 99)}}

    from radreview.training import eval_plots

    names = list(labels)
    # every plot names the model, the data and the split it was measured on (the legend: the positives)
    measured_on = f"{Path(data).name}, {description}"
    eval_plots.plot_roc(labels, out_dir / "roc.png", f"{model.path.name} on {measured_on}")
    for name in names:
        eval_plots.plot_roc({name: labels[name]}, out_dir / f"roc_{name}.png", f"{name}: {model.path.name} on {measured_on}")
    eval_plots.plot_reliability(labels, out_dir / "reliability.png", f"{model.path.name} on {measured_on}")
    _write_predictions(out_dir / "predictions.csv", kept, targets, probs, pairs, model)
    result["cam_examples"] = _cam_examples(model, pixels, cams, targets, probs, pairs, labels, out_dir / "cam", cam_examples)
    result["duration_s"] = round(time.time() - started, 1)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=1, allow_nan=True))
    return result


def _localisation(data, kept, targets, probs, cams, pairs, labels, model) -> dict[str, Any]:
    """Pointing game and energy inside boxes for labels the data annotates with boxes (FracAtlas
    fractures), over the true positives at the card's "likely" point (or p >= 0.5 without one)."""
    from radreview.training.localisation import COCO_FILE, pointing_game, read_coco_boxes

    coco = Path(data) / COCO_FILE if Path(data).is_dir() else None
    if coco is None or not coco.is_file():
        return {}
    boxes = read_coco_boxes(coco)
    names = [s.path.name for s in kept]
    out = {}
    for model_col, data_col, name in pairs:
        if name not in labels or model.labels[model_col]["task"] != "fracture":
            continue
        threshold = model.operating_points.get(name, {}).get("likely", 0.5)
        chosen = (targets[:, data_col] >= 0.5) & (probs[:, model_col] >= threshold)
        out[name] = {**pointing_game(cams[:, model_col], names, boxes, (model.height, model.width), chosen),
                     "positives_at": f"likely (p >= {threshold:.3g})", "annotations": coco.name}
    return out


def _write_predictions(path: Path, samples: list[Sample], targets: np.ndarray, probs: np.ndarray,
                       pairs: list[tuple[int, int, str]], model: EvalModel) -> None:
    """File names (no folders: they may carry patient names) with truth and probability per label."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "sha256", *(f"{n}_truth" for _, _, n in pairs), *(l["name"] for l in model.labels)])
        for i, sample in enumerate(samples):
            writer.writerow([sample.path.name, sample.sha256, *(f"{targets[i, d]:g}" for _, d, _ in pairs),
                             *(f"{v:.5f}" for v in probs[i])])


def _example_indices(y: np.ndarray, p: np.ndarray, n: int) -> list[tuple[int, str]]:
    """The most confident true positives, the most confident false positive, the weakest positive."""
    pos = np.nonzero(y == 1)[0]
    neg = np.nonzero(y == 0)[0]
    chosen: list[tuple[int, str]] = []
    for i in pos[np.argsort(-p[pos])][: max(1, n - 2)]:
        chosen.append((int(i), "true_positive"))
    if len(neg) and n > 1:
        chosen.append((int(neg[np.argmax(p[neg])]), "highest_negative"))
    if len(pos) and n > 2:
        weakest = int(pos[np.argmin(p[pos])])
        if all(weakest != i for i, _ in chosen):
            chosen.append((weakest, "lowest_positive"))
    return chosen[:n]


def _cam_examples(model: EvalModel, pixels: np.ndarray, cams: np.ndarray, targets: np.ndarray, probs: np.ndarray,
                  pairs: list[tuple[int, int, str]], labels: dict[str, Any], folder: Path, n: int) -> list[dict[str, Any]]:
    """Overlay PNGs: Grad-CAM (grad-cam package) for a checkpoint, in-graph CAM for an ONNX file."""
    if n <= 0:
        return []
    from radreview.training import eval_plots

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for model_col, data_col, name in pairs:
        if name not in labels:
            continue
        y = (targets[:, data_col] >= 0.5).astype(int)
        for rank, (index, why) in enumerate(_example_indices(y, probs[:, model_col], n)):
            if model.torch_model is not None:
                heat = grad_cam_map(model, pixels[index], model_col)
                method = "Grad-CAM (pytorch-grad-cam)"
            else:
                heat = cams[index, model_col].astype(np.float32)
                method = "CAM from the model file"
            out = folder / f"{name}_{rank}_{why}.png"
            eval_plots.save_overlay(pixels[index], heat, out, f"{name} p={probs[index, model_col]:.2f} ({why})")
            written.append({"label": name, "file": str(out.relative_to(folder.parent)), "why": why, "method": method,
                            "probability": float(probs[index, model_col]), "truth": int(y[index])})
    return written


def grad_cam_map(model: EvalModel, pixels: np.ndarray, column: int) -> np.ndarray:
    """Grad-CAM of one label on the last backbone stage, 0..1 over the input canvas."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = model.torch_model
    x = torch.from_numpy(normalise(pixels.astype(np.float32) / 255.0, model.mean, model.std)[None])
    with GradCAM(model=net, target_layers=[net.backbone.stages[-1]]) as cam:
        heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(column)])
    return np.asarray(heat[0], dtype=np.float32)


def format_summary(result: dict[str, Any]) -> str:
    """A short text table of the figures for the terminal."""
    lines = [f"{result['description']}: {result['n_images']} images, macro-AUC {result['macro_auc']:.3f}"]
    for name, figures in result.get("localisation", {}).items():
        if figures.get("n"):
            lines.append(f"  {name}: pointing game {figures['hits']}/{figures['n']} = {figures['pointing_game']:.2f} "
                         f"of true positives, mean energy inside boxes {figures['mean_energy_inside_boxes']:.2f}")
    if "scope" in result:
        scope = result["scope"]
        lines.append(f"  scope check: {scope['rejected']} of {scope['n']} images rejected as out of scope "
                     f"({100 * scope['rejected_share']:.1f}%)")
    for name, fig in result["labels"].items():
        auc = fig["auc"]
        line = f"  {name:<12} AUC {auc['auc']:.3f} (95% CI {auc['low']:.3f}-{auc['high']:.3f}; {auc['n_pos']} pos / {auc['n_neg']} neg)"
        if fig.get("no_tier"):
            line += f"; no tier shown ({fig['no_tier']}), at its cut-offs"
        for point in ("possible", "likely"):
            stats = fig["card_operating_points"].get(point)
            if stats:
                line += f"; {point}: sens {stats['sensitivity']['estimate']:.2f} spec {stats['specificity']['estimate']:.2f}"
        lines.append(line)
        if auc.get("unreliable"):
            lines.append(f"  {'':<12} ! DeLong CI unreliable ({auc['unreliable']}): conservative 95% CI "
                         f"{auc['conservative_low']:.3f}-{auc['conservative_high']:.3f}")
    for name, why in result.get("skipped_labels", {}).items():
        lines.append(f"  {name:<12} skipped: {why}")
    return "\n".join(lines)


__all__ = ["EvaluationError", "evaluate_model", "format_summary", "load_eval_model", "DatasetError"]
