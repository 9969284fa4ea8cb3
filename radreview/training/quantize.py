"""A float32 radreview model -> an int8 one that answers the same, or a refusal with the figures.

:func:`quantize_model_file` makes a static int8 copy of a model file with ONNX Runtime's own tools
(``onnxruntime.quantization``: QDQ format, per-channel int8 weights, uint8 activations) and checks
it before writing it:

- **Calibration** (the activation ranges): a few hundred *training*-split images, chosen by a seeded
  draw, decoded and letterboxed exactly as inference does (:func:`load_letterboxed` and
  :func:`radreview.inference.preprocess.normalise`, as :mod:`radreview.training.calibrate` does).
- **What stays float** (measured on the shipped model, docs/performance.md):
  the *stem*, the first :data:`STEM_CONVS` convolutions from the image (for EfficientNet-Lite0 the
  stem and the first block): quantised, they alone doubled the error of every logit and cost the
  fracture label 0.008 AUC; kept float they cost about 1 ms per image. The *head* (global pooling,
  the linear layer, the in-graph CAM ``Einsum`` and the scope check's ``features``) reads the last
  feature map after dequantisation: quantising it saved no measurable time and would round the
  logits, the CAMs and the scope features to 8 bits.
- **Scope check**: the card's Mahalanobis statistics were fitted on float32 features. When the int8
  features reject a different share of the validation split (more than :data:`SCOPE_RATE_TOLERANCE`
  apart), the card is refitted on the int8 model's own outputs with
  :func:`radreview.training.calibrate.calibrated_card` (the one fitting path).
- **Parity gate**: on the validation split, through the engine and the presentation (the path every
  surface shows), every label's AUC within :data:`AUC_TOLERANCE` of float32 and the same tiers on at
  least :data:`TIER_AGREEMENT` of the images; otherwise :class:`ParityError` names the labels and the
  numbers and nothing is written.

The card says ``precision: "int8"`` and, under ``quantization``, the float32 model's weights
sha256, the calibration set and the parity figures. No torch is needed here.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from radreview.inference.card import ModelCard, ModelCardError, card_from_onnx_model, write_card
from radreview.inference.scope import FEATURES_OUTPUT, scope_outputs_among
from radreview.training.calibrate import CalibrationError, calibrated_card, run_model
from radreview.training.datasets import LabelledDataset, Sample, load_dataset
from radreview.training.image_cache import Cancelled, load_letterboxed
from radreview.training.letterbox import normalise
from radreview.training.splits import read_split

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None] | None
CancelCheck = Callable[[], bool] | None

DEFAULT_CALIBRATION_IMAGES = 300
AUC_TOLERANCE = 0.005  # largest AUC loss (any label) the gate accepts
TIER_AGREEMENT = 0.99  # smallest share of validation images whose tiers all agree
SCOPE_RATE_TOLERANCE = 0.01  # int8 vs float32 validation rejection rate, absolute
CALIBRATION_SEED = 0
HEAD_OPS = ("GlobalAveragePool", "ReduceMean", "Flatten", "Gemm", "MatMul", "Einsum")
STEM_CONVS = 3  # convolutions from the input kept float (with the pads and activations among them)


class QuantizationError(ValueError):
    """The model cannot be quantised (the message says why)."""


class ParityError(QuantizationError):
    """The int8 model does not answer like the float32 one; ``parity`` holds the figures."""

    def __init__(self, message: str, parity: Parity) -> None:
        super().__init__(message)
        self.parity = parity


@dataclass(frozen=True)
class Gate:
    """What the int8 model must show against float32 on the validation split."""

    auc_tolerance: float = AUC_TOLERANCE
    tier_agreement: float = TIER_AGREEMENT


@dataclass
class Parity:
    """float32 vs int8 on the validation split, through the engine (what every surface shows)."""

    n_images: int
    auc: dict[str, tuple[float, float]]  # label -> (float32, int8)
    tier_agreement: float  # share of images whose every finding and region has the same tier
    label_agreement: dict[str, float]  # label -> share of images with the same tier
    # Images whose float32 probability sits on a cut-off: the validation images the operating points
    # were chosen at (a threshold is an observed probability), so any change at all may move them
    # across. They are left out of ``tier_agreement``; ``tier_agreement_all`` counts them.
    n_on_cutoff: int = 0
    tier_agreement_all: float = math.nan
    scope_rejected: tuple[float, float] | None = None  # validation share out of scope (float32, int8)
    max_probability_difference: float = 0.0
    mean_logit_difference: float = 0.0
    gate: Gate = field(default_factory=Gate)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        out = [f"validation split, {self.n_images} images: same tiers on {100 * self.tier_agreement:.1f}% "
               f"(gate >= {100 * self.gate.tier_agreement:.0f}%; {self.n_on_cutoff} images on a cut-off left out; "
               f"{100 * self.tier_agreement_all:.1f}% counting them)"]
        for name, (a, b) in self.auc.items():
            out.append(f"  {name:<12} AUC float32 {a:.4f}  int8 {b:.4f}  ({b - a:+.4f}; gate {-self.gate.auc_tolerance:+.3f}); "
                       f"same tier {100 * self.label_agreement.get(name, math.nan):.1f}%")
        if self.scope_rejected is not None:
            out.append(f"  scope check: {100 * self.scope_rejected[0]:.1f}% (float32) vs "
                       f"{100 * self.scope_rejected[1]:.1f}% (int8) of validation images out of scope")
        out.append(f"  calibrated logits differ by {self.mean_logit_difference:.3f} on average; largest probability "
                   f"difference {self.max_probability_difference:.4f}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"split": "validation", "n_images": self.n_images,
                "tier_agreement": round(self.tier_agreement, 5), "n_on_cutoff": self.n_on_cutoff,
                "tier_agreement_counting_cutoff_images": round(self.tier_agreement_all, 5),
                "auc": {k: {"float32": round(a, 5), "int8": round(b, 5)} for k, (a, b) in self.auc.items()},
                "label_tier_agreement": {k: round(v, 5) for k, v in self.label_agreement.items()},
                "scope_rejected": (None if self.scope_rejected is None else
                                   {"float32": round(self.scope_rejected[0], 5), "int8": round(self.scope_rejected[1], 5)}),
                "mean_logit_difference": round(self.mean_logit_difference, 5),
                "max_probability_difference": round(self.max_probability_difference, 5),
                "gate": {"auc_tolerance": self.gate.auc_tolerance, "tier_agreement": self.gate.tier_agreement}}


# -- choosing and feeding the calibration images ------------------------------------------------
def calibration_samples(train: Sequence[Sample], count: int, seed: int = CALIBRATION_SEED) -> list[Sample]:
    """A seeded draw of ``count`` training images (all of them when there are fewer), in split order."""
    if count >= len(train):
        return list(train)
    chosen = np.random.default_rng(seed).choice(len(train), size=count, replace=False)
    return [train[i] for i in sorted(int(i) for i in chosen)]


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over letterboxed uint8 pixels [N, H, W].

    ``len`` and ``set_range`` (in batches) let the calibrator take one batch at a time
    (``CalibStridedMinMax``): it otherwise keeps every intermediate tensor of every image in
    memory before reducing them (about 60 MB per image for EfficientNet-Lite0 at 320 px).
    """

    def __init__(self, pixels: np.ndarray, card: ModelCard, batch: int = 4, cancel: CancelCheck = None,
                 progress: Progress = None) -> None:
        self.pixels, self.card, self.batch, self.cancel, self.progress = pixels, card, batch, cancel, progress
        self.start, self.end = 0, len(self)

    def __len__(self) -> int:
        return -(-len(self.pixels) // self.batch)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, min(end_index, len(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.cancel and self.cancel():
            raise Cancelled("quantisation cancelled")
        if self.start >= self.end:
            return None
        chunk = self.pixels[self.start * self.batch:(self.start + 1) * self.batch]
        self.start += 1
        if self.progress:
            self.progress(self.start, len(self))
        mean, std = self.card.input.mean, self.card.input.std
        return {"image": np.stack([normalise(p.astype(np.float32) / 255.0, mean, std) for p in chunk])}


# -- the graph ------------------------------------------------------------------------------------
def head_nodes(model: Any) -> list[str]:
    """Names of the nodes between the last feature map and the outputs (pooling, head, CAM, features).

    Walks back from ``logits``, ``cam`` and ``features`` through :data:`HEAD_OPS` only, so the
    backbone (convolutions) is never included.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    found: list[str] = []
    todo = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while todo:
        node = producers.get(todo.pop())
        if node is None or node.op_type not in HEAD_OPS or id(node) in seen:
            continue
        seen.add(id(node))
        found.append(node.name)
        todo.extend(node.input)
    return found


def stem_nodes(model: Any, convs: int = STEM_CONVS) -> list[str]:
    """Names of the nodes from the graph's input up to and including its ``convs``-th Conv (graph
    order is topological), i.e. the stem whose activations quantise worst."""
    found: list[str] = []
    seen = 0
    for node in model.graph.node:
        if seen >= convs:
            break
        found.append(node.name)
        seen += node.op_type == "Conv"
    return found if convs else []


def _name_nodes(model: Any) -> None:
    """Give unnamed nodes a name (nodes_to_exclude refers to nodes by name)."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def quantize_graph(float_path: Path, out_path: Path, pixels: np.ndarray, card: ModelCard, keep_head_float: bool = True,
                   method: str = "minmax", cancel: CancelCheck = None, progress: Progress = None,
                   stem_convs: int = STEM_CONVS) -> list[str]:
    """Write the static QDQ int8 graph of ``float_path`` to ``out_path``; returns the nodes kept float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise QuantizationError(f"unknown calibration method {method!r}; choose one of {', '.join(methods)}")
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference + constant folding first, as onnxruntime's quantiser recommends: the
        # exporter's SAME-padding arithmetic becomes constant pads the Conv can absorb
        quant_pre_process(str(float_path), str(prepared))
        model = onnx.load(str(prepared))
        _name_nodes(model)
        onnx.save(model, str(prepared))
        excluded = stem_nodes(model, stem_convs) + (head_nodes(model) if keep_head_float else [])
        quiet = logging.root.manager.disable
        logging.disable(logging.INFO)  # the quantiser logs one INFO line per rescaled weight channel
        try:
            quantize_static(
                str(prepared), str(out_path), _Batches(pixels, card, cancel=cancel, progress=progress),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,  # x86 (VNNI) u8s8 kernels
                nodes_to_exclude=excluded, calibrate_method=methods[method],
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                               "CalibTensorRangeSymmetric": False,
                               "CalibStridedMinMax": 1},  # one batch at a time: bounded memory (see _Batches)
            )
        finally:
            logging.disable(quiet)
    if not any(node.op_type == "QuantizeLinear" for node in onnx.load(str(out_path)).graph.node):
        raise QuantizationError(f"{float_path}: nothing was quantised: the first {stem_convs} convolution(s) kept "
                                "float and the head are the whole model (lower the stem: --stem-convs)")
    return excluded


# -- running both through the engine ---------------------------------------------------------------
def engine_results(model_path: Path, pixels: np.ndarray, batch: int = 16, cancel: CancelCheck = None,
                   progress: Progress = None) -> list:
    """:class:`~radreview.inference.engine.ImageResult` per letterboxed image, as the viewer gets them."""
    from radreview.inference.engine import Engine
    from radreview.inference.registry import check_model_file

    engine = Engine([check_model_file(model_path)], provider="cpu", batch_size=batch)
    if engine.problems:
        raise QuantizationError(str(engine.problems[0]))
    results = []
    for start in range(0, len(pixels), batch):
        items = [engine.prepare(p) for p in pixels[start:start + batch]]
        results.extend(engine.infer(items, with_cam=False, cancel=cancel))
        if progress:
            progress(min(start + batch, len(pixels)), len(pixels))
    return results


def _tiers(result) -> dict[str, str]:
    from radreview.inference.presentation import present_image

    shown = present_image(result)
    return {f.key: f.tier for f in (*shown.findings, *shown.regions)}


def _rejected(results, model: str) -> float | None:
    verdicts = [r.scopes.get(model) for r in results]
    flags = [v.in_scope is False for v in verdicts if v is not None and v.in_scope is not None]
    return float(np.mean(flags)) if flags else None


def _on_cutoff(result) -> bool:
    """Whether any label's probability equals one of its cut-offs (to float32 precision)."""
    return any(cut is not None and math.isclose(r.probability, cut, rel_tol=1e-5, abs_tol=1e-9)
               for r in result.labels for cut in (r.possible, r.likely))


