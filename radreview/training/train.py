"""Transfer learning: the plain training function behind ``radreview train`` and the GUI.

:func:`train_classifier` loads a labelled dataset, deduplicates and splits it (or reuses a saved
split), decodes every image once, fine-tunes a backbone with one linear head for all labels,
stops early on the validation macro-AUC, chooses operating points on the validation split and
writes a checkpoint that :mod:`radreview.training.export` turns into a model file.

For the CPU there is a fast path (``cache_lower``): the frozen lower stages run once per image
(and per static augmentation copy) and only the top stages are trained on their cached output.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from radreview.inference.scope import scope_outputs_among
from radreview.machine import cpu_name
from radreview.training.augment import AugmentConfig, augment_batch, jpeg_recompress, to_model_input
from radreview.training.backbones import build_backbone
from radreview.training.checkpoint import save_checkpoint
from radreview.training.datasets import LabelledDataset, LabelSpec, Sample, TaskKind, load_dataset
from radreview.training.image_cache import Cancelled, load_letterboxed
from radreview.training.model import MultiLabelClassifier, freeze_lower_stages, scope_stage_for, set_train_mode
from radreview.training.splits import prepare_split
from radreview.training.scoring import choose_operating_points, label_probabilities, per_label_auc

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None] | None
CancelCheck = Callable[[], bool] | None


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in the checkpoint so that the run can be repeated."""

    data: str
    out_dir: str
    name: str = "classifier"
    version: str = "1.0.0"
    # dataset
    task: str = "abnormality"
    kind: TaskKind | None = None
    positive: str | None = None
    label_columns: list[str] | None = None
    group_column: str | None = None
    path_column: str = "path"
    image_root: str | None = None
    fracatlas_tasks: tuple[str, ...] = ("region", "fracture", "hardware")
    split_file: str | None = None  # default: <out_dir>/split.csv, reused when present
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    max_images: int | None = None  # keep only the first N (deterministic) samples: tests, quick looks
    # model
    backbone: str = "efficientnet_lite0"
    weights: str | None = None
    from_scratch: bool = False
    image_size: int = 256
    trainable_stages: int | None = None  # None: all; 0: head only (--freeze-backbone)
    cache_lower: bool = False  # cache the frozen stages' output (needs trainable_stages)
    dropout: float = 0.2
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    head_lr_factor: float = 10.0
    weight_decay: float = 1e-4
    balance: str = "pos_weight"  # pos_weight | sampler | none
    patience: int = 3
    seed: int = 0
    static_augment: int = 1  # each training image N times per epoch (fixed copies when caching)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: str = "auto"
    max_steps: int | None = None  # stop each epoch after this many batches (tests)
    command: str = ""
    cache_dir: str | None = None  # decoded pixels; default <out_dir>/cache

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int
    val_auc: dict[str, float]
    history: list[dict[str, Any]]
    duration_s: float
    out_dir: Path


def _device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    return f"CPU {cpu_name()}, {torch.get_num_threads()} torch threads"


def _loss_fn(labels: tuple[LabelSpec, ...], targets: np.ndarray, balance: str, device: torch.device):
    """BCE for sigmoid labels (pos_weight = negatives/positives, capped at 20), cross-entropy
    for each softmax task's columns (inverse-frequency class weights)."""
    sigmoid_idx = [i for i, l in enumerate(labels) if l.activation == "sigmoid"]
    softmax_groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if label.activation == "softmax":
            softmax_groups.setdefault(label.task, []).append(i)
    pos = targets.sum(axis=0)
    neg = len(targets) - pos
    pos_weight = None
    if balance == "pos_weight" and sigmoid_idx:
        ratio = np.clip(neg[sigmoid_idx] / np.maximum(pos[sigmoid_idx], 1), 1.0, 20.0)
        pos_weight = torch.tensor(ratio, dtype=torch.float32, device=device)
    class_weights = {}
    for task, cols in softmax_groups.items():
        counts = np.maximum(pos[cols], 1)
        w = counts.sum() / (len(cols) * counts) if balance == "pos_weight" else np.ones(len(cols))
        class_weights[task] = torch.tensor(w, dtype=torch.float32, device=device)

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        if sigmoid_idx:
            total = total + F.binary_cross_entropy_with_logits(
                logits[:, sigmoid_idx], y[:, sigmoid_idx], pos_weight=pos_weight
            )
        for task, cols in softmax_groups.items():
            total = total + F.cross_entropy(logits[:, cols], y[:, cols].argmax(1), weight=class_weights[task])
        return total

    return loss


