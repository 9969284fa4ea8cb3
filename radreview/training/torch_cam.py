"""The viewer's optional torch back end: a ``.pt`` checkpoint with the grad-cam package's methods.

Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al. 2018), Score-CAM (Wang et al.
2020) and Eigen-CAM (Muhammad & Yeasin 2020) on the last backbone stage, through
``pytorch_grad_cam``. It answers with the same :class:`~radreview.inference.engine.ImageResult`
as the ONNX engine, so the AI panel shows it the same way, with one difference it must respect:
these maps come min-max scaled per image by the package (``cam_units = "relative"``), so they
have no absolute scale and the panel says so. Imported lazily, only when a user picks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from radreview.inference.engine import REGION_TASK, ImageResult, LabelResult, applies, region_threshold
from radreview.inference.preprocess import prepare
from radreview.inference.sessions import SessionInfo
from radreview.training.checkpoint import load_model
from radreview.training.export import card_from_checkpoint

CAM_METHODS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM", "eigencam": "Eigen-CAM"}


def _cam_class(method: str):
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM, "eigencam": EigenCAM}
    if method not in classes:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(classes)}")
    return classes[method]


@dataclass
class _TorchModel:
    """What the panel and the controller read from a loaded model (like the ONNX LoadedModel)."""

    card: object
    info: SessionInfo
    path: Path


class _Logits(torch.nn.Module):
    """The classifier as grad-cam expects it: image -> logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class TorchCamEngine:
    """A checkpoint and one CAM method; ``predict(display)`` like :class:`Engine`."""

    def __init__(self, checkpoint: str | Path, method: str = "gradcam", device: str | None = None) -> None:
        self.path = Path(checkpoint)
        model, meta = load_model(self.path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.card = card_from_checkpoint(meta)
        self.method = method
        self._cam = _cam_class(method)(model=_Logits(self.model), target_layers=[self.model.backbone.stages[-1]])
        provider = f"torch-{self.device.type}"
        self.models = [_TorchModel(self.card, SessionInfo(provider=provider, requested=provider), self.path)]
        self.problems: list = []
        self.provider = provider
        self.provider_notes: list[str] = []

    @property
    def signature(self) -> tuple[str, ...]:
        return (f"{self.card.name} {self.card.version} {self.path} {self.method}",)

    @property
    def method_name(self) -> str:
        return CAM_METHODS[self.method]

    def predict(self, display: np.ndarray, with_cam: bool = True) -> ImageResult:
        tensor, geometry = prepare(display, self.card.input)
        x = torch.from_numpy(tensor)[None].to(self.device)
        with torch.no_grad():
            logits = self.model(x)[0].cpu().numpy()
        probs = self._probabilities(logits)
        regions = self._regions(probs)
        result = ImageResult(regions=regions or (), providers=(self.provider,))
        for label in self.card.labels:
            if not applies(label, regions):
                continue
            cam = None
            if with_cam:
                from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

                cam = self._cam(input_tensor=x, targets=[ClassifierOutputTarget(label.index)])[0].astype(np.float32)
            ops = label.operating_points
            p = float(probs[label.index])
            result.labels.append(LabelResult(
                model=self.card.name, version=self.card.version, label=label.name,
                display_name=label.display_name or label.name, task=label.task, probability=p,
                logit=float(logits[label.index]), tier=ops.tier(p) if ops else "",
                possible=ops.possible if ops else None, likely=ops.likely if ops else None,
                cam=cam, geometry=geometry, cam_units="relative",
            ))
        return result

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        probs = 1.0 / (1.0 + np.exp(-logits))
        for task in self.card.tasks:
            labels = self.card.labels_of(task)
            if labels[0].activation == "softmax":
                cols = [label.index for label in labels]
                e = np.exp(logits[cols] - logits[cols].max())
                probs[cols] = e / e.sum()
        return probs

    def _regions(self, probs: np.ndarray) -> tuple[str, ...] | None:
        region_labels = self.card.labels_of(REGION_TASK)
        if not region_labels:
            return None
        found = [lab.name for lab in region_labels if probs[lab.index] >= region_threshold(lab)]
        return tuple(found) or (max(region_labels, key=lambda lab: probs[lab.index]).name,)
