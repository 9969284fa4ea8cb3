"""Labelled image datasets: folder trees, CSV files, MURA-style study trees and FracAtlas.

Every loader returns a :class:`LabelledDataset`: samples (file, one target per label, the
patient/study group when known) and the label list (name, task, activation) that becomes the
model card's labels. Loaders never guess silently: rows they cannot use are listed in
``problems`` with the file and the reason.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Activation = Literal["sigmoid", "softmax"]
TaskKind = Literal["binary", "one-vs-rest", "multiclass", "multilabel"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"}
# Folder names that mean "the negative class" when a two-class tree becomes one sigmoid label.
NEGATIVE_NAMES = {"normal", "negative", "neg", "no", "absent", "0", "false", "non_fractured", "nonfractured"}
NEGATIVE_PREFIXES = ("no_", "no-", "non_", "non-", "not_", "not-", "without_")  # no_hardware, non-fractured

FRACATLAS_CITATION = (
    "FracAtlas: Abedeen I, Rahman MA, Prottyasha FZ, et al. FracAtlas: A Dataset for Fracture "
    "Classification, Localization and Segmentation of Musculoskeletal Radiographs. Scientific Data "
    "10, 521 (2023), doi:10.1038/s41597-023-02432-4; data doi:10.6084/m9.figshare.22363012. "
    "Licensed CC BY 4.0."
)
FRACATLAS_REGIONS = ("hand", "leg", "hip", "shoulder")


class DatasetError(ValueError):
    """A dataset cannot be used at all; the message names the file or folder and the reason."""


@dataclass(frozen=True)
class LabelSpec:
    """One model output: its name, the task it belongs to and how its logit becomes a probability."""

    name: str
    task: str
    activation: Activation = "sigmoid"


@dataclass
class Sample:
    path: Path
    targets: tuple[float, ...]  # one per label, 0/1
    group: str = ""  # patient or study; samples of one group never straddle splits
    sha256: str = ""


@dataclass
class LabelledDataset:
    samples: list[Sample]
    labels: tuple[LabelSpec, ...]
    source: str
    task_kind: TaskKind
    problems: list[str] = field(default_factory=list)
    licence: str = ""
    attribution: str = ""

    def positives(self) -> dict[str, int]:
        return {
            label.name: int(sum(s.targets[i] for s in self.samples)) for i, label in enumerate(self.labels)
        }

    def subset(self, samples: list[Sample]) -> LabelledDataset:
        return LabelledDataset(
            samples, self.labels, self.source, self.task_kind, [], self.licence, self.attribution
        )


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _labels_for_classes(classes: list[str], task: str, kind: TaskKind, positive: str | None) -> tuple[LabelSpec, ...]:
    if kind == "binary":
        return (LabelSpec(positive or classes[-1], task, "sigmoid"),)
    activation: Activation = "softmax" if kind == "multiclass" else "sigmoid"
    return tuple(LabelSpec(name, task, activation) for name in classes)


def _pick_positive(classes: list[str], positive: str | None, source: Path) -> str:
    if positive is not None:
        if positive not in classes:
            raise DatasetError(f"{source}: positive class {positive!r} is not one of {classes}")
        return positive
    negatives = [c for c in classes if c.lower() in NEGATIVE_NAMES or c.lower().startswith(NEGATIVE_PREFIXES)]
    if len(negatives) == 1:
        return next(c for c in classes if c not in negatives)
    return sorted(classes)[-1]


def _class_targets(class_name: str, classes: list[str], kind: TaskKind, positive: str | None) -> tuple[float, ...]:
    if kind == "binary":
        return (1.0 if class_name == positive else 0.0,)
    return tuple(1.0 if c == class_name else 0.0 for c in classes)


def _resolve_kind(n_classes: int, kind: TaskKind | None, source: Path) -> TaskKind:
    if n_classes < 2:
        raise DatasetError(f"{source}: found {n_classes} class(es); a classifier needs at least two")
    if kind is None:
        return "binary" if n_classes == 2 else "multiclass"
    if kind == "binary" and n_classes != 2:
        raise DatasetError(f"{source}: a binary task needs exactly two classes, found {n_classes}")
    return kind


def load_folder_tree(
    root: str | Path, task: str = "abnormality", kind: TaskKind | None = None, positive: str | None = None
) -> LabelledDataset:
    """``root/<class>/**/image``: one folder per class (binary, one-vs-rest or multi-class)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    kind = _resolve_kind(len(classes), kind, root)
    if kind == "binary":
        positive = _pick_positive(classes, positive, root)
    samples = []
    for class_name in classes:
        for path in sorted((root / class_name).rglob("*")):
            if _is_image(path):
                samples.append(Sample(path, _class_targets(class_name, classes, kind, positive)))
    if not samples:
        raise DatasetError(f"{root}: no images found in the class folders {classes}")
    return LabelledDataset(samples, _labels_for_classes(classes, task, kind, positive), str(root), kind)