def compare(card: ModelCard, targets: np.ndarray, float_results: list, int8_results: list,
            gate: Gate = Gate()) -> Parity:
    """The parity figures and the gate's verdict (``failures`` names each miss with its numbers)."""
    from radreview.metrics import roc_auc

    n = len(float_results)
    tiers_f = [_tiers(r) for r in float_results]
    tiers_q = [_tiers(r) for r in int8_results]
    same = np.array([a == b for a, b in zip(tiers_f, tiers_q)], dtype=bool)
    on_cutoff = np.array([_on_cutoff(r) for r in float_results], dtype=bool)
    agreement = float(np.mean(same[~on_cutoff])) if (~on_cutoff).any() else math.nan
    aucs: dict[str, tuple[float, float]] = {}
    label_agreement: dict[str, float] = {}
    largest, logit_gaps = 0.0, []
    for label in sorted(card.labels, key=lambda lab: lab.index):
        key = f"{card.name}/{label.name}"
        rows = [(i, a.get(label.name), b.get(label.name)) for i, (a, b) in enumerate(zip(float_results, int8_results))]
        rows = [(i, a, b) for i, a, b in rows if a is not None and b is not None]
        label_agreement[label.name] = (float(np.mean([tiers_f[i].get(key) == tiers_q[i].get(key) for i, _, _ in rows]))
                                       if rows else math.nan)
        if not rows:
            continue
        y = targets[[i for i, _, _ in rows], label.index] >= 0.5
        p_f = np.array([a.probability for _, a, _ in rows])
        p_q = np.array([b.probability for _, _, b in rows])
        largest = max(largest, float(np.max(np.abs(p_f - p_q))))
        logit_gaps.extend(abs(a.logit - b.logit) for _, a, b in rows)
        if y.all() or not y.any():
            continue  # no AUC without both classes
        aucs[label.name] = (float(roc_auc(y, p_f)), float(roc_auc(y, p_q)))
    rejected_f, rejected_q = _rejected(float_results, card.name), _rejected(int8_results, card.name)
    parity = Parity(n, aucs, agreement, label_agreement, int(on_cutoff.sum()), float(np.mean(same)) if n else math.nan,
                    None if rejected_f is None or rejected_q is None else (rejected_f, rejected_q), largest,
                    float(np.mean(logit_gaps)) if logit_gaps else 0.0, gate)
    for name, (a, b) in aucs.items():
        if a - b > gate.auc_tolerance:
            parity.failures.append(f"{name}: AUC {b:.4f} int8 vs {a:.4f} float32 (loss {a - b:.4f} > {gate.auc_tolerance})")
    if not agreement >= gate.tier_agreement:
        worst = sorted(label_agreement.items(), key=lambda kv: kv[1])[:3]
        parity.failures.append(
            f"same tiers on only {100 * agreement:.1f}% of {n - int(on_cutoff.sum())} validation images "
            f"(gate {100 * gate.tier_agreement:.0f}%; lowest: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in worst) + ")")
    return parity


