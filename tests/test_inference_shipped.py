"""The shipped models (``models/*.onnx``) on the bundled demo studies, through the real pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
        return label, CamDisplay(gate=gate, span_logits=label.cam_span).intensity(label.cam, label.probability)

    normal, normal_heat = fracture(fracatlas_dir / "images" / "Non_fractured" / "IMG0000519.jpg")
    assert normal.probability < normal.likely and normal_heat.max() == 0.0
    broken, broken_heat = fracture(DEMO / "DEMO_HAND" / "IMG0000019.dcm")
    # the card's colour span puts a typical validation positive at the hot end; this one is moderate
    assert broken.cam_span and broken.probability >= broken.likely and broken_heat.max() > 0.25


# -- the shipped model's scope check and calibration (issue 10) --------------------------------
def _shipped_engine() -> Engine:
    return Engine(discover([SHIPPED]).models, provider="cpu")


def _display(path):
    from radreview.studies import decode_image, index_paths, render_display

    index = index_paths([path])
    entry = next(e for s in index.studies() for e in s.images())
    return render_display(decode_image(entry))


def test_shipped_models_have_a_scope_check_and_calibrated_cut_offs():
    for model in _shipped_engine().models:
        assert model.scope is not None, model.scope_note
        assert model.calibrated
        for label in model.card.labels:
            ops = label.operating_points
            assert ops.basis.get("split") == "validation" and ops.basis.get("n_pos", 0) > 0
        # hardware rests on 8 validation positives: no tier, and the card says why
        hardware = next(lab for lab in model.card.labels if lab.name == "hardware")
        assert not hardware.operating_points.reliable


@pytest.mark.parametrize("name", ["DEMO_HAND", "DEMO_HIP", "DEMO_LEG", "DEMO_SHOULDER", "jpeg", "pydicom-data"])
def test_real_msk_radiographs_are_inside_the_scope(name):
    engine = _shipped_engine()
    folder = DEMO / name
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "DICOMDIR" and p.suffix != ".md")
    for path in files:
        result = engine.predict(_display(path), with_cam=False)
        assert result.in_scope is True, (path.name, result.scopes)


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "693_UNCR.dcm", "MR2_UNCR.dcm", "US1_UNCR.dcm", "OBXXXX1A.dcm", "JPEG2000_UNC.dcm"])
def test_non_msk_dicoms_are_outside_the_scope_and_show_no_findings(name, pydicom_data_file):
    from radreview.inference.presentation import OUT_OF_SCOPE_MESSAGE, present_image

    result = _shipped_engine().predict(_display(pydicom_data_file(name)))
    assert result.in_scope is False
    shown = present_image(result)
    assert shown.verdict_text == OUT_OF_SCOPE_MESSAGE and not shown.shown_findings
    assert all(label.tier == "out_of_scope" for label in result.labels)


def test_deid_data_ct_and_ultrasound_are_outside_the_scope():
    import deid_data

    root = Path(deid_data.__file__).parent / "data"
    files = sorted(p for sub in ("humans", "ultrasounds") for p in (root / sub).rglob("*") if p.is_file()
                   and not p.name.endswith((".py", ".pyc")))
    engine = _shipped_engine()
    verdicts = {}
    for path in files:
        try:
            display = _display(path)
        except Exception:  # a file the viewer cannot open (a damaged sample) is not a scope question
            continue
        verdicts[path.name] = engine.predict(display, with_cam=False).in_scope
    assert verdicts and all(v is False for v in verdicts.values()), verdicts


@pytest.mark.parametrize("kind", ["noise", "blank", "text", "gradient"])
def test_synthetic_images_are_outside_the_scope(kind):
    import numpy as np
    from PIL import Image, ImageDraw

    if kind == "noise":
        image = np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8)
    elif kind == "blank":
        image = np.full((400, 600), 128, np.uint8)
    elif kind == "gradient":
        image = np.tile(np.linspace(0, 255, 512, dtype=np.uint8), (512, 1))
    else:
        page = Image.new("L", (640, 480), 255)
        draw = ImageDraw.Draw(page)
        for j in range(12):
            draw.text((10, 20 + 35 * j), f"Discharge letter line {j}: lorem ipsum dolor sit amet", fill=0)
        image = np.asarray(page)
    assert _shipped_engine().predict(image, with_cam=False).in_scope is False


def test_predict_heatmap_files_draw_what_the_viewer_draws(tmp_path):
    """--cam-dir files take each label's colour span from its card and its gate from the viewer's
    legend (present_heatmap): pixel for pixel the viewer's intensities, and no file where the
    viewer draws nothing."""
    import io

    from PIL import Image

    from radreview.inference.batch import OverlayStyle, display_base, predict_paths
    from radreview.inference.heatmap_files import DEFLATE, overlay
    from radreview.inference.preprocess import cam_to_image
    from radreview.inference.presentation import TIER_WORDS, present_heatmap

    assert DEFLATE == "isal"  # the project's dependency; zlib is only the fallback
    engine = _shipped_engine()
    cams = tmp_path / "cams"
    result = predict_paths([DEMO / "DEMO_HAND", DEMO / "jpeg"], engine, cam_dir=cams, workers=1)
    written = {p.name for p in result.cam_files}
    assert written and all(p.suffix == ".png" for p in result.cam_files)
    spans = 0
    for record in result.images:
        gray = _gray_of(record.path)
        for label in record.result.labels:
            legend = present_heatmap(label, "absolute", "likely")
            name = f"{record.image_id}_{label.model}_{label.label}.png"
            finding = label.task != "region"  # the viewer's table lists findings; regions have no heatmap
            assert (name in written) == (legend.drawn and finding), (name, legend.note)
            if name not in written:
                continue
            spans += legend.span_source == "model card"
            base = display_base(gray)
            expected = overlay(base, legend.intensity(cam_to_image(label.cam, label.geometry, base.shape)))
            with Image.open(io.BytesIO((cams / name).read_bytes())) as image:
                assert np.array_equal(np.asarray(image), expected), name
                assert f"({legend.span_text})" in image.text["Description"]
                # the tier in the presentation's words ("no tier" for a label without cut-offs)
                assert f"({TIER_WORDS[label.tier]})" in image.text["Description"]
    assert spans  # the fracture label's span (7.61 logits) comes from the card, not the old fixed 24
    style = OverlayStyle(span=24.0)
    assert style.legend(record.result.labels[0]).span_source == "user"


def _gray_of(path):
    from radreview.inference.fast_decode import display_gray
    from radreview.studies import index_paths

    return display_gray(index_paths([path]).images()[0])
