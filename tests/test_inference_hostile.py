"""Issue 12, models and predict: malformed cards refused at load, a model's failure contained to
that model, names never becoming paths, results written as predict goes, CSV cells that cannot
run as formulas, undecodable file names written escaped, hostile files among good ones."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

import _hostile_files as hostile
from radreview.cli import main
from radreview.csv_safety import escape_undecodable, neutralise, safe_cell
from radreview.inference.batch import heatmap_path, predict_paths
from radreview.inference.card import CARD_METADATA_KEY, ModelCard, ModelCardError, weights_sha256
from radreview.inference.engine import Engine
from radreview.inference.registry import discover
from radreview.inference.toy import build_graph, toy_card, write_toy_model
from radreview.limits import Limits, set_limits

REGIONS = [("hand", "region"), ("leg", "region")]


@pytest.fixture(autouse=True)
def default_limits():
    previous = set_limits(Limits())
    yield
    set_limits(previous)


@pytest.fixture(scope="module")
def good_models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_toy_model(folder / "region.onnx", toy_card("region", REGIONS, size=64))
    write_toy_model(folder / "fracture.onnx", toy_card("fracture", [("fractured", "fracture")], size=64), seed=1)
    return folder


@pytest.fixture
def inputs(tmp_path) -> Path:
    return hostile.good_folder(tmp_path / "inputs")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_raw_card(path: Path, card_text: str, labels: int = 1, size: int = 64, dynamic_k: bool = False) -> Path:
    """A toy graph with ``card_text`` stored as its card, as a hostile file would: no validation."""
    model = build_graph(labels, size)
    if dynamic_k:  # declare K symbolic, so that only running the model shows what it returns
        for output in model.graph.output:
            output.type.tensor_type.shape.dim[1].dim_param = "K"
    model.metadata_props.add(key=CARD_METADATA_KEY, value=card_text)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def card_dict(name: str = "hostile", labels=(("fractured", "fracture"),), size: int = 64, model=None) -> dict:
    raw = toy_card(name, list(labels), size=size).to_dict()
    raw["weights_sha256"] = weights_sha256(model or build_graph(len(labels), size))
    return raw


MALFORMED = {
    "labels is a string": (lambda c: c.update(labels="fractured"), "'labels' must be a list, got a string"),
    "label is a string": (lambda c: c.update(labels=["fractured"]), "'labels[0]' must be an object, got a string"),
    "index is text": (lambda c: c["labels"][0].update(index="0"), "'labels[0].index' must be a whole number"),
    "index is fractional": (lambda c: c["labels"][0].update(index=0.5), "'labels[0].index' must be a whole number"),
    "name is a number": (lambda c: c.update(name=7), "'name' must be a string"),
    "mean is NaN": (lambda c: c["input"].update(mean=[math.nan, 0.4, 0.4]), "input normalisation is not finite"),
    "std is zero": (lambda c: c["input"].update(std=[0, 0, 0]), "input std must be > 0"),
    "std is a string": (lambda c: c["input"].update(std="0.2"), "'input.std' must be a list"),
    "input 60000 x 60000": (lambda c: c["input"].update(height=60000, width=60000),
                            "input size 60000x60000 is larger than radreview allows"),
    "label path traversal": (lambda c: c["labels"][0].update(name="/../../../x"), "label name '/../../../x' is not allowed"),
    "label formula": (lambda c: c["labels"][0].update(name="=HYPERLINK(1)"), "label name '=HYPERLINK(1)' is not allowed"),
    "model name path": (lambda c: c.update(name="../shipped"), "model name '../shipped' is not allowed"),
    "name too long": (lambda c: c.update(name="m" * 65), "is longer than 64 characters"),
    "duplicate labels": (lambda c: c["labels"].append({**c["labels"][0], "index": 1}), "appears twice"),
    "operating point NaN": (lambda c: c["labels"][0]["operating_points"].update(likely=math.nan), "not finite numbers"),
    "operating points text": (lambda c: c["labels"][0].update(operating_points="high"),
                              "'labels[0].operating_points' must be an object"),
    "regions not strings": (lambda c: c["labels"][0].update(applies_to_regions=[1]), "must be a list of strings"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED), ids=sorted(MALFORMED))
def test_malformed_card_is_refused_at_load_and_the_good_models_carry_on(tmp_path, good_models, case):
    mutate, message = MALFORMED[case]
    raw = card_dict()
    mutate(raw)
    labels = len(raw["labels"]) if isinstance(raw["labels"], list) else 1
    bad = write_raw_card(tmp_path / "bad" / "hostile.onnx", json.dumps(raw), labels=labels)
    catalog = discover([good_models, bad.parent])
    assert sorted(m.card.name for m in catalog.models) == ["fracture", "region"]
    [problem] = catalog.problems
    assert problem.path == bad and message in problem.reason, problem.reason


def test_card_text_is_bounded_before_parsing(tmp_path, good_models):
    raw = card_dict()
    raw["description"] = "x" * 300_000
    bad = write_raw_card(tmp_path / "bad" / "long.onnx", json.dumps(raw))
    set_limits(max_card_bytes=200_000)
    catalog = discover([good_models, bad.parent])
    assert "more than radreview reads" in catalog.problems[0].reason
    assert "max_card_bytes" in catalog.problems[0].reason
    assert len(catalog.models) == 2


def test_zero_std_card_no_longer_writes_nan_for_every_image(tmp_path, good_models, inputs, capsys):
    raw = card_dict("zero-std")
    raw["input"]["std"] = [0.0, 0.0, 0.0]
    write_raw_card(tmp_path / "user" / "zero.onnx", json.dumps(raw))
    out = tmp_path / "r.csv"
    assert main(["predict", str(inputs), "--models", str(good_models), "--models", str(tmp_path / "user"),
                 "--out", str(out), "--quiet"]) == 0
    assert "skipping model" in capsys.readouterr().err
    rows = read_csv(out)
    assert {r["model"] for r in rows} == {"region", "fracture"}
    assert all(r["probability"] != "nan" for r in rows)


def test_model_returning_fewer_logits_than_its_card_is_a_problem_for_that_model_only(tmp_path, good_models, inputs,
                                                                                     capsys):
    graph = build_graph(2, 64)
    for output in graph.graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = "K"
    raw = card_dict("short", labels=(("a", "fracture"), ("b", "fracture"), ("c", "fracture")), model=graph)
    write_raw_card(tmp_path / "user" / "short.onnx", json.dumps(raw), labels=2, dynamic_k=True)
    catalog = discover([good_models, tmp_path / "user"])
    assert not catalog.problems and len(catalog.models) == 3  # the file's own signature does not tell
    out = tmp_path / "r.csv"
    assert main(["predict", str(inputs), "--models", str(good_models), "--models", str(tmp_path / "user"),
                 "--out", str(out), "--quiet", "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "model short 1.0 failed: returned logits of shape [2, 2], but its card lists 3 labels" in err
    rows = read_csv(out)
    images = {r["image_id"] for r in rows if r["level"] == "image"}
    assert len(images) == 3
    for image in images:  # the good models answered every image; the bad one has an error row
        mine = [r for r in rows if r["image_id"] == image]
        assert {r["label"] for r in mine if r["model"] == "fracture"} == {"fractured"}
        assert {r["label"] for r in mine if r["model"] == "region"} == {"hand", "leg"}
        [short] = [r for r in mine if r["model"] == "short"]
        assert "card lists 3 labels" in short["error"] and not short["probability"]


def test_heatmap_names_cannot_leave_the_cam_folder(tmp_path):
    assert heatmap_path(tmp_path, "S00001-I001", "m", "fractured") == tmp_path / "S00001-I001_m_fractured.png"
    for label in ("/../../../x", "../x", "a/b", "a\\b"):
        with pytest.raises(ValueError, match="would leave"):
            heatmap_path(tmp_path, "S00001-I001", "m", label)


def test_label_path_traversal_card_writes_nothing_outside_cam_dir(tmp_path, good_models, inputs, capsys):
    raw = card_dict("climber")
    raw["labels"][0]["name"] = "/../../../x"
    write_raw_card(tmp_path / "deep" / "a" / "b" / "user" / "climber.onnx", json.dumps(raw))
    cams = tmp_path / "deep" / "a" / "b" / "cams"
    out = tmp_path / "r.csv"
    assert main(["predict", str(inputs), "--models", str(good_models), "--models", str(tmp_path / "deep/a/b/user"),
                 "--out", str(out), "--quiet", "--cam-dir", str(cams), "--cam-all"]) == 0
    assert "label name '/../../../x' is not allowed" in capsys.readouterr().err
    assert not list(tmp_path.rglob("x.png"))
    assert all(p.parent == cams for p in tmp_path.rglob("*.png"))


def test_model_shadowing_another_by_name_is_reported_naming_both(tmp_path, good_models, inputs, capsys):
    user = tmp_path / "user"
    write_toy_model(user / "my_fracture.onnx", toy_card("fracture", [("fractured", "fracture")], version="9.9"),
                    seed=3)
    catalog = discover([good_models, user])
    assert {m.card.name: m.card.version for m in catalog.models}["fracture"] == "9.9"
    [problem] = catalog.problems
    assert problem.path == good_models / "fracture.onnx"
    assert str(user / "my_fracture.onnx") in problem.reason and "'fracture'" in problem.reason
    assert main(["predict", str(inputs), "--models", str(good_models), "--models", str(user),
                 "--out", str(tmp_path / "r.csv"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert str(good_models / "fracture.onnx") in err and str(user / "my_fracture.onnx") in err


@pytest.mark.skipif(os.name != "posix", reason="symlinks, FIFOs and byte file names are POSIX")
def test_predict_over_a_folder_of_hostile_files_predicts_every_good_one(tmp_path, good_models, inputs, capsys):
    hostile.gdcm_abort_file("JPEG2000.dcm", inputs / "garbage_j2k.dcm")
    hostile.gdcm_abort_file("JPEG-LL.dcm", inputs / "garbage_ll.dcm")
    hostile.jpeg_claiming((30000, 30000), inputs / "jpeg_bomb.dcm")
    os.symlink("self.dcm", inputs / "self.dcm")
    os.symlink("pong.dcm", inputs / "ping.dcm")
    os.symlink("ping.dcm", inputs / "pong.dcm")
    os.mkfifo(inputs / "pipe.dcm")
    with open(inputs / "zeros.dcm", "wb") as handle:
        handle.truncate(1 << 20)
    out = tmp_path / "r.csv"
    assert main(["predict", str(inputs), "--models", str(good_models), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    for name in ("garbage_j2k.dcm", "garbage_ll.dcm", "jpeg_bomb.dcm", "self.dcm", "ping.dcm", "pong.dcm",
                 "pipe.dcm", "zeros.dcm"):
        assert f"{name}:" in err, name
    assert "SIGABRT" in err and "symbolic link loop" in err and "named pipe" in err
    rows = read_csv(out)
    predicted = {r["image_id"] for r in rows if r["level"] == "image" and r["probability"]}
    assert len(predicted) == 3  # mr, ct, hip: every good file
    assert not out.with_name("r.csv.partial").exists()


@pytest.mark.skipif(os.name != "posix", reason="byte file names are POSIX")
@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_invalid_utf8_file_names_are_written_escaped(tmp_path, good_models, inputs, suffix):
    name = os.fsdecode(b"caf\xe9_\xff.dcm")  # Latin-1 bytes: not UTF-8
    shutil.copy(hostile.testfile("JPEG2000.dcm"), inputs / name)
    out = tmp_path / f"r{suffix}"
    assert main(["predict", str(inputs), "--models", str(good_models), "--out", str(out), "--quiet",
                 "--identifiers"]) == 0
    text = out.read_text(encoding="utf-8")  # valid UTF-8 from end to end
    if suffix == ".csv":
        paths = {r["path"] for r in read_csv(out) if r["level"] == "image"}
    else:
        paths = {r["path"] for r in json.loads(text)["images"]}
    assert len(paths) == 4 and str(inputs / "caf\\xe9_\\xff.dcm") in paths


def test_formula_cells_are_neutralised_in_predict_csv(tmp_path, good_models, monkeypatch):
    import pydicom

    folder = tmp_path / "in"
    folder.mkdir()
    ds = pydicom.dcmread(hostile.testfile("MR_small.dcm"))
    ds.PatientID = '=HYPERLINK("http://evil.example","click")'
    ds.save_as(folder / "a.dcm")
    shutil.copy(hostile.testfile("CT_small.dcm"), folder / "@SUM(1+1).dcm")
    hostile.gdcm_abort_file("JPEG2000.dcm", folder / "+2-3.dcm")  # indexed, fails to decode: an error row
    monkeypatch.chdir(folder)  # relative paths: a cell can start with the name itself
    out = tmp_path / "r.csv"
    assert main(["predict", "a.dcm", "@SUM(1+1).dcm", "+2-3.dcm", "--models", str(good_models), "--out", str(out),
                 "--quiet", "--identifiers"]) == 0
    rows = read_csv(out)
    cells = [value for row in rows for value in row.values() if value]
    assert "'=HYPERLINK(\"http://evil.example\",\"click\")" in cells
    assert "'@SUM(1+1).dcm" in cells and "'+2-3.dcm" in cells
    assert not [c for c in cells if c.startswith(("=", "+", "@", "\t", "\r")) or (c.startswith("-") and not _number(c))]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_csv_safety_rules():
    assert neutralise("=1+1") == "'=1+1" and neutralise("+x") == "'+x" and neutralise("@a") == "'@a"
    assert neutralise("-a") == "'-a" and neutralise("\tx") == "'\tx" and neutralise("\rx") == "'\rx"
    assert neutralise("fracture") == "fracture" and neutralise(-0.5) == -0.5 and neutralise("") == ""
    assert escape_undecodable(os.fsdecode(b"a\xffb")) == "a\\xffb"
    assert escape_undecodable("\ud800") == "\\ud800" and escape_undecodable("é") == "é"
    assert safe_cell(os.fsdecode(b"=\xff")) == "'=\\xff"


CRASH_AT = 6
CRASHING_PREDICT = f"""
import os, signal, sys
import radreview.inference.batch as batch
real = batch._process_chunk
def process(chunk, *args):
    if chunk[0] == {CRASH_AT}:
        os.kill(os.getpid(), signal.SIGKILL)  # as a native abort would: no clean-up runs
    return real(chunk, *args)