# -- the whole job -------------------------------------------------------------------------------
@dataclass
class _Data:
    calibration: np.ndarray
    calibration_samples: list[Sample]
    train: list[Sample]
    val: np.ndarray
    val_targets: np.ndarray
    problems: list[str]


def _load_data(card: ModelCard, data: str | Path | LabelledDataset, split_file: str | Path, count: int,
               cache_dir: Path | None, cancel: CancelCheck, **dataset_options: Any) -> _Data:
    dataset = data if isinstance(data, LabelledDataset) else load_dataset(data, **dataset_options)
    names = [lab.name for lab in sorted(card.labels, key=lambda lab: lab.index)]
    if [lab.name for lab in dataset.labels] != names:
        raise QuantizationError(f"{dataset.source}: the data's labels {[lab.name for lab in dataset.labels]} "
                                f"are not the model's {names}")
    split = read_split(split_file, dataset)
    if len(split["train"]) < 10 or len(split["val"]) < 10:
        raise QuantizationError(f"{split_file}: the train and val splits need at least 10 images each")
    chosen = calibration_samples(split["train"], count)
    height, width = card.input.height, card.input.width
    calibration, kept, problems = load_letterboxed(chosen, height, width, cache_dir, None, cancel)
    val, val_kept, val_problems = load_letterboxed(split["val"], height, width, cache_dir, None, cancel)
    if len(calibration) < 1:
        raise QuantizationError(f"{split_file}: none of the {len(chosen)} calibration images could be read")
    targets = np.asarray([s.targets for s in val_kept], dtype=np.float64).reshape(len(val_kept), -1)
    return _Data(calibration, kept, list(split["train"]), val, targets, [*problems, *val_problems])


