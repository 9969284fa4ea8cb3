"""Running the models: sessions made once, batching, and the chain region -> other labels.

The chain follows the region-labelling paper: the ``region`` labels run first on every image;
every other label runs only on images showing a region it applies to
(``LabelCard.applies_to_regions``; empty means every region). A model whose labels all belong to
tasks that do not apply to an image is not run on it. When one file holds several tasks (one
backbone, several heads) a single forward pass answers them all.
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
from radreview.inference.sessions import SessionInfo, create_session

log = logging.getLogger(__name__)
REGION_TASK = "region"
CPU_BATCH = 2
ACCELERATOR_BATCH = 16


@dataclass
class LabelResult:
    model: str
    version: str
    label: str
    display_name: str
    task: str
    probability: float
    logit: float
    tier: str  # "likely" / "possible" / "below"; "" when the card gives no operating points
    possible: float | None  # the label's thresholds, for display and CAM gating
    likely: float | None
    cam: np.ndarray | None  # [h, w] local logits over the model canvas
    geometry: LetterboxGeometry | None
    # "logit": local logits on an absolute scale (in-graph CAM); "relative": a map already
    # scaled 0..1 per image (the torch back end's Grad-CAM family), which has no absolute scale
    cam_units: str = "logit"

    @property
    def key(self) -> str:
        return f"{self.model}/{self.label}"


@dataclass
class ImageResult:
    labels: list[LabelResult] = field(default_factory=list)
    regions: tuple[str, ...] = ()  # regions the chain found ("" tuple: no region model)
    providers: tuple[str, ...] = ()

    def get(self, label: str, model: str | None = None) -> LabelResult | None:
        return next((r for r in self.labels if r.label == label and (model is None or r.model == model)), None)


@dataclass
class Prepared:
    """One image preprocessed for every distinct input spec of the loaded models."""

    tensors: dict[tuple, np.ndarray]
    geometries: dict[tuple, LetterboxGeometry]
    shape: tuple[int, int]


class LoadedModel:
    """A checked model file with its session (created once, reused for every batch)."""

    def __init__(self, model_file: ModelFile, provider: str = "auto", threads: int | None = None) -> None:
        self.file = model_file
        self.card: ModelCard = model_file.card
        self.session, self.info = create_session(model_file.path, provider, threads)
        self.key = preprocessing_key(self.card.input)
        self.is_region = any(label.task == REGION_TASK for label in self.card.labels)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, cam = self.session.run(["logits", "cam"], {"image": batch})
        return logits, cam

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Sigmoid per label, or softmax over the labels of the same task."""
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
        # Measured on a 2-core CPU (bench_predict): a convnet's cost per image grows with the
        # batch beyond 2 (cache), while accelerators want large batches.
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
        region_models = [m for m in self.models if m.is_region]
        regions: list[tuple[str, ...] | None] = [None] * len(items)
        for model in region_models:
            probs = self._run_model(model, items, range(len(items)), results, None, with_cam, cancel)
            region_labels = model.card.labels_of(REGION_TASK)
            for i in range(len(items)):
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
            batch = np.stack([items[i].tensors[model.key] for i in chunk])
            logits, cam = model.run(batch)
            probs = model.probabilities(logits)
            local = local_logits(cam, logits) if with_cam else None
            for row, i in enumerate(chunk):
                probs_by_item[i] = probs[row]
                for label in model.card.labels:
                    if regions is not None and not applies(label, regions[i]):
                        continue
                    results[i].labels.append(self._label_result(model, label, probs[row], logits[row],
                                                                None if local is None else local[row],
                                                                items[i].geometries[model.key]))
        return probs_by_item

    @staticmethod
    def _label_result(model, label, probs, logits, local, geometry) -> LabelResult:
        p = float(probs[label.index])
        ops = label.operating_points
        return LabelResult(
            model=model.card.name,
            version=model.card.version,
            label=label.name,
            display_name=label.display_name or label.name,
            task=label.task,
            probability=p,
            logit=float(logits[label.index]),
            tier=ops.tier(p) if ops else "",
            possible=ops.possible if ops else None,
            likely=ops.likely if ops else None,
            cam=None if local is None else np.ascontiguousarray(local[label.index]),
            geometry=geometry,
        )

    def predict(self, display: np.ndarray, with_cam: bool = True) -> ImageResult:
        """One displayed image through the whole chain (the viewer's call)."""
        return self.infer([self.prepare(display)], with_cam)[0]