def _sampling_weights(targets: np.ndarray) -> np.ndarray:
    """Balanced sampling: each sample weighted by 1/frequency of its rarest label value."""
    pos_freq = targets.mean(axis=0).clip(1e-3, 1 - 1e-3)
    per_label = np.where(targets >= 0.5, 1 / pos_freq, 1 / (1 - pos_freq))
    return per_label.max(axis=1)


class _Log:
    """The per-epoch training log, rewritten as CSV and JSON after every epoch."""

    def __init__(self, out_dir: Path) -> None:
        self.rows: list[dict[str, Any]] = []
        self.csv_path = out_dir / "training_log.csv"
        self.json_path = out_dir / "training_log.json"

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(self.csv_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, keys)
            writer.writeheader()
            writer.writerows(self.rows)
        self.json_path.write_text(json.dumps(self.rows, indent=1))


def _batches(n: int, batch_size: int, generator: torch.Generator, weights: np.ndarray | None) -> list[torch.Tensor]:
    if weights is not None:
        order = torch.multinomial(torch.tensor(weights, dtype=torch.float64), n, replacement=True, generator=generator)
    else:
        order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


@torch.no_grad()
def predict_logits(
    model: MultiLabelClassifier,
    inputs: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    start_stage: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """Logits [N, K] for uint8 pixels [N, H, W] (start_stage 0) or cached features."""
    model.eval()
    out = []
    for i in range(0, len(inputs), batch_size):
        chunk = inputs[i : i + batch_size].to(device)
        if start_stage == 0:
            chunk = to_model_input(chunk.float().unsqueeze(1) / 255.0, mean, std)
        else:
            chunk = chunk.float()
        chunk = chunk.contiguous(memory_format=torch.channels_last)
        out.append(model(chunk, start_stage=start_stage).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.head.out_features), np.float32)


@torch.no_grad()
def _cache_features(
    model: MultiLabelClassifier,
    pixels: np.ndarray,
    stop: int,
    copies: int,
    config: TrainConfig,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    generator: torch.Generator,
    progress: Progress,
    is_cancelled: CancelCheck,
) -> torch.Tensor:
    """float16 [copies * N, C, h, w]: copy 0 unaugmented, the others randomly augmented."""
    model.eval()
    chunks = []
    total = copies * len(pixels)
    done = 0
    rng = np.random.default_rng(config.seed)
    for copy in range(copies):
        for i in range(0, len(pixels), 32):
            if is_cancelled and is_cancelled():
                raise Cancelled("cancelled while caching features")
            raw = pixels[i : i + 32] if copy == 0 else jpeg_recompress(pixels[i : i + 32], config.augment, rng)
            gray = torch.from_numpy(raw).to(device).float().unsqueeze(1) / 255.0
            if copy > 0:
                gray = augment_batch(gray, config.augment, generator)
            x = to_model_input(gray, mean, std).contiguous(memory_format=torch.channels_last)
            chunks.append(model.backbone(x, stop=stop).half().cpu())
            done += len(gray)
            if progress:
                progress(done, total)
    return torch.cat(chunks)


