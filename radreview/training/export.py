"""Checkpoint -> radreview ``.onnx`` model file with its model card.

The graph has input ``image`` float32 [N, 3, H, W] (dynamic N) and outputs ``logits`` [N, K],
``cam`` [N, K, h, w] (the class activation maps computed in the graph from the last feature map
and the linear head's weights, so the viewer needs neither torch nor gradients), ``features``
[N, C] (the pooled features) and ``lower_features`` [N, 2C'] (per-channel mean and standard
deviation of the frozen lower stages' feature map), the two inputs of the scope check. The card
carries what training fitted on the validation split: per-label calibration, operating points on
calibrated probabilities with their basis, the scope check's statistics and the heatmap colour span.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from radreview import RESEARCH_USE_NOTICE
from radreview.inference.card import Calibration, InputCard, LabelCard, ModelCard, OperatingPoints, write_card
from radreview.training.card_sections import DISPLAY_NAMES, validation_section
from radreview.training.checkpoint import load_model
from radreview.training.model import CamExportWrapper, scope_stage_for

log = logging.getLogger(__name__)
OPSET = 17


def export_onnx_graph(model: torch.nn.Module, height: int, width: int, out_path: Path,
                      scope_stage: int | None = None) -> None:
    """Write the bare graph (no card yet), opset 17, dynamic batch; with ``scope_stage`` it also
    outputs ``lower_features`` (statistics of that stage's input, for the scope check)."""
    wrapper = CamExportWrapper(model, scope_stage).eval()
    names = ["logits", "cam", "features"] + (["lower_features"] if scope_stage else [])
    dummy = torch.zeros(1, 3, height, width)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # tracing warns that the SAME-padding arithmetic becomes constants: intended (fixed H, W)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        # torch >= 2.9 calls the TorchScript exporter "legacy"; it is still the compact, dependable one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(out_path),
            input_names=["image"],
            output_names=names,
            dynamic_axes={"image": {0: "N"}, **{name: {0: "N"} for name in names}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and gives a compact graph
        )


def card_from_checkpoint(meta: dict[str, Any], validation: dict[str, Any] | None = None) -> ModelCard:
    """The model card from a checkpoint's metadata (and ``radreview evaluate``'s metrics.json)."""
    points = meta.get("operating_points", {})
    calibrations = meta.get("calibration", {})
    labels = []
    for index, label in enumerate(meta["labels"]):
        ops = points.get(label["name"])
        cal = calibrations.get(label["name"])
        labels.append(
            LabelCard(
                name=label["name"], task=label["task"], index=index, activation=label["activation"],
                operating_points=OperatingPoints(**ops) if ops else None,
                display_name=DISPLAY_NAMES.get(label["name"], label["name"].replace("_", " ").capitalize()),
                applies_to_regions=(),
                calibration=Calibration(**cal) if cal else None,
            )
        )
    inp = meta["input"]
    data = meta.get("training_data", {})
    tasks = ", ".join(dict.fromkeys(label["task"] for label in meta["labels"]))
    return ModelCard(
        name=meta["name"],
        version=meta["version"],
        labels=tuple(labels),
        input=InputCard(height=inp["height"], width=inp["width"], mean=tuple(inp["mean"]), std=tuple(inp["std"])),
        architecture=f"{meta['backbone']} + global average pooling + linear head ({len(labels)} outputs); CAM in graph",
        description=f"Classifier for {tasks} on radiographs. {RESEARCH_USE_NOTICE}",
        training_data={
            "source": data.get("source", ""), "licence": data.get("licence", ""),
            "attribution": data.get("attribution", ""), "counts": data.get("counts", {}),
            "positives": data.get("positives", {}), "split_file": Path(data.get("split_file", "")).name,
            "deduplication": data.get("deduplication", ""),
        },
        validation=validation_section(meta, validation),
        training_run=meta.get("training_run", {}),
        licence=(f"{data['licence']} (derived from the training data; keep the attribution)" if data.get("licence") else ""),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        scope=meta.get("scope", {}),
        cam=meta.get("cam", {}),
    )


def export_checkpoint(
    checkpoint: str | Path, out_path: str | Path, validation_json: str | Path | None = None
) -> ModelCard:
    """Export ``checkpoint`` to ``out_path`` with its card; returns the card written."""
    model, meta = load_model(checkpoint)
    model = model.to(memory_format=torch.contiguous_format)
    validation = json.loads(Path(validation_json).read_text()) if validation_json else None
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "model.onnx"
        stage = scope_stage_for(len(model.backbone.stages), meta.get("config", {}).get("trainable_stages"))
        export_onnx_graph(model, meta["input"]["height"], meta["input"]["width"], bare, stage)
        card = card_from_checkpoint(meta, validation)
        card = write_card(bare, card)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(bare.read_bytes())
    log.info("wrote %s (%d labels)", out_path, len(card.labels))
    return card


# -- int8 ---------------------------------------------------------------------------------------
def int8_path(out_path: str | Path) -> Path:
    """Where ``export --int8`` writes the int8 file next to ``MODEL.onnx``: ``MODEL_int8.onnx``."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}_int8{out_path.suffix or '.onnx'}")


def training_dataset(meta: dict[str, Any], data: str | Path | None = None):
    """The run's labelled dataset, read as ``radreview train`` read it (``data`` overrides its path)."""
    from radreview.training.datasets import load_dataset

    config = meta.get("config", {})
    source = data or config.get("data") or meta.get("training_data", {}).get("source")
    if not source:
        raise ValueError("the checkpoint does not name its training data: pass --data")
    return load_dataset(source, config.get("task", "abnormality"), config.get("kind"), config.get("positive"),
                        config.get("label_columns"), config.get("group_column"), config.get("path_column", "path"),
                        config.get("image_root"), tuple(config.get("fracatlas_tasks", ("region", "fracture", "hardware"))))


def export_checkpoint_int8(
    checkpoint: str | Path, out_path: str | Path, validation_json: str | Path | None = None,
    data: str | Path | None = None, split_file: str | Path | None = None, progress=None, is_cancelled=None,
    **quantize_options: Any,
) -> tuple[ModelCard, ModelCard, dict[str, Any]]:
    """:func:`export_checkpoint`, then its int8 twin (:func:`radreview.training.quantize.quantize_model_file`,
    calibrated on the run's training split, gated on its validation split) at :func:`int8_path`.

    Returns (float32 card, int8 card, quantisation report). The float32 file is written even
    when the int8 one is refused (:class:`~radreview.training.quantize.ParityError`).
    """
    from radreview.training.checkpoint import read_checkpoint
    from radreview.training.quantize import quantize_model_file

    card = export_checkpoint(checkpoint, out_path, validation_json)
    meta = read_checkpoint(checkpoint)["meta"]
    split = split_file or meta.get("training_data", {}).get("split_file")
    if not split or not Path(split).is_file():
        raise ValueError(f"the run's split file {split!r} is not there: pass --split-file")
    int8_card, report = quantize_model_file(out_path, training_dataset(meta, data), split, int8_path(out_path),
                                            progress=progress, is_cancelled=is_cancelled, **quantize_options)
    return card, int8_card, report
