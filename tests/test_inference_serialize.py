"""Engine results as plain data (radreview.inference.serialize) and in predict's JSON: exact round
trips, the key written only when asked, and bad input named."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from radreview.cli import main
from radreview.gui.heatmap_overlay import heatmap_intensity
from radreview.inference.engine import Engine
from radreview.inference.presentation import present_image
from radreview.inference.registry import discover
from radreview.inference.serialize import ResultFormatError, image_from_dict, image_to_dict
from radreview.inference.toy import toy_card, write_toy_model

REGIONS = [("hand", "region"), ("leg", "region")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_toy_model(folder / "region.onnx", toy_card("region", REGIONS, size=96))
    write_toy_model(folder / "fracture.onnx", toy_card("fracture", [("fractured", "fracture")], size=64), seed=1)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory, fracatlas_dir) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for path in sorted((fracatlas_dir / "images" / "Fractured").glob("*.jpg"))[:2]:
        shutil.copy(path, folder / path.name)
    return folder


def test_an_image_result_round_trips_exactly(images, model_dir):
    from radreview.studies import decode_image, index_paths, render_display
    from radreview.inference.preprocess import to_display_gray

    engine = Engine(discover([model_dir]).models, provider="cpu")
    entry = index_paths([next(images.iterdir())]).images()[0]
    result = engine.predict(to_display_gray(render_display(decode_image(entry))))
    back = image_from_dict(json.loads(json.dumps(image_to_dict(result))))
    assert [r.key for r in back.labels] == [r.key for r in result.labels]
    for a, b in zip(result.labels, back.labels, strict=True):
        assert (a.probability, a.logit, a.tier, a.possible, a.likely, a.geometry) == \
               (b.probability, b.logit, b.tier, b.possible, b.likely, b.geometry)
        assert b.cam.dtype == np.float32 and np.array_equal(a.cam, b.cam)
        # what the viewer draws from the original and from the copy is the same, pixel for pixel
        assert np.array_equal(heatmap_intensity(a, gate="possible"), heatmap_intensity(b, gate="possible"))
    assert back.regions == result.regions and back.scopes == result.scopes
    assert present_image(back) == present_image(result)


def test_predict_json_carries_results_and_the_key_only_when_asked(images, model_dir, tmp_path):
    out = tmp_path / "results.json"
    assert main(["predict", str(images), "--models", str(model_dir), "--out", str(out), "--quiet"]) == 0
    document = json.loads(out.read_text())
    assert "key_file" not in document and not list(tmp_path.glob("*.csv"))
    entries = document["image_results"]
    assert len(entries) == 2 and all("path" not in e for e in entries)
    assert str(images) not in out.read_text()  # pseudonymous by default, heatmaps or not
    fracture = next(r for r in entries[0]["result"]["labels"] if r["label"] == "fractured")
    assert fracture["cam"]["dtype"] == "float32-le" and fracture["geometry"]["rows"] > 0
    key = tmp_path / "key.csv"
    assert main(["predict", str(images), "--models", str(model_dir), "--out", str(out), "--key", str(key),
                 "--quiet"]) == 0
    assert json.loads(out.read_text())["key_file"] == "key.csv"
    rows = list(csv.DictReader(key.open()))
    assert {r["image_id"] for r in rows} == {e["image_id"] for e in entries}
    assert {Path(r["path"]).name for r in rows} == {p.name for p in images.iterdir()}


def test_key_may_not_overwrite_the_results(images, model_dir, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["predict", str(images), "--models", str(model_dir), "--out", str(out), "--key", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err and not out.exists()


def _label() -> dict:
    return {"model": "m", "version": "1", "label": "fractured", "display_name": "Fracture", "task": "fracture",
            "probability": 0.7, "logit": 0.85, "tier": "likely", "possible": 0.2, "likely": 0.6,
            "cam": {"shape": [2, 2], "dtype": "float32-le", "base64": "AACAPwAAAEAAAEBAAACAQA=="},
            "geometry": {"rows": 40, "cols": 30, "height": 64, "width": 64, "top": 0, "left": 8,
                         "new_rows": 64, "new_cols": 48}}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(probability=1.5), "probability 1.5 is not between 0 and 1"),
    (lambda d: d.update(probability="high"), "'probability' must be a number"),
    (lambda d: d.pop("model"), "'model' must be text (missing)"),
    (lambda d: d.update(tier="certain"), "tier 'certain'"),
    (lambda d: d.update(in_scope="yes"), "in_scope must be true, false or null"),
    (lambda d: d["cam"].update(base64="AAAA"), "3 bytes, a 2x2 float32 map has 16"),
    (lambda d: d["cam"].update(base64="not base64!"), "not base64"),
    (lambda d: d["cam"].update(shape=[2, 2, 1]), "shape must be [rows, cols]"),
    (lambda d: d.update(cam=[[1.0, 2.0], [3.0]]), "rows of different or zero length"),
    (lambda d: d.update(cam=[[1.0, float("nan")]]), "not finite"),
    (lambda d: d["geometry"].update(top=10), "does not lie inside the model canvas"),
    (lambda d: d["geometry"].pop("rows"), "'rows' must be a whole number"),
])
def test_bad_serialised_labels_are_named(change, message):
    raw = _label()
    good = image_from_dict({"labels": [copy.deepcopy(raw)]})
    assert good.labels[0].cam.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    change(raw)
    with pytest.raises(ResultFormatError, match="label 1") as caught:
        image_from_dict({"labels": [raw]}, "image result")
    assert message in str(caught.value)


def test_bad_serialised_images_are_named():
    with pytest.raises(ResultFormatError, match="format 'other/1'"):
        image_from_dict({"format": "other/1", "labels": []})
    with pytest.raises(ResultFormatError, match="'labels' must be a list"):
        image_from_dict({"labels": {}})
    with pytest.raises(ResultFormatError, match="status 'maybe'"):
        image_from_dict({"labels": [], "scopes": {"m": {"model": "m", "status": "maybe"}}})