def train_classifier(config: TrainConfig, progress: Progress = None, is_cancelled: CancelCheck = None) -> TrainResult:
    """Train as ``config`` says; returns where the best checkpoint is and the validation AUCs."""
    started = time.time()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = _device(config.device)
    log.info("training on %s", hardware_description(device))

    dataset = load_dataset(
        config.data, config.task, config.kind, config.positive, config.label_columns, config.group_column,
        config.path_column, config.image_root, tuple(config.fracatlas_tasks),
    )
    if config.max_images:
        dataset = _first_samples(dataset, config.max_images)
    for problem in dataset.problems:
        log.warning("%s", problem)
    split_file = Path(config.split_file) if config.split_file else out_dir / "split.csv"
    split, split_notes = prepare_split(dataset, split_file, config.split_fractions, config.seed)
    for note in split_notes[:20]:
        log.info("%s", note)
    if not split["train"] or not split["val"]:
        raise ValueError(f"{config.data}: too few images for a train/validation split ({ {k: len(v) for k, v in split.items()} })")

    cache_dir = Path(config.cache_dir) if config.cache_dir else out_dir / "cache"
    size = config.image_size
    pixels: dict[str, np.ndarray] = {}
    kept: dict[str, list[Sample]] = {}
    read_problems: list[str] = []
    for name in ("train", "val", "test"):
        pixels[name], kept[name], problems = load_letterboxed(split[name], size, size, cache_dir, progress, is_cancelled)
        read_problems += problems
    targets = {name: np.asarray([s.targets for s in kept[name]], dtype=np.float32).reshape(-1, len(dataset.labels)) for name in kept}

    backbone = build_backbone(config.backbone, config.weights, config.from_scratch)
    model = MultiLabelClassifier(backbone, len(dataset.labels), config.dropout).to(device)
    # channels-last makes the depthwise convolutions of the CPU kernels about 1.5x faster
    model = model.to(memory_format=torch.channels_last)
    first = freeze_lower_stages(model, config.trainable_stages)
    use_cache = config.cache_lower and first > 0
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    copies = max(1, config.static_augment)
    if use_cache:
        log.info("caching the output of the %d frozen stages (%d copies of %d images)", first, copies, len(pixels["train"]))
        train_inputs = _cache_features(model, pixels["train"], first, copies, config, mean, std, device, generator, progress, is_cancelled)
        train_targets = np.tile(targets["train"], (copies, 1))
        val_inputs = _cache_features(model, pixels["val"], first, 1, config, mean, std, device, generator, None, is_cancelled)
    else:
        train_inputs = torch.from_numpy(pixels["train"])
        train_targets = targets["train"]
        val_inputs = torch.from_numpy(pixels["val"])
    start_stage = first if use_cache else 0

    loss_fn = _loss_fn(dataset.labels, targets["train"], config.balance, device)
    head_params = list(model.head.parameters())
    body_params = [p for p in model.backbone.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        [{"params": body_params, "lr": config.lr}, {"params": head_params, "lr": config.lr * config.head_lr_factor}],
        weight_decay=config.weight_decay,
    )
    per_epoch = len(train_inputs) * (1 if use_cache else copies)
    steps_per_epoch = math.ceil(per_epoch / config.batch_size)
    if config.max_steps:
        steps_per_epoch = min(steps_per_epoch, config.max_steps)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[config.lr, config.lr * config.head_lr_factor], total_steps=max(total_steps, 1), pct_start=0.15
    )
    weights = _sampling_weights(train_targets) if config.balance == "sampler" else None
    y_train = torch.from_numpy(train_targets)

    history = _Log(out_dir)
    jpeg_rng = np.random.default_rng(config.seed + 1)
    best: tuple[tuple[float, float], int, dict[str, torch.Tensor], dict[str, float]] | None = None
    step = 0
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.time()
        set_train_mode(model, first)
        losses = []
        batches = _batches(per_epoch, config.batch_size, generator, weights)[:steps_per_epoch]
        for batch in batches:
            if is_cancelled and is_cancelled():
                raise Cancelled("training cancelled")
            index = batch % len(train_inputs)
            if use_cache:
                x = train_inputs[index].to(device).float()
            else:
                raw = jpeg_recompress(train_inputs[index].numpy(), config.augment, jpeg_rng)
                gray = torch.from_numpy(raw).to(device).float().unsqueeze(1) / 255.0
                gray = augment_batch(gray, config.augment, generator)
                x = to_model_input(gray, mean, std)
            logits = model(x.contiguous(memory_format=torch.channels_last), start_stage=start_stage)
            loss = loss_fn(logits, y_train[index].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            step += 1
            if progress:
                progress(step, total_steps)
        val_logits = predict_logits(model, val_inputs, mean, std, device, start_stage)
        val_probs = label_probabilities(val_logits, dataset.labels)
        aucs = per_label_auc(targets["val"], val_probs, dataset.labels)
        valid = [a for a in aucs.values() if not math.isnan(a)]
        macro = float(np.mean(valid)) if valid else float("nan")
        with torch.no_grad():
            val_loss = float(loss_fn(torch.from_numpy(val_logits).to(device), torch.from_numpy(targets["val"]).to(device)))
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss, "val_macro_auc": macro,
               **{f"val_auc_{k}": v for k, v in aucs.items()}, "seconds": round(time.time() - epoch_start, 1)}
        history.add(row)
        log.info("epoch %d: loss %.4f, validation loss %.4f, macro-AUC %.4f", epoch, row["train_loss"], val_loss, macro)
        # A small validation split saturates at AUC 1.0 early: ties go to the lower validation loss.
        score = (-math.inf if math.isnan(macro) else round(macro, 6), -val_loss)
        if best is None or score > best[0]:
            best = (score, epoch, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, aucs)
        elif epoch - best[1] >= config.patience:
            log.info("early stop: no validation improvement for %d epochs", config.patience)
            break

    assert best is not None
    model.load_state_dict(best[2])
    # Thresholds for the card come from the model as exported: full precision from the pixels,
    # not from the float16 cache the epochs were validated on.
    scope_stage = scope_stage_for(len(model.backbone.stages), config.trainable_stages)  # as export taps it
    val_out = predict_outputs(model, torch.from_numpy(pixels["val"]), mean, std, device, scope_stage=scope_stage)
    val_logits = val_out["logits"]
    val_probs = label_probabilities(val_logits, dataset.labels)
    operating_points = choose_operating_points(targets["val"], val_probs, dataset.labels)
    # The scope check describes the training images as they are, unaugmented. Fitting it on the
    # augmented copies too (noise, inversion, blur...) was measured to widen it until blank pages
    # and chest films passed as in scope (models/README.md, "robust retrain").
    train_out = predict_outputs(model, torch.from_numpy(pixels["train"]), mean, std, device, scope_stage=scope_stage)
    train_features = {name: train_out[name] for name in scope_outputs_among(train_out)}
    duration = time.time() - started
    meta = {
        "name": config.name,
        "version": config.version,
        "backbone": config.backbone,
        "labels": [asdict(label) for label in dataset.labels],
        "task_kind": dataset.task_kind,
        "input": {"height": size, "width": size, "mean": list(mean), "std": list(std)},
        "operating_points": operating_points,
        "validation_split": {"auc": per_label_auc(targets["val"], val_probs, dataset.labels), "n": len(kept["val"]), "positives": targets["val"].sum(0).tolist()},
        "training_data": {
            "source": dataset.source,
            "licence": dataset.licence,
            "attribution": dataset.attribution,
            "split_file": str(split_file),
            "counts": {name: len(kept[name]) for name in kept},
            "positives": {name: dict(zip([l.name for l in dataset.labels], targets[name].sum(0).astype(int).tolist())) for name in kept},
            "deduplication": split_notes[0] if split_notes else "",
            "unreadable": read_problems,
        },
        "training_run": {
            "command": config.command,
            "seed": config.seed,
            "hardware": hardware_description(device),
            "duration_s": round(duration, 1),
            "best_epoch": best[1],
            "epochs_run": len(history.rows),
            "trainable_stages": config.trainable_stages,
            "cached_lower_stages": first if use_cache else 0,
            "torch": str(torch.__version__),
        },
        "config": config.to_dict(),
        "history": history.rows,
    }
    meta.update(_honest_card_fields(meta, val_out, targets["val"], train_features))
    checkpoint = save_checkpoint(out_dir / "checkpoint.pt", model, meta)
    return TrainResult(checkpoint, best[1], best[3], history.rows, duration, out_dir)