batch._process_chunk = process
from radreview.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_predict_writes_as_it_goes_so_a_crash_loses_only_what_is_in_flight(tmp_path, good_models, suffix):
    import pydicom

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(10):
        ds = pydicom.dcmread(hostile.testfile("MR_small.dcm" if i % 2 else "CT_small.dcm"))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.{i}"  # ten distinct images
        ds.save_as(folder / f"{i:02d}.dcm")
    out = tmp_path / f"r{suffix}"
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_PREDICT, "predict", str(folder), "--models", str(good_models), "--out", str(out),
         "--quiet", "--batch-size", "1", "--workers", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(hostile.REPO_ROOT)})
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert not out.exists()  # never a half file under the real name
    partial = out.with_name(out.name + ".partial")
    if suffix == ".csv":
        rows = read_csv(partial)
    else:
        rows = [json.loads(line) for line in partial.read_text().splitlines()]
    images = sorted({r["image_id"] for r in rows})
    # chunks are queued two ahead of the one being written: image CRASH_AT starts only after
    # image CRASH_AT - 2 has been written
    assert len(images) >= CRASH_AT - 1
    for image in images:  # every image written is whole: all three labels
        assert sorted(r["label"] for r in rows if r["image_id"] == image) == ["fractured", "hand", "leg"]


def test_batch_function_contains_a_failing_model(tmp_path, good_models, inputs):
    graph = build_graph(1, 64)
    for output in graph.graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = "K"
    raw = card_dict("twice", labels=(("a", "fracture"), ("b", "fracture")), model=graph)
    write_raw_card(tmp_path / "user" / "twice.onnx", json.dumps(raw), labels=1, dynamic_k=True)
    engine = Engine(discover([good_models, tmp_path / "user"]).models, provider="cpu")
    seen = []
    result = predict_paths([inputs], engine, on_record=seen.append)
    assert [r.image_id for r in seen] == [r.image_id for r in result.images]  # in order, each once
    assert all(r.result is not None and "twice" in r.result.errors for r in result.images)
    assert all({lab.model for lab in r.result.labels} == {"region", "fracture"} for r in result.images)
    assert len(result.notes) == 3 and not result.problems


def test_model_card_round_trip_still_validates(good_models):
    card = discover([good_models]).models[0].card
    assert ModelCard.from_json(card.to_json()) == card
    with pytest.raises(ModelCardError, match="not a JSON object"):
        ModelCard.from_dict([])