def _refit_on_int8(card: ModelCard, int8_path: Path, data: _Data, cache_dir: Path | None, cancel: CancelCheck,
                   progress: Progress) -> tuple[ModelCard, dict[str, Any]]:
    """Scope check, calibration and operating points fitted on the int8 model's own outputs."""
    from radreview.inference.sessions import create_session

    check = card.scope_check
    methods = {lab.calibration.method for lab in card.labels if lab.calibration is not None}
    method = "platt" if "platt" in methods or not methods else methods.pop()
    train, _, _ = load_letterboxed(data.train, card.input.height, card.input.width, cache_dir, None, cancel)
    session, _ = create_session(str(int8_path), "cpu")
    mean, std = card.input.mean, card.input.std
    train_out = run_model(session, train, mean, std, progress, cancel)
    val_out = run_model(session, data.val, mean, std, None, cancel, with_cam=True)
    first = check.checks[0].reference if check is not None else {}
    reference = {k: v for k, v in first.items() if not k.startswith("n_")}
    features = {name: train_out[name] for name in scope_outputs_among(train_out)}
    refitted, report = calibrated_card(card, val_out, data.val_targets, features, method,
                                       check.percentile if check is not None else 99.0,
                                       reference={**reference, "fitted_on": "int8 model outputs"})
    return refitted, report