@torch.no_grad()
def predict_outputs(model: MultiLabelClassifier, inputs: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                    device: torch.device, start_stage: int = 0, batch_size: int = 64,
                    scope_stage: int | None = None) -> dict[str, np.ndarray]:
    """Logits [N, K], pooled features [N, C] and (from pixels only) CAMs [N, K, h, w] in float32;
    with ``scope_stage`` (from pixels) also ``lower_features``, as the exported graph computes them."""
    model.eval()
    out: dict[str, list[np.ndarray]] = {"logits": [], "features": [], "cam": [], "lower_features": []}
    for i in range(0, len(inputs), batch_size):
        chunk = inputs[i : i + batch_size].to(device)
        chunk = to_model_input(chunk.float().unsqueeze(1) / 255.0, mean, std) if start_stage == 0 else chunk.float()
        chunk = chunk.contiguous(memory_format=torch.channels_last)
        if scope_stage and start_stage == 0:
            logits, cam, pooled, lower = model.forward_scoped(chunk, scope_stage)
            out["lower_features"].append(lower.float().cpu().numpy())
        else:
            logits, cam, pooled = model.forward_all(chunk, start_stage)
        out["logits"].append(logits.float().cpu().numpy())
        out["features"].append(pooled.float().cpu().numpy())
        if start_stage == 0:
            out["cam"].append(cam.float().cpu().numpy().astype(np.float16))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def _honest_card_fields(meta: dict[str, Any], val_out: dict[str, np.ndarray], val_targets: np.ndarray,
                        train_features: dict[str, np.ndarray]) -> dict[str, Any]:
    """Calibration, operating points on calibrated probabilities (with their basis), the scope check
    and the heatmap span, fitted on the validation split by the one fitting path
    (radreview.training.calibrate) that ``radreview calibrate`` also uses."""
    from radreview.training.calibrate import calibrated_card
    from radreview.training.export import card_from_checkpoint

    try:
        card, report = calibrated_card(card_from_checkpoint(meta), val_out, val_targets.astype(np.float64),
                                       train_features, reference={"dataset": Path(str(meta["training_data"]["source"])).name,
                                                                  "fit_images": "train split, unaugmented"})
    except ValueError as exc:  # too few images to fit a scope check, one class only...
        log.warning("no calibration or scope check for this run: %s", exc)
        return {"calibration_report": {"skipped": str(exc)}}
    return {
        "operating_points_uncalibrated": meta["operating_points"],
        "operating_points": {lab.name: {"possible": lab.operating_points.possible, "likely": lab.operating_points.likely,
                                        "youden": lab.operating_points.youden, "basis": lab.operating_points.basis}
                             for lab in card.labels if lab.operating_points},
        "calibration": {lab.name: {"method": lab.calibration.method, "scale": lab.calibration.scale,
                                   "offset": lab.calibration.offset, "fitted_on": lab.calibration.fitted_on}
                        for lab in card.labels if lab.calibration},
        "scope": card.scope,
        "cam": card.cam,
        "calibration_report": report,
    }


def _first_samples(dataset: LabelledDataset, n: int) -> LabelledDataset:
    """A deterministic subset keeping every label's positives represented where possible."""
    chosen: list[Sample] = []
    per_label = max(1, n // (2 * max(1, len(dataset.labels))))
    for i in range(len(dataset.labels)):
        chosen += [s for s in dataset.samples if s.targets[i] >= 0.5 and s not in chosen][:per_label]
    chosen += [s for s in dataset.samples if s not in chosen][: max(0, n - len(chosen))]
    return dataset.subset(chosen[:n])
