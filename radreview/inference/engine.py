"""Running the models: sessions made once, batching, and the chain region -> other labels.

The chain follows the region-labelling paper: the ``region`` labels run first on every image;
every other label runs only on images showing a region it applies to
(``LabelCard.applies_to_regions``; empty means every region). A model whose labels all belong to
tasks that do not apply to an image is not run on it. When one file holds several tasks (one
backbone, several heads) a single forward pass answers them all.

Every answer is made honest here, once, for every place that shows it (viewer, reading window,
``predict``, DICOM results): logits are calibrated as the card says before they become
probabilities and tiers; each model's scope check gives a :class:`ScopeVerdict` per image, and
the labels of a model that calls an image out of its scope keep their probabilities but get the
tier ``out_of_scope``; a label whose operating points rest on too few validation cases gets no
tier. Region labels of an out-of-scope image do not steer the chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from radreview.inference.cam import local_logits
from radreview.inference.card import LabelCard, ModelCard
from radreview.inference.preprocess import LetterboxGeometry, prepare, preprocessing_key
from radreview.inference.registry import ModelFile, ModelProblem
from radreview.inference.scope import ScopeSet, ScopeVerdict
from radreview.inference.sessions import SessionInfo, create_session

log = logging.getLogger(__name__)
REGION_TASK = "region"
# Measured (tests/benchmarks/bench_predict.py, docs/performance.md): on the CPU a convnet's cost per
# image grows with the batch (the activations of one image fit the cache, of several do not), for
# int8 and float32 alike; accelerators want large batches.
CPU_BATCH = 1
ACCELERATOR_BATCH = 16


@dataclass
class LabelResult:
    model: str
    version: str
    label: str
    display_name: str
    task: str
    probability: float  # calibrated when the card has a calibration
    logit: float  # the calibrated logit (sigmoid of it is ``probability``)
    # "likely" / "possible" / "below"; "out_of_scope" when the model's scope check rejects the
    # image; "" when the card gives no (or no reliable) operating points
    tier: str
    possible: float | None  # the label's thresholds (calibrated scale), for display and CAM gating
    likely: float | None
    cam: np.ndarray | None  # [h, w] local logits over the model canvas, calibrated like ``logit``
    geometry: LetterboxGeometry | None
    # "logit": local logits on an absolute scale (in-graph CAM); "relative": a map already
    # scaled 0..1 per image (the torch back end's Grad-CAM family), which has no absolute scale
    cam_units: str = "logit"
    in_scope: bool | None = None  # the model's scope verdict; None: the model has no scope check
    tier_in_scope: str = ""  # the tier the operating points give, shown only on request when out of scope
    tier_note: str = ""  # why there is no tier (e.g. too few validation positives)
    raw_probability: float | None = None  # before calibration
    cam_span: float | None = None  # the card's default colour-map span (logits), when it gives one

    @property
    def key(self) -> str:
        return f"{self.model}/{self.label}"


@dataclass
class ImageResult:
    labels: list[LabelResult] = field(default_factory=list)
    regions: tuple[str, ...] = ()  # regions the chain found ("" tuple: no region model)
    providers: tuple[str, ...] = ()
    scopes: dict[str, ScopeVerdict] = field(default_factory=dict)  # per model name
    # Models that failed on this image, and why (the other models' answers stand).
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, label: str, model: str | None = None) -> LabelResult | None:
        return next((r for r in self.labels if r.label == label and (model is None or r.model == model)), None)

    @property
    def in_scope(self) -> bool | None:
        """False when any model that answered calls the image out of scope; None when none can tell."""
        verdicts = [v.in_scope for v in self.scopes.values() if v.in_scope is not None]
        return None if not verdicts else all(verdicts)


@dataclass
class Prepared:
    """One image preprocessed for every distinct input spec of the loaded models."""

    tensors: dict[tuple, np.ndarray]
    geometries: dict[tuple, LetterboxGeometry]
    shape: tuple[int, int]


class ModelOutputError(RuntimeError):
    """A model returned outputs its card does not describe (wrong shape, NaN)."""


class LoadedModel:
    """A checked model file with its session (created once, reused for every batch)."""

    def __init__(self, model_file: ModelFile, provider: str = "auto", threads: int | None = None) -> None:
        self.file = model_file
        self.card: ModelCard = model_file.card
        self.session, self.info = create_session(model_file.path, provider, threads)
        self.key = preprocessing_key(self.card.input)
        self.is_region = any(label.task == REGION_TASK for label in self.card.labels)
        self.scope, self.scope_note = self._scope_check()
        self.outputs = ["logits", "cam"] + (list(self.scope.outputs) if self.scope is not None else [])
        n = len(self.card.labels)
        self._scale = np.ones(n, np.float32)
        self._offset = np.zeros(n, np.float32)
        for label in self.card.labels:
            if label.calibration is not None:
                self._scale[label.index] = label.calibration.scale
                self._offset[label.index] = label.calibration.offset
        self.calibrated = any(label.calibration is not None for label in self.card.labels)

    def _scope_check(self) -> tuple[ScopeSet | None, str]:
        scope = self.card.scope_check
        if scope is None:
            return None, self.card.scope_note
        outputs = {o.name: o for o in self.session.get_outputs()}
        for check in scope.checks:
            note = ""
            if check.output not in outputs:
                note = f"the graph has no output {check.output!r} that the scope statistics need"
            else:
                shape = outputs[check.output].shape
                if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != check.dim):
                    note = f"graph output {check.output!r} has shape {shape}, the scope statistics expect [N, {check.dim}]"
            if note:  # a partial check would pass images the model cannot vouch for: none at all
                log.warning("%s: %s; running without a scope check", self.file.path, note)
                return None, note
        return scope, ""

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None]:
        """(raw logits [N, K], cam [N, K, h, w], the scope check's features by output or None),
        their shapes checked against the card: a graph can say [N, K] and return something else."""
        values = self.session.run(self.outputs, {"image": batch})
        logits, cam = np.asarray(values[0]), np.asarray(values[1])
        features = {name: np.asarray(v) for name, v in zip(self.outputs[2:], values[2:])} if len(values) > 2 else None
        n, k = batch.shape[0], len(self.card.labels)
        if logits.shape != (n, k):
            raise ModelOutputError(f"returned logits of shape {list(logits.shape)}, but its card lists {k} labels "
                                   f"(expected [{n}, {k}])")
        if cam.ndim != 4 or cam.shape[:2] != (n, k):
            raise ModelOutputError(f"returned heatmaps of shape {list(cam.shape)} (expected [{n}, {k}, h, w])")
        for name, value in (features or {}).items():
            if value.ndim != 2 or value.shape[0] != n:
                raise ModelOutputError(f"returned scope features {name!r} of shape {list(value.shape)} (expected [{n}, D])")
        return logits, cam, features

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Raw logits (or local logits [..., K, h, w] with ``axis``) -> the card's calibrated logits."""
        if not self.calibrated:
            return logits
        return logits * self._scale + self._offset

    def calibrate_maps(self, local: np.ndarray) -> np.ndarray:
        """Local logits [N, K, h, w] on the calibrated scale (the same affine map as the logits)."""
        if not self.calibrated:
            return local
        return local * self._scale[None, :, None, None] + self._offset[None, :, None, None]

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Sigmoid per label, or softmax over the labels of the same task (of calibrated logits)."""
        probs = np.empty_like(logits)
        for task in self.card.tasks:
            labels = self.card.labels_of(task)
            cols = [label.index for label in labels]
            if labels[0].activation == "softmax":
                z = logits[:, cols] - logits[:, cols].max(axis=1, keepdims=True)
                e = np.exp(z)
                probs[:, cols] = e / e.sum(axis=1, keepdims=True)
            else:
                probs[:, cols] = 1.0 / (1.0 + np.exp(-logits[:, cols]))
        return probs

    def verdicts(self, features: dict[str, np.ndarray] | None, n: int) -> list[ScopeVerdict]:
        name = self.card.name
        if self.scope is None or features is None:
            return [ScopeVerdict(name, "no_check", note=self.scope_note)] * n
        distances, thresholds = self.scope.judge(features)
        return [ScopeVerdict(name, "in_scope" if d <= t else "out_of_scope", float(d), float(t))
                for d, t in zip(distances, thresholds)]


def region_threshold(label: LabelCard) -> float:
    """A region counts as shown at its Youden point (balanced), else 0.5. The "possible" point of
    a near-perfect region model is so low (e.g. 0.004) that every region would count."""
    ops = label.operating_points
    if ops is not None and ops.youden is not None:
        return ops.youden
    return 0.5


def applies(label: LabelCard, regions: tuple[str, ...] | None) -> bool:
    """Whether a label is shown for an image whose chain found ``regions`` (None: unknown)."""
    if label.task == REGION_TASK or not label.applies_to_regions or regions is None:
        return True
    return bool(set(label.applies_to_regions) & set(regions))


class Engine:
    """All usable models, loaded once. Thread-safe for :meth:`infer` (onnxruntime sessions are)."""

    def __init__(
        self,
        models: Sequence[ModelFile],
        provider: str = "auto",
        threads: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.models: list[LoadedModel] = []
        self.problems: list[ModelProblem] = []
        for model_file in models:
            try:
                self.models.append(LoadedModel(model_file, provider, threads))
            except Exception as exc:  # ProviderError, or onnxruntime rejecting the graph
                self.problems.append(ModelProblem(model_file.path, f"cannot run the model ({exc})"))
        self.specs = {m.key: m.card.input for m in self.models}
        on_cpu = all(m.info.provider == "cpu" for m in self.models)
        self.batch_size = max(1, batch_size) if batch_size else (CPU_BATCH if on_cpu else ACCELERATOR_BATCH)

    # -- what ran ------------------------------------------------------------------------
    @property
    def sessions(self) -> list[SessionInfo]:
        return [m.info for m in self.models]

    @property
    def provider(self) -> str:
        """The provider(s) that run the models, e.g. "cpu" or "cuda"."""
        return "+".join(dict.fromkeys(m.info.provider for m in self.models)) or "none"

    @property
    def provider_notes(self) -> list[str]:
        return list(dict.fromkeys(m.info.note for m in self.models if m.info.note))

    @property
    def versions(self) -> dict[str, str]:
        return {m.card.name: m.card.version for m in self.models}

    # -- work ------------------------------------------------------------------------------
    def prepare(self, display: np.ndarray) -> Prepared:
        """Preprocess one displayed image for every input spec (raises ImageInputError)."""
        tensors, geometries = {}, {}
        for key, spec in self.specs.items():
            tensors[key], geometries[key] = prepare(display, spec)
        return Prepared(tensors, geometries, tuple(display.shape[:2]))  # type: ignore[arg-type]

    def infer(
        self, items: Sequence[Prepared], with_cam: bool = True, cancel: Callable[[], bool] | None = None
    ) -> list[ImageResult]:
        """Run the chain over preprocessed images; one :class:`ImageResult` per item."""
        results = [ImageResult(providers=tuple(dict.fromkeys(m.info.provider for m in self.models))) for _ in items]
        for result in results:  # models the chain does not run on an image give no verdict
            result.scopes = {}
        region_models = [m for m in self.models if m.is_region]
        regions: list[tuple[str, ...] | None] = [None] * len(items)
        for model in region_models:
            probs = self._run_model(model, items, range(len(items)), results, None, with_cam, cancel)
            region_labels = model.card.labels_of(REGION_TASK)
            for i in range(len(items)):
                if i not in probs:
                    continue  # the model failed on this image: its regions are unknown (every label applies)
                if results[i].scopes[model.card.name].in_scope is False:
                    continue  # an image outside the region model's scope has no region it can name
                found = [lab.name for lab in region_labels if probs[i][lab.index] >= region_threshold(lab)]
                if not found:  # the chain needs a region: take the most probable one
                    found = [max(region_labels, key=lambda lab: probs[i][lab.index]).name]
                regions[i] = tuple(dict.fromkeys((*(regions[i] or ()), *found)))
        for model in self.models:
            if model.is_region:
                continue
            wanted = [i for i in range(len(items)) if any(applies(lab, regions[i]) for lab in model.card.labels)]
            if wanted:
                self._run_model(model, items, wanted, results, regions, with_cam, cancel)
        cards = {(m.card.name, lab.name): lab for m in region_models for lab in m.card.labels}
        for i, result in enumerate(results):
            result.regions = regions[i] or ()
            # a multi-task file answered every label in one pass; keep those that apply
            result.labels = [r for r in result.labels
                             if (r.model, r.label) not in cards or applies(cards[(r.model, r.label)], regions[i])]
        return results

    def _run_model(self, model, items, indices, results, regions, with_cam, cancel) -> dict[int, np.ndarray]:
        indices = list(indices)
        probs_by_item: dict[int, np.ndarray] = {}
        for start in range(0, len(indices), self.batch_size):
            if cancel is not None and cancel():
                raise InterruptedError("inference cancelled")
            chunk = indices[start : start + self.batch_size]
            try:  # everything that can fail on this batch, before any result is recorded
                raw_logits, cam, features = model.run(np.stack([items[i].tensors[model.key] for i in chunk]))
                logits = model.calibrate(raw_logits)
                probs = model.probabilities(logits)
                raw_probs = model.probabilities(raw_logits) if model.calibrated else probs
                local = model.calibrate_maps(local_logits(cam, raw_logits)) if with_cam else None
                verdicts = model.verdicts(features, len(chunk))
            except Exception as exc:  # noqa: BLE001 - one model's failure must not take the others with it
                reason = f"model {model.card.name} {model.card.version} failed: {exc}"
                log.warning("%s", reason)
                for i in chunk:
                    results[i].errors[model.card.name] = reason
                continue
            finite = np.isfinite(raw_logits).all(axis=1)
            for row, i in enumerate(chunk):
                if not finite[row]:
                    results[i].errors[model.card.name] = (f"model {model.card.name} {model.card.version} returned a "
                                                          "logit that is not a number (NaN or infinite)")
            for row, i in enumerate(chunk):
                if not finite[row]:
                    continue
                probs_by_item[i] = probs[row]
                results[i].scopes[model.card.name] = verdicts[row]
                for label in model.card.labels:
                    if regions is not None and not applies(label, regions[i]):
                        continue
                    results[i].labels.append(self._label_result(
                        model, label, probs[row], logits[row], raw_probs[row],
                        None if local is None else local[row], items[i].geometries[model.key], verdicts[row]))
        return probs_by_item

    @staticmethod
    def _label_result(model, label, probs, logits, raw_probs, local, geometry, verdict: ScopeVerdict) -> LabelResult:
        p = float(probs[label.index])
        ops = label.operating_points
        tier, note = "", ""
        if ops is not None and ops.reliable:
            tier = ops.tier(p)
        elif ops is not None:
            note = ops.unreliable_reason
        cam_defaults = model.card.cam if isinstance(model.card.cam, dict) else {}
        per_label = cam_defaults.get("label_span_logits")
        span = per_label.get(label.name) if isinstance(per_label, dict) else None
        span = span if isinstance(span, (int, float)) and span > 0 else cam_defaults.get("span_logits")
        return LabelResult(
            model=model.card.name,
            version=model.card.version,
            label=label.name,
            display_name=label.display_name or label.name,
            task=label.task,
            probability=p,
            logit=float(logits[label.index]),
            tier="out_of_scope" if verdict.in_scope is False else tier,
            possible=ops.possible if ops else None,
            likely=ops.likely if ops else None,
            cam=None if local is None else np.ascontiguousarray(local[label.index]),
            geometry=geometry,
            in_scope=verdict.in_scope,
            tier_in_scope=tier,
            tier_note=note,
            raw_probability=float(raw_probs[label.index]),
            cam_span=float(span) if isinstance(span, (int, float)) and span > 0 else None,
        )

    def predict(self, display: np.ndarray, with_cam: bool = True) -> ImageResult:
        """One displayed image through the whole chain (the viewer's call)."""
        return self.infer([self.prepare(display)], with_cam)[0]
