"""Checkpoints: the weights plus everything needed to rebuild the model and write its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from radreview.training.backbones import build_backbone
from radreview.training.model import MultiLabelClassifier

CHECKPOINT_FORMAT = "radreview.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file."""


def save_checkpoint(path: Path, model: MultiLabelClassifier, meta: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "state_dict": state, "meta": meta}, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        # TorchVersion: early checkpoints stored torch.__version__ unconverted
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, pickled objects
        raise CheckpointError(f"{path}: not a radreview checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a radreview checkpoint (format {raw.get('format') if isinstance(raw, dict) else '?'!r})")
    return raw


def load_model(path: str | Path) -> tuple[MultiLabelClassifier, dict[str, Any]]:
    """The trained model in eval mode and its metadata."""
    raw = read_checkpoint(path)
    meta = raw["meta"]
    backbone = build_backbone(meta["backbone"], architecture_only=True)
    model = MultiLabelClassifier(backbone, len(meta["labels"]), meta.get("config", {}).get("dropout", 0.0))
    try:
        model.load_state_dict(raw["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the {meta['backbone']} model ({exc})") from exc
    model.eval()
    return model, meta