def load_mura_tree(root: str | Path, task: str = "abnormality", positive_name: str = "abnormal") -> LabelledDataset:
    """MURA layout ``root/[region/]patient/studyN_positive|negative/image``: study-level labels.

    Every image takes its study's label; the group is the patient so that one patient's
    studies stay in one split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    samples: list[Sample] = []
    problems: list[str] = []
    for study in sorted(p for p in root.rglob("*") if p.is_dir()):
        name = study.name.lower()
        if name.endswith("_positive"):
            target = 1.0
        elif name.endswith("_negative"):
            target = 0.0
        else:
            continue
        images = sorted(p for p in study.iterdir() if _is_image(p))
        if not images:
            problems.append(f"{study}: study folder without images")
        patient = study.parent.relative_to(root).as_posix()
        for path in images:
            samples.append(Sample(path, (target,), group=patient))
    if not samples:
        raise DatasetError(f"{root}: no study folders named like 'study1_positive' / 'study1_negative'")
    return LabelledDataset(samples, (LabelSpec(positive_name, task, "sigmoid"),), str(root), "binary", problems)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read the CSV ({exc})") from exc


def _is_flag(values: list[str]) -> bool:
    return all(v.strip() in ("0", "1", "0.0", "1.0") for v in values)


DEFAULT_GROUP_COLUMN = "group"  # a CSV's patient/study column when none is named (as split files write it)


def load_csv(
    csv_path: str | Path,
    image_root: str | Path | None = None,
    path_column: str = "path",
    label_columns: list[str] | None = None,
    group_column: str | None = None,
    task: str = "abnormality",
    kind: TaskKind | None = None,
    positive: str | None = None,
) -> LabelledDataset:
    """A CSV of ``path,label`` (class names or 0/1) or ``path`` + several 0/1 label columns.

    Paths are relative to ``image_root`` (default: the CSV's folder). Several 0/1 columns mean a
    multi-label task (``kind="one-vs-rest"`` is the same outputs for single-label data).
    """
    csv_path = Path(csv_path)
    columns, rows = _read_csv(csv_path)
    root = Path(image_root) if image_root else csv_path.parent
    if path_column not in columns:
        raise DatasetError(f"{csv_path}: no '{path_column}' column (columns: {', '.join(columns)})")
    if group_column and group_column not in columns:
        raise DatasetError(f"{csv_path}: no group column '{group_column}'")
    if group_column is None and DEFAULT_GROUP_COLUMN in columns:  # as the help says: "all but path/group"
        group_column = DEFAULT_GROUP_COLUMN
    if label_columns is None:
        label_columns = [c for c in columns if c not in (path_column, group_column)]
    missing = [c for c in label_columns if c not in columns]
    if missing or not label_columns:
        raise DatasetError(f"{csv_path}: label column(s) {missing or '(none)'} not found")
    samples: list[Sample] = []
    problems: list[str] = []
    if len(label_columns) == 1 and not _is_flag([r[label_columns[0]] for r in rows]):
        column = label_columns[0]
        classes = sorted({r[column].strip() for r in rows if r[column].strip()})
        kind = _resolve_kind(len(classes), kind, csv_path)
        if kind == "binary":
            positive = _pick_positive(classes, positive, csv_path)
        labels = _labels_for_classes(classes, task, kind, positive)
        for line, row in enumerate(rows, start=2):
            value = row[column].strip()
            if not value:
                problems.append(f"{csv_path}:{line}: empty label")
                continue
            samples.append(
                Sample(root / row[path_column], _class_targets(value, classes, kind, positive), row.get(group_column or "", "") or "")
            )
    else:
        if len(label_columns) == 1:
            kind = "binary"
        elif kind is None:
            kind = "multilabel"
        labels = tuple(LabelSpec(c, task, "sigmoid") for c in label_columns)
        for line, row in enumerate(rows, start=2):
            try:
                targets = tuple(float(row[c]) for c in label_columns)
            except ValueError:
                problems.append(f"{csv_path}:{line}: a label is not 0/1")
                continue
            if any(t not in (0.0, 1.0) for t in targets):
                problems.append(f"{csv_path}:{line}: a label is not 0/1")
                continue
            samples.append(Sample(root / row[path_column], targets, row.get(group_column or "", "") or ""))
    samples = _keep_existing(samples, problems)
    if not samples:
        raise DatasetError(f"{csv_path}: no usable rows ({'; '.join(problems[:3])})")
    return LabelledDataset(samples, labels, str(csv_path), kind, problems)


def _keep_existing(samples: list[Sample], problems: list[str]) -> list[Sample]:
    kept = []
    for sample in samples:
        if sample.path.is_file():
            kept.append(sample)
        else:
            problems.append(f"{sample.path}: listed but not found")
    return kept


def load_fracatlas(root: str | Path, tasks: tuple[str, ...] = ("region", "fracture", "hardware")) -> LabelledDataset:
    """FracAtlas (``dataset.csv`` flags + ``images/Fractured|Non_fractured``) as a multi-task set.

    ``region`` gives four sigmoid labels (hand, leg, hip, shoulder; an image may show several),
    ``fracture`` one label ``fractured``, ``hardware`` one label ``hardware``.
    """
    root = Path(root)
    csv_path = root / "dataset.csv"
    if not csv_path.is_file():
        raise DatasetError(f"{root}: no dataset.csv (not a FracAtlas folder)")
    columns, rows = _read_csv(csv_path)
    needed = {"image_id", "fractured", "hardware", *FRACATLAS_REGIONS}
    if not needed <= set(columns):
        raise DatasetError(f"{csv_path}: missing FracAtlas columns {sorted(needed - set(columns))}")
    label_columns: list[tuple[str, str]] = []  # (column, task)
    for task in tasks:
        if task == "region":
            label_columns += [(r, "region") for r in FRACATLAS_REGIONS]
        elif task == "fracture":
            label_columns.append(("fractured", "fracture"))
        elif task == "hardware":
            label_columns.append(("hardware", "hardware"))
        else:
            raise DatasetError(f"{csv_path}: FracAtlas has no labels for task {task!r}")
    samples: list[Sample] = []
    problems: list[str] = []
    for line, row in enumerate(rows, start=2):
        folder = "Fractured" if row["fractured"].strip() == "1" else "Non_fractured"
        path = root / "images" / folder / row["image_id"]
        try:
            targets = tuple(float(row[c]) for c, _ in label_columns)
        except ValueError:
            problems.append(f"{csv_path}:{line}: a flag is not 0/1")
            continue
        samples.append(Sample(path, targets))
    samples = _keep_existing(samples, problems)
    labels = tuple(LabelSpec(c, t, "sigmoid") for c, t in label_columns)
    return LabelledDataset(
        samples, labels, str(root), "multilabel", problems, licence="CC BY 4.0", attribution=FRACATLAS_CITATION
    )


def load_dataset(
    source: str | Path,
    task: str = "abnormality",
    kind: TaskKind | None = None,
    positive: str | None = None,
    label_columns: list[str] | None = None,
    group_column: str | None = None,
    path_column: str = "path",
    image_root: str | Path | None = None,
    fracatlas_tasks: tuple[str, ...] = ("region", "fracture", "hardware"),
) -> LabelledDataset:
    """Recognise the layout of ``source`` and load it (FracAtlas, CSV, MURA tree, folder tree)."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or folder")
    if source.is_dir() and (source / "dataset.csv").is_file() and (source / "images").is_dir():
        columns, _ = _read_csv(source / "dataset.csv")
        if "image_id" in columns and "fractured" in columns:
            if label_columns is not None or group_column is not None:  # silently ignored before
                raise DatasetError(f"{source}: a FracAtlas folder has its own labels; --label-columns and "
                                   "--group-column are for CSV datasets (choose tasks with --fracatlas-tasks)")
            return load_fracatlas(source, fracatlas_tasks)
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise DatasetError(f"{source}: a dataset is a folder or a .csv file")
        return load_csv(source, image_root, path_column, label_columns, group_column, task, kind, positive)
    if any(p.is_dir() and p.name.lower().endswith(("_positive", "_negative")) for p in source.rglob("*")):
        return load_mura_tree(source, task)
    return load_folder_tree(source, task, kind, positive)
