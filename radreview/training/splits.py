"""Content deduplication and the seeded, grouped, stratified split, written to and read from CSV.

Duplicates (identical file bytes) are removed BEFORE splitting, otherwise one picture could
sit in training and in validation and flatter the figures. Samples of one patient/study stay
in one split. The split is saved as CSV next to the run and reused, so a run can be repeated.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from radreview.training.datasets import DatasetError, LabelledDataset, Sample

SPLITS = ("train", "val", "test")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def deduplicate(
    dataset: LabelledDataset, progress: Callable[[int, int], None] | None = None
) -> tuple[LabelledDataset, list[str]]:
    """Keep one sample per distinct file content; drop groups whose copies disagree on labels.

    Returns the deduplicated dataset and a list of what was dropped, in words.
    """
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    total = len(dataset.samples)
    for done, sample in enumerate(dataset.samples, start=1):
        sample.sha256 = sample.sha256 or file_sha256(sample.path)
        by_hash[sample.sha256].append(sample)
        if progress:
            progress(done, total)
    kept: list[Sample] = []
    notes: list[str] = []
    for digest, copies in by_hash.items():
        if len(copies) > 1:
            if len({c.targets for c in copies}) > 1:
                notes.append(
                    f"dropped {len(copies)} identical files with conflicting labels: "
                    + ", ".join(c.path.name for c in copies)
                )
                continue
            notes.append(f"kept {copies[0].path.name}, dropped identical " + ", ".join(c.path.name for c in copies[1:]))
            # a group that shares content with another group is really one group
            groups = sorted({c.group for c in copies if c.group})
            if groups:
                copies[0].group = groups[0]
        kept.append(copies[0])
    return dataset.subset(kept), notes


def _strata_key(sample: Sample, rarity: list[int]) -> int:
    """The index of the rarest positive label of a sample (-1 when all negative)."""
    positives = [i for i, t in enumerate(sample.targets) if t >= 0.5]
    return min(positives, key=lambda i: rarity[i]) if positives else -1


def split_samples(
    dataset: LabelledDataset, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0
) -> dict[str, list[Sample]]:
    """Seeded split by group (patient/study; each ungrouped sample its own group), stratified on
    each group's rarest positive label so that rare labels reach every split."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DatasetError(f"{dataset.source}: split fractions {fractions} must be >= 0 and sum to 1")
    groups: dict[str, list[Sample]] = defaultdict(list)
    for index, sample in enumerate(dataset.samples):
        groups[sample.group or f"#{index}"].append(sample)
    rarity = [int(sum(s.targets[i] for s in dataset.samples)) for i in range(len(dataset.labels))]
    strata: dict[int, list[str]] = defaultdict(list)
    for key, members in groups.items():
        strata[min(_strata_key(s, rarity) for s in members)].append(key)
    rng = random.Random(seed)
    out: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        rng.shuffle(keys)
        n = len(keys)
        n_test = round(n * fractions[2])
        n_val = round(n * fractions[1])
        for position, key in enumerate(keys):
            name = "test" if position < n_test else "val" if position < n_test + n_val else "train"
            out[name].extend(groups[key])
    return out


def _dataset_root(dataset: LabelledDataset) -> Path:
    source = Path(dataset.source)
    return source.parent if source.is_file() else source


def _relative(path: Path, dataset: LabelledDataset) -> str:
    """Paths inside the dataset are stored relative to it, so a split travels with the data."""
    try:
        return path.resolve().relative_to(_dataset_root(dataset).resolve()).as_posix()
    except ValueError:
        return str(path)


SPLIT_COLUMNS = ["split", "path", "sha256", "group"]  # then one column per label


def write_split(path: str | Path, dataset: LabelledDataset, split: dict[str, list[Sample]]) -> None:
    """CSV: split, path (relative to the dataset when inside it), sha256, group, one column per label."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*SPLIT_COLUMNS, *(label.name for label in dataset.labels)])
        for name in SPLITS:
            for s in split.get(name, []):
                writer.writerow([name, _relative(s.path, dataset), s.sha256, s.group, *(f"{t:g}" for t in s.targets)])


def read_split(path: str | Path, dataset: LabelledDataset) -> dict[str, list[Sample]]:
    """Read a split written by :func:`write_split`; its labels must match ``dataset``'s."""
    path = Path(path)
    names = [label.name for label in dataset.labels]
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        if columns[:4] != SPLIT_COLUMNS:
            raise DatasetError(f"{path}: not a split file (its first columns are {columns[:4]}, "
                               f"a split file's are {SPLIT_COLUMNS}, then one per label)")
        if columns[4:] != names:
            raise DatasetError(f"{path}: the split's label columns {columns[4:]} "
                               f"do not match the dataset's labels {names}")
        out: dict[str, list[Sample]] = {name: [] for name in SPLITS}
        for line, row in enumerate(reader, start=2):
            if row["split"] not in out:
                raise DatasetError(f"{path}:{line}: unknown split {row['split']!r}")
            try:
                targets = tuple(float(row[n]) for n in names)
            except (TypeError, ValueError):
                raise DatasetError(f"{path}:{line}: a label value is missing or not a number "
                                   f"({', '.join(f'{n}={row[n]!r}' for n in names)})") from None
            if not row["path"]:
                raise DatasetError(f"{path}:{line}: no path")
            out[row["split"]].append(Sample(_dataset_root(dataset) / row["path"], targets, row["group"] or "",
                                            row["sha256"] or ""))
    return out


def prepare_split(
    dataset: LabelledDataset,
    split_file: str | Path,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, list[Sample]], list[str]]:
    """Reuse ``split_file`` if it exists, else deduplicate, split and write it."""
    split_file = Path(split_file)
    if split_file.is_file():
        return read_split(split_file, dataset), [f"reused the split in {split_file}"]
    unique, notes = deduplicate(dataset, progress)
    split = split_samples(unique, fractions, seed)
    write_split(split_file, unique, split)
    notes.insert(0, f"{len(dataset.samples) - len(unique.samples)} duplicate file(s) removed before splitting")
    return split, notes
