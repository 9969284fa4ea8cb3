"""Datasets, content deduplication, the grouped seeded split on disk, image reading and letterbox."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from _letterbox_reference import _letterbox_copy
from conftest import FRACATLAS_DIR
from radreview.training.datasets import DatasetError, load_csv, load_dataset, load_fracatlas, load_folder_tree, load_mura_tree
from radreview.training.image_cache import load_letterboxed
from radreview.training.images import ImageReadError, read_display_gray
from radreview.training.letterbox import letterbox
from radreview.training.splits import deduplicate, prepare_split, read_split, split_samples

pytestmark = pytest.mark.train


def _fracatlas_images(n: int, offset: int = 0) -> list[Path]:
    return sorted((FRACATLAS_DIR / "images" / "Non_fractured").glob("*.jpg"))[offset : offset + n]


def _place(images: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    placed = []
    for image in images:
        shutil.copyfile(image, folder / image.name)
        placed.append(folder / image.name)
    return placed


def test_folder_tree_binary_multiclass_and_one_vs_rest(tmp_path) -> None:
    _place(_fracatlas_images(3), tmp_path / "two" / "normal")
    _place(_fracatlas_images(2, 3), tmp_path / "two" / "dislocated")
    data = load_folder_tree(tmp_path / "two", task="dislocation")
    assert data.task_kind == "binary" and [(l.name, l.task) for l in data.labels] == [("dislocated", "dislocation")]
    assert data.positives() == {"dislocated": 2} and len(data.samples) == 5

    _place(_fracatlas_images(2), tmp_path / "prefixed" / "no_hardware")
    _place(_fracatlas_images(2, 2), tmp_path / "prefixed" / "hardware")
    assert load_folder_tree(tmp_path / "prefixed").labels[0].name == "hardware"  # not sorted last: no_hardware

    for i, region in enumerate(("hand", "hip", "leg")):
        _place(_fracatlas_images(2, 2 * i), tmp_path / "three" / region)
    multi = load_folder_tree(tmp_path / "three", task="region")
    assert multi.task_kind == "multiclass" and {l.activation for l in multi.labels} == {"softmax"}
    ovr = load_folder_tree(tmp_path / "three", task="region", kind="one-vs-rest")
    assert {l.activation for l in ovr.labels} == {"sigmoid"} and len(ovr.labels) == 3
    assert sorted(s.targets for s in ovr.samples).count((1.0, 0.0, 0.0)) == 2
    with pytest.raises(DatasetError, match="exactly two"):
        load_folder_tree(tmp_path / "three", kind="binary")


def test_folder_tree_needs_two_classes(tmp_path) -> None:
    _place(_fracatlas_images(2), tmp_path / "only" / "normal")
    with pytest.raises(DatasetError, match=r"only: found 1 class"):
        load_dataset(tmp_path / "only")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "absent")


def test_csv_class_names_groups_and_missing_files(tmp_path) -> None:
    images = _place(_fracatlas_images(4), tmp_path / "img")
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient"])
        writer.writerows([[f"img/{p.name}", "abnormal" if i % 2 else "normal", f"P{i // 2}"] for i, p in enumerate(images)])
        writer.writerow(["img/not_there.jpg", "normal", "P9"])
    data = load_dataset(tmp_path / "labels.csv", group_column="patient")
    assert [l.name for l in data.labels] == ["abnormal"] and data.task_kind == "binary"
    assert [s.group for s in data.samples] == ["P0", "P0", "P1", "P1"]
    assert any("not_there.jpg" in p and "not found" in p for p in data.problems)
    with pytest.raises(DatasetError, match="no group column 'site'"):
        load_csv(tmp_path / "labels.csv", group_column="site")


def test_csv_multilabel_flags(tmp_path) -> None:
    images = _place(_fracatlas_images(3), tmp_path)
    (tmp_path / "flags.csv").write_text(
        "path,fracture,hardware\n" + "".join(f"{p.name},{i % 2},{int(i == 2)}\n" for i, p in enumerate(images))
        + f"{images[0].name},2,0\n"
    )
    data = load_csv(tmp_path / "flags.csv")
    assert data.task_kind == "multilabel" and [l.name for l in data.labels] == ["fracture", "hardware"]
    assert [s.targets for s in data.samples] == [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    assert any(":5: a label is not 0/1" in p for p in data.problems)


def test_mura_study_tree_labels_studies_and_groups_patients(tmp_path) -> None:
    images = _fracatlas_images(5)
    _place(images[:2], tmp_path / "XR_WRIST" / "patient001" / "study1_positive")
    _place(images[2:3], tmp_path / "XR_WRIST" / "patient001" / "study2_negative")
    _place(images[3:], tmp_path / "XR_WRIST" / "patient002" / "study1_negative")
    data = load_dataset(tmp_path)
    assert data.labels[0].name == "abnormal" and data.task_kind == "binary"
    assert sorted((s.group, s.targets[0]) for s in data.samples) == [
        ("XR_WRIST/patient001", 0.0), ("XR_WRIST/patient001", 1.0), ("XR_WRIST/patient001", 1.0),
        ("XR_WRIST/patient002", 0.0), ("XR_WRIST/patient002", 0.0),
    ]
    assert load_mura_tree(tmp_path, task="abnormality").labels[0].task == "abnormality"


def test_deduplication_by_content(tmp_path) -> None:
    a, b, c = _fracatlas_images(3)
    _place([a, b], tmp_path / "normal")
    _place([c], tmp_path / "abnormal")
    shutil.copyfile(a, tmp_path / "normal" / "copy_of_a.jpg")  # same class: keep one
    shutil.copyfile(c, tmp_path / "normal" / "copy_of_c.jpg")  # conflicting labels: drop both
    unique, notes = deduplicate(load_folder_tree(tmp_path))
    names = sorted(s.path.name for s in unique.samples)
    assert names == sorted([a.name, b.name]) or names == sorted(["copy_of_a.jpg", b.name])
    assert any("conflicting labels" in n for n in notes)


def test_split_is_grouped_seeded_written_and_reused(tmp_path) -> None:
    data = load_fracatlas(FRACATLAS_DIR, ("hardware",))
    data = data.subset(data.samples[:200])
    for i, sample in enumerate(data.samples):
        sample.group = f"patient{i // 4}"  # four images per patient
    unique, _ = deduplicate(data)
    one = split_samples(unique, (0.6, 0.2, 0.2), seed=7)
    two = split_samples(unique, (0.6, 0.2, 0.2), seed=7)
    other = split_samples(unique, (0.6, 0.2, 0.2), seed=8)
    assert {k: [s.path for s in v] for k, v in one.items()} == {k: [s.path for s in v] for k, v in two.items()}
    assert {s.path for s in one["test"]} != {s.path for s in other["test"]}
    groups = {name: {s.group for s in samples} for name, samples in one.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"]) and not (groups["val"] & groups["test"])
    assert abs(len(one["test"]) - 40) <= 8

    split_file = tmp_path / "split.csv"
    first, notes = prepare_split(data, split_file, (0.6, 0.2, 0.2), seed=7)
    assert split_file.is_file() and "duplicate" in notes[0]
    rows = list(csv.DictReader(open(split_file, newline="")))
    assert not Path(rows[0]["path"]).is_absolute()  # relative to the dataset: the split travels with it
    again, notes_again = prepare_split(data, split_file, (0.1, 0.1, 0.8), seed=99)  # reused, not recomputed
    assert notes_again == [f"reused the split in {split_file}"]
    assert {k: [s.path for s in v] for k, v in again.items()} == {k: [s.path for s in v] for k, v in first.items()}
    # a split whose labels do not fit the dataset is refused with the file named
    with pytest.raises(DatasetError, match="split.csv"):
        read_split(split_file, load_fracatlas(FRACATLAS_DIR, ("fracture",)))
    # so are a file that is not a split file at all and a row that lacks its labels (not a KeyError)
    lines = split_file.read_text().splitlines()
    renamed = tmp_path / "renamed.csv"
    renamed.write_text("\n".join([lines[0].replace("split,path", "fold,file"), *lines[1:]]) + "\n")
    with pytest.raises(DatasetError, match=r"renamed.csv: not a split file \(its first columns are \['fold', 'file'"):
        read_split(renamed, data)
    short = tmp_path / "short.csv"
    short.write_text("\n".join([lines[0], lines[1], lines[2].rsplit(",", 1)[0]]) + "\n")
    with pytest.raises(DatasetError, match=r"short.csv:3: a label value is missing or not a number \(hardware=None\)"):
        read_split(short, data)


def test_a_fracatlas_folder_refuses_csv_label_options() -> None:
    """--label-columns on a FracAtlas folder was silently ignored: the run measured all six labels."""
    with pytest.raises(DatasetError, match="a FracAtlas folder has its own labels; --label-columns"):
        load_dataset(FRACATLAS_DIR, label_columns=["nosuchcol"])


def test_a_csv_group_column_is_the_group_by_default(tmp_path) -> None:
    """As the help says (labels: all columns but path and group): a 'group' column is not a label."""
    images = _place(_fracatlas_images(2), tmp_path)
    (tmp_path / "d.csv").write_text("path,group,fracture\n" + "".join(f"{p.name},P{i},{i}\n" for i, p in enumerate(images)))
    data = load_csv(tmp_path / "d.csv")
    assert [l.name for l in data.labels] == ["fracture"] and [s.group for s in data.samples] == ["P0", "P1"]


def test_fracatlas_labels_and_attribution() -> None:
    data = load_fracatlas(FRACATLAS_DIR)
    assert [(l.name, l.task) for l in data.labels][:4] == [("hand", "region"), ("leg", "region"), ("hip", "region"), ("shoulder", "region")]
    assert len(data.samples) == 3269 and data.licence == "CC BY 4.0" and "FracAtlas" in data.attribution
    assert data.positives()["fractured"] > 500
    with pytest.raises(DatasetError, match="no labels for task 'elbow'"):
        load_fracatlas(FRACATLAS_DIR, ("elbow",))


def test_unreadable_images_are_named_and_left_out(tmp_path) -> None:
    good = _place(_fracatlas_images(2), tmp_path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    from radreview.training.datasets import Sample

    samples = [Sample(good[0], (0.0,)), Sample(bad, (1.0,)), Sample(good[1], (1.0,))]
    pixels, kept, problems = load_letterboxed(samples, 64, 48, tmp_path / "cache")
    assert pixels.shape == (2, 64, 48) and pixels.dtype == np.uint8
    assert [s.path for s in kept] == good and len(problems) == 1 and "broken.png" in problems[0]
    cached, kept_again, _ = load_letterboxed(samples, 64, 48, tmp_path / "cache")  # from the disk cache
    np.testing.assert_array_equal(cached, pixels)
    assert [s.path for s in kept_again] == good
    with pytest.raises(ImageReadError, match="missing.jpg: file not found"):
        read_display_gray(tmp_path / "missing.jpg")


def test_letterbox_is_shared_with_inference_and_keeps_aspect() -> None:
    from radreview.inference.preprocess import letterbox as inference_letterbox

    assert letterbox is inference_letterbox
    gray = read_display_gray(_fracatlas_images(1)[0])
    boxed = letterbox(gray, 128, 128)
    np.testing.assert_allclose(boxed, _letterbox_copy(gray, 128, 128), atol=1e-6)
    rows, cols = gray.shape
    filled_rows = np.nonzero(boxed.max(axis=1) > 0)[0]
    filled_cols = np.nonzero(boxed.max(axis=0) > 0)[0]
    extent = (int(np.ptp(filled_rows)) + 1, int(np.ptp(filled_cols)) + 1)
    assert max(extent) == 128
    assert extent[0] / extent[1] == pytest.approx(rows / cols, rel=0.05)


def test_dicom_is_read_as_displayed(pydicom_data_file) -> None:
    """CR MONOCHROME1: the model sees the viewer's display (bone white), not raw values."""
    gray = read_display_gray(pydicom_data_file("RG3_UNCR.dcm"))
    assert gray.dtype == np.uint8 and gray.ndim == 2 and gray.std() > 10
