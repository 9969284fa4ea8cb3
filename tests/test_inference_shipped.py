"""The shipped models (``models/*.onnx``) on the bundled demo studies, through the real pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from radreview.cli import main
from radreview.inference.engine import Engine
from radreview.inference.registry import discover

SHIPPED = REPO_ROOT / "models"
DEMO = REPO_ROOT / "resources" / "demo"
pytestmark = pytest.mark.skipif(not any(SHIPPED.glob("*.onnx")), reason="no shipped models in models/ yet")


def test_every_shipped_model_passes_the_registry_checks():
    catalog = discover([SHIPPED])
    assert catalog.problems == [], [str(p) for p in catalog.problems]
    tasks = {label.task for m in catalog.models for label in m.card.labels}
    assert {"region", "fracture", "hardware"} <= tasks
    for model in catalog.models:
        card = model.card
        assert "research" in card.intended_use.lower()
        assert card.training_data.get("licence") and card.training_data.get("attribution")
        assert all(label.operating_points is not None for label in card.labels)


def test_shipped_models_name_the_region_of_each_demo_study(tmp_path):
    out = tmp_path / "demo.json"
    assert main(["predict", str(DEMO), "--models", str(SHIPPED), "--out", str(out), "--identifiers",
                 "--cam-dir", str(tmp_path / "cams"), "--quiet"]) == 0
    document = json.loads(out.read_text())
    assert not [p for p in document["problems"]]
    by_study: dict[str, dict[str, float]] = {}
    folder_of: dict[str, str] = {}
    for row in document["images"]:
        if row.get("task") == "region":
            folder_of[row["study_id"]] = Path(row["path"]).relative_to(DEMO).parts[0]
    for row in document["studies"]:
        if row["task"] == "region":
            by_study.setdefault(row["study_id"], {})[row["label"]] = row["probability"]
    checked = 0
    for study, probabilities in by_study.items():
        folder = folder_of[study]
        if folder.startswith("DEMO_"):
            expected = folder.removeprefix("DEMO_").lower()
            assert max(probabilities, key=probabilities.get) == expected, (folder, probabilities)
            checked += 1
    assert checked == 4


def test_shipped_models_in_the_viewer_engine_give_maps_registered_with_the_image():
    from radreview.inference.preprocess import cam_to_image
    from radreview.studies import decode_image, index_paths, render_display

    engine = Engine(discover([SHIPPED]).models, provider="cpu")
    entry = index_paths([DEMO / "DEMO_HAND"]).images()[0]
    display = render_display(decode_image(entry))
    result = engine.predict(display)
    assert "hand" in result.regions
    for label in result.labels:
        heat = cam_to_image(label.cam, label.geometry)
        assert heat.shape == display.shape[:2]
        assert float(label.cam.mean()) == pytest.approx(label.logit, abs=1e-3)  # exact CAM in the graph


def test_shipped_fracture_map_is_dark_on_a_normal_image_and_lit_on_a_fracture(fracatlas_dir):
    """Absolute scale gated at the 'likely' point: no heat without evidence, heat with it."""
    from radreview.inference.cam import CamDisplay, gate_probability
    from radreview.studies import decode_image, index_paths, render_display

    engine = Engine(discover([SHIPPED]).models, provider="cpu")

    def fracture(path: Path):
        entry = index_paths([path]).images()[0]
        label = engine.predict(render_display(decode_image(entry))).get("fractured")
        gate = gate_probability(label, "likely")
        return label, CamDisplay(gate=gate).intensity(label.cam, label.probability)

    normal, normal_heat = fracture(fracatlas_dir / "images" / "Non_fractured" / "IMG0000519.jpg")
    assert normal.probability < normal.likely and normal_heat.max() == 0.0
    broken, broken_heat = fracture(DEMO / "DEMO_HAND" / "IMG0000019.dcm")
    assert broken.probability >= broken.likely and broken_heat.max() > 0.5
