"""``radreview predict`` and the pipelined batch function on real files (DICOM, FracAtlas JPEG, corrupt)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radreview.cli import main
from radreview.inference.batch import predict_paths
from radreview.inference.engine import Engine
from radreview.inference.registry import discover
from radreview.inference.toy import toy_card, write_toy_model

REGIONS = [("hand", "region"), ("leg", "region"), ("hip", "region"), ("shoulder", "region")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_toy_model(folder / "region.onnx", toy_card("region", REGIONS, size=96))
    write_toy_model(folder / "fracture.onnx", toy_card("fracture", [("fractured", "fracture")], size=64), seed=1)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, fracatlas_dir, pydicom_data_file) -> Path:
    """Six FracAtlas JPEGs, a CR DICOM (MONOCHROME1), a DX DICOM, and a corrupt file."""
    folder = tmp_path_factory.mktemp("inputs")
    jpegs = sorted((fracatlas_dir / "images" / "Fractured").glob("*.jpg"))[:3]
    jpegs += sorted((fracatlas_dir / "images" / "Non_fractured").glob("*.jpg"))[:3]
    for path in jpegs:
        shutil.copy(path, folder / path.name)
    shutil.copy(pydicom_data_file("RG3_UNCR.dcm"), folder / "RG3_UNCR.dcm")
    import deid_data

    shutil.copy(Path(deid_data.__file__).parent / "data" / "animals" / "cat.dcm", folder / "cat.dcm")
    (folder / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 50)
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_csv_on_real_files(inputs, model_dir, tmp_path, capsys):
    out = tmp_path / "results.csv"
    code = main(["predict", str(inputs), "--models", str(model_dir), "--out", str(out), "--provider", "cpu",
                 "--batch-size", "3", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert "corrupt.dcm" in err and "skipped" in err  # reported, not fatal
    assert "research use" in err.lower() and "provider: cpu" in err
    rows = read_csv(out)
    images = {r["image_id"] for r in rows if r["level"] == "image" and not r["error"]}
    assert len(images) == 8  # 6 JPEG + 2 DICOM
    assert all(r["provider"] == "cpu" for r in rows if not r["error"])
    assert {r["model"] + " " + r["version"] for r in rows if r["model"]} == {"region 1.0", "fracture 1.0"}
    assert "path" not in rows[0] and "patient_id" not in rows[0]
    assert all(str(inputs) not in value for r in rows for value in r.values())
    for r in rows:
        if r["probability"]:
            assert 0.0 <= float(r["probability"]) <= 1.0
            assert r["tier"] in ("likely", "possible", "below")
    studies = [r for r in rows if r["level"] == "study"]
    assert {r["study_id"] for r in studies} == {r["study_id"] for r in rows if r["level"] == "image" and r["model"]}


def test_study_rows_are_the_mean_of_their_images(inputs, model_dir, tmp_path):
    out = tmp_path / "results.csv"
    assert main(["predict", str(inputs), "--models", str(model_dir), "--out", str(out), "--quiet"]) == 0
    rows = read_csv(out)
    for study in (r for r in rows if r["level"] == "study"):
        views = [float(r["probability"]) for r in rows
                 if r["level"] == "image" and r["study_id"] == study["study_id"] and r["label"] == study["label"]]
        assert int(study["views"]) == len(views)
        assert float(study["probability"]) == pytest.approx(np.mean(views), abs=1e-5)


def test_predict_json_names_unusable_files_only_by_id_without_identifiers(inputs, model_dir, tmp_path):
    """A file name often carries the patient's name: the problems list gives an ID and the file's
    type, and the key (written only on request) maps the ID back to the file."""
    named = tmp_path / "DOE_JOHN_MRN4455.dcm"
    named.write_bytes((inputs / "corrupt.dcm").read_bytes())
    out, key = tmp_path / "results.json", tmp_path / "key.csv"
    assert main(["predict", str(inputs / "RG3_UNCR.dcm"), str(named), "--models", str(model_dir),
                 "--out", str(out), "--key", str(key), "--quiet"]) == 0
    text = out.read_text()
    assert "DOE" not in text and "MRN4455" not in text
    [problem] = json.loads(text)["problems"]
    assert problem["problem_id"] == "P0001" and problem["file_type"] == ".dcm" and problem["reason"]
    key_rows = {row["image_id"]: row["path"] for row in csv.DictReader(key.open(encoding="utf-8"))}
    assert Path(key_rows["P0001"]) == named.resolve() and "S00001-I001" in key_rows


def test_predict_json_with_identifiers_and_cams(inputs, model_dir, tmp_path):
    out = tmp_path / "results.json"
    cams = tmp_path / "cams"
    code = main(["predict", str(inputs / "RG3_UNCR.dcm"), str(inputs / "corrupt.dcm"), "--models", str(model_dir),
                 "--out", str(out), "--identifiers", "--cam-dir", str(cams), "--cam-all", "--quiet"])
    assert code == 0
    document = json.loads(out.read_text())
    assert document["provider"] == "cpu" and "research" in document["notice"].lower()
    assert {m["name"] for m in document["models"]} == {"region", "fracture"}
    assert all(len(m["weights_sha256"]) == 64 for m in document["models"])
    assert document["images"][0]["path"].endswith("RG3_UNCR.dcm")
    assert document["images"][0]["sop_instance_uid"]
    assert [(p["problem_id"], Path(p["file"]).name) for p in document["problems"]] == [("P0001", "corrupt.dcm")]
    written = sorted(cams.glob("*.png"))
    assert len(written) == 5  # four region labels and the fracture label
    with Image.open(written[0]) as overlay:
        assert overlay.mode == "RGB" and max(overlay.size) <= 1024
        assert "research use" in overlay.info["Description"].lower()


def test_batch_function_progress_and_cancel(inputs, model_dir):
    engine = Engine(discover([model_dir]).models, provider="cpu", batch_size=2)
    calls: list[tuple[int, int]] = []
    result = predict_paths([inputs], engine, progress=lambda d, t: calls.append((d, t)), workers=2)
    assert calls[-1] == (8, 8) and len(result.problems) == 1  # the corrupt file is refused when indexing
    assert set(result.seconds) >= {"decode", "preprocess", "inference"} and result.seconds["inference"] > 0
    seen: list[int] = []
    stopped = predict_paths([inputs], engine, progress=lambda d, t: seen.append(d), cancel=lambda: bool(seen),
                            workers=1)
    assert stopped.cancelled and seen == [2]
    assert len([r for r in stopped.images if r.result]) == 2


def test_no_models_is_a_clear_error(inputs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["predict", str(inputs), "--models", str(empty), "--out", str(tmp_path / "r.csv"), "--quiet"])
    assert code == 2 and "no usable model" in capsys.readouterr().err


def test_bad_output_suffix(inputs, model_dir, tmp_path, capsys):
    code = main(["predict", str(inputs), "--models", str(model_dir), "--out", str(tmp_path / "r.txt")])
    assert code == 2 and ".csv or .json" in capsys.readouterr().err


def test_unavailable_provider_runs_on_cpu_and_says_so(inputs, model_dir, tmp_path, capsys):
    out = tmp_path / "r.csv"
    code = main(["predict", str(inputs / "cat.dcm"), "--models", str(model_dir), "--out", str(out),
                 "--provider", "coreml", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert "'coreml' is not available" in err
    assert {r["provider"] for r in read_csv(out)} == {"cpu"}


def test_bad_images_are_skipped(tmp_path, model_dir):
    """Colour, tiny, huge and 16-bit images: the usable ones are predicted, the rest reported."""
    folder = tmp_path / "bad"
    folder.mkdir()
    rgb = np.zeros((200, 150, 3), np.uint8)
    rgb[50:150, 40:110] = (250, 180, 120)
    Image.fromarray(rgb).save(folder / "colour.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "tiny.png")
    Image.fromarray(np.full((5000, 5000), 128, np.uint8)).save(folder / "huge.png", compress_level=1)
    Image.fromarray((np.arange(300 * 200, dtype=np.uint16).reshape(300, 200) * 16)).save(folder / "sixteen.png")
    engine = Engine(discover([model_dir]).models, provider="cpu")
    result = predict_paths([folder], engine)
    done = {r.path.name for r in result.images if r.result is not None}
    assert done == {"colour.png", "huge.png", "sixteen.png"}
    reasons = {Path(p).name: reason for p, reason in result.problems}
    assert "tiny.png" in reasons and "too small" in reasons["tiny.png"]


def test_predict_follows_a_dicomdir(model_dir, tmp_path):
    from pydicom.data import get_testdata_file

    from radreview.studies import index_paths

    dicomdir = Path(get_testdata_file("DICOMDIR"))
    expected = len(index_paths([dicomdir]).images())
    out = tmp_path / "dicomdir.json"
    assert main(["predict", str(dicomdir), "--models", str(model_dir), "--out", str(out), "--quiet"]) == 0
    document = json.loads(out.read_text())
    images = {r["image_id"] for r in document["images"]}
    failed = {r["image_id"] for r in document["images"] if r.get("error")}
    assert expected > 3 and len(images) == expected
    assert not failed  # every image the DICOMDIR lists is decoded and predicted
    assert len({r["study_id"] for r in document["studies"]}) >= 2