def int8_validation_note(card: ModelCard) -> dict[str, Any]:
    """The int8 card's ``validation`` section: the float32 figures are not this file's. The parity
    figures (quantization.parity) are its measured difference; its own test figures come from
    ``radreview evaluate`` on the int8 file."""
    source = (card.validation or {}).get("source", "")
    return {"source": "not measured on this int8 file: run radreview evaluate on it for its test figures "
                      "(quantization.parity gives its difference from float32 on the validation split)"
                      + (f"; the float32 file's were: {source}" if source else ""),
            "labels": {}}


def quantize_model_file(
    float_model: str | Path,
    data: str | Path | LabelledDataset,
    split_file: str | Path,
    out: str | Path,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    cache_dir: str | Path | None = None,
    keep_head_float: bool = True,
    method: str = "minmax",
    refit: str = "auto",
    gate: Gate = Gate(),
    stem_convs: int = STEM_CONVS,
    progress: Progress = None,
    is_cancelled: CancelCheck = None,
    **dataset_options: Any,
) -> tuple[ModelCard, dict[str, Any]]:
    """Quantise ``float_model`` (calibrated on its training split), gate it on the validation split,
    and write it to ``out``. Returns (the int8 card, report). Raises :class:`ParityError` (with the
    figures) when the int8 model does not answer like the float32 one; nothing is written then.

    ``gate``: the parity thresholds (default: AUC loss <= 0.005 for every label, same tiers on >= 99%
    of the images); the card records the gate that was passed.
    ``refit``: "auto" refits scope check, calibration and operating points on the int8 outputs when
    the float32 scope statistics do not hold for the int8 features; "always"/"never" force it.
    """
    import onnx

    if refit not in ("auto", "always", "never"):
        raise QuantizationError(f"refit must be auto, always or never, not {refit!r}")
    float_model, out = Path(float_model), Path(out)
    if float_model.resolve() == out.resolve():
        raise QuantizationError(f"{out}: the int8 model must not overwrite its float32 source")
    try:
        source = onnx.load(str(float_model))
    except Exception as exc:  # DecodeError, OSError: not a readable model file
        raise QuantizationError(f"{float_model}: not an ONNX model ({type(exc).__name__})") from exc
    card = card_from_onnx_model(source, float_model, verify_checksum=True)
    if card.precision != "float32":
        raise QuantizationError(f"{float_model}: the model is already {card.precision}; quantise its float32 file")
    cache = Path(cache_dir) if cache_dir else None
    started = time.perf_counter()
    stages = ["calibration images", "quantising", "float32 on validation", "int8 on validation"]

    def stage(k: int) -> Progress:
        return (lambda done, total: progress(k * 1000 + round(1000 * done / max(1, total)), 1000 * len(stages))
                ) if progress else None

    loaded = _load_data(card, data, split_file, calibration_images, cache, is_cancelled, **dataset_options)
    for problem in loaded.problems:
        log.warning("skipped %s", problem)
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = Path(tmp) / "int8.onnx"
        excluded = quantize_graph(float_model, int8_path, loaded.calibration, card, keep_head_float, method,
                                  is_cancelled, stage(1), stem_convs)
        quantization = {
            "method": f"onnxruntime static QDQ, per-channel int8 weights, uint8 activations, {method} calibration",
            "float32_sha256": card.weights_sha256,
            "float32_file": float_model.name,
            "calibration_set": {"split": "train", "count": len(loaded.calibration), "seed": CALIBRATION_SEED,
                                "split_file": Path(split_file).name},
            "gate": {"auc_tolerance": gate.auc_tolerance, "tier_agreement": gate.tier_agreement},
            "kept_float": excluded,
        }
        # the float32 file's test figures were never measured on the int8 one: say so instead
        int8_card = replace(card, precision="int8", quantization=quantization, validation=int8_validation_note(card))
        write_card(int8_path, int8_card)
        float_results = engine_results(float_model, loaded.val, cancel=is_cancelled, progress=stage(2))
        int8_results = engine_results(int8_path, loaded.val, cancel=is_cancelled, progress=stage(3))
        parity = compare(card, loaded.val_targets, float_results, int8_results, gate)
        refit_report: dict[str, Any] | None = None
        scope_moved = (parity.scope_rejected is not None
                       and abs(parity.scope_rejected[1] - parity.scope_rejected[0]) > SCOPE_RATE_TOLERANCE)
        if refit == "always" or (refit == "auto" and scope_moved):
            if FEATURES_OUTPUT not in {o.name for o in onnx.load(str(int8_path)).graph.output}:
                raise QuantizationError(f"{float_model}: cannot refit without a {FEATURES_OUTPUT!r} output "
                                        "(run radreview calibrate on the float32 model first)")
            log.info("refitting the card on the int8 model's outputs (scope rejections %s)", parity.scope_rejected)
            refitted, refit_report = _refit_on_int8(int8_card, int8_path, loaded, cache, is_cancelled, None)
            write_card(int8_path, replace(refitted, quantization={**quantization, "refitted_on_int8": True}))
            int8_results = engine_results(int8_path, loaded.val, cancel=is_cancelled)
            parity = compare(card, loaded.val_targets, float_results, int8_results, gate)
        report = {"parity": parity, "kept_float": excluded, "refit": refit_report,
                  "unreadable": loaded.problems, "seconds": round(time.perf_counter() - started, 1)}
        if not parity.passed:
            raise ParityError(f"{float_model}: the int8 model does not answer like the float32 one, so it was not "
                              "written:\n  " + "\n  ".join(parity.failures) + "\n" + "\n".join(parity.lines()), parity)
        final = card_from_onnx_model(onnx.load(str(int8_path)), out, verify_checksum=True)
        final = write_card(int8_path, replace(final, quantization={**final.quantization, "parity": parity.to_dict()}))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(int8_path.read_bytes())
    if progress:
        progress(1000 * len(stages), 1000 * len(stages))
    return final, report


__all__ = ["ParityError", "QuantizationError", "CalibrationError", "ModelCardError", "quantize_model_file"]
