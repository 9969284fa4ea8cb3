"""Inference core with real ONNX models built here: registry, providers, preprocessing, chain, CAM."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from radreview.inference import cam as cam_mod
from radreview.inference.aggregate import aggregate_studies
from radreview.inference.card import ModelCardError, read_card
from radreview.inference.engine import Engine, applies
from radreview.inference.preprocess import (
    ImageInputError,
    LetterboxGeometry,
    cam_to_image,
    letterbox,
    letterbox_with_geometry,
    prepare,
    to_display_gray,
)
from radreview.inference.registry import check_model_file, discover
from radreview.inference.sessions import available_providers, create_session
from radreview.inference.toy import build_graph, toy_card, write_toy_model
from _letterbox_reference import _letterbox_copy
from radreview.training.letterbox import letterbox as training_letterbox


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_toy_model(folder / "region.onnx", toy_card("region", [("hand", "region"), ("leg", "region")]))
    write_toy_model(
        folder / "fracture.onnx",
        toy_card("fracture", [("fractured", "fracture")], applies_to={"fractured": ("hand",)}),
        seed=1,
    )
    write_toy_model(folder / "hardware.onnx", toy_card("hardware", [("hardware", "hardware")]), seed=2)
    return folder


@pytest.fixture(scope="module")
def engine(model_dir) -> Engine:
    return Engine(discover([model_dir]).models, provider="cpu", threads=1)


def bright_blob(rows=300, cols=200, box=(40, 140, 40, 160)) -> np.ndarray:
    image = np.full((rows, cols), 10, np.uint8)
    image[box[0] : box[1], box[2] : box[3]] = 250
    return image


# -- registry ------------------------------------------------------------------------------
def test_registry_reads_cards_and_verifies(model_dir):
    catalog = discover([model_dir])
    assert sorted(m.card.name for m in catalog.models) == ["fracture", "hardware", "region"]
    assert catalog.problems == []
    assert all(len(m.card.weights_sha256) == 64 for m in catalog.models)


def _problem(tmp_path, path) -> str:
    catalog = discover([tmp_path])
    assert catalog.models == []
    assert len(catalog.problems) == 1 and catalog.problems[0].path == path
    return catalog.problems[0].reason


def test_registry_refuses_a_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model")
    assert "not an ONNX model" in _problem(tmp_path, path)


def test_registry_refuses_a_model_without_card(tmp_path):
    path = tmp_path / "bare.onnx"
    onnx.save(build_graph(1), str(path))
    assert "no radreview model card" in _problem(tmp_path, path)


def test_registry_refuses_a_malformed_card(tmp_path):
    path = tmp_path / "bad_card.onnx"
    model = build_graph(1)
    model.metadata_props.add(key="radreview.model_card", value='{"schema": "radreview.model_card/1", "name": "x"}')
    onnx.save(model, str(path))
    assert "has no 'input'" in _problem(tmp_path, path)


def test_registry_refuses_a_checksum_mismatch(tmp_path):
    path = tmp_path / "tampered.onnx"
    write_toy_model(path, toy_card("tampered", [("hand", "region")]))
    model = onnx.load(str(path))
    weights = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    weights[0, 0, 0, 0] += 1.0
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weights, model.graph.initializer[0].name))
    onnx.save(model, str(path))
    assert "checksum mismatch" in _problem(tmp_path, path)


def test_registry_refuses_wrong_input_shape(tmp_path):
    path = tmp_path / "shape.onnx"
    card = toy_card("shape", [("hand", "region")], size=64)
    onnx.save(build_graph(1, size=64), str(path))
    # a card claiming 96x96 for a graph that takes 64x64
    write_card_anyway = dataclasses.replace(card, input=dataclasses.replace(card.input, height=96, width=96))
    from radreview.inference.card import write_card

    write_card(path, write_card_anyway)
    assert "wrong input shape" in _problem(tmp_path, path)


def test_registry_refuses_label_count_mismatch(tmp_path):
    path = tmp_path / "count.onnx"
    onnx.save(build_graph(2), str(path))
    from radreview.inference.card import write_card

    write_card(path, toy_card("count", [("hand", "region")]))
    assert "lists 1 labels" in _problem(tmp_path, path)


def test_registry_names_a_missing_folder(tmp_path):
    catalog = discover([tmp_path / "nowhere"])
    assert "models folder not found" in str(catalog.problems[0])


def test_later_folder_overrides_same_name(tmp_path, model_dir):
    user = tmp_path / "user"
    write_toy_model(user / "hardware.onnx", toy_card("hardware", [("hardware", "hardware")], version="2.0"), seed=5)
    catalog = discover([model_dir, user])
    assert {m.card.name: m.card.version for m in catalog.models}["hardware"] == "2.0"


def test_check_model_file_matches_read_card(model_dir):
    path = model_dir / "region.onnx"
    assert check_model_file(path).card == read_card(path)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ModelCardError, match="not found"):
        check_model_file(tmp_path / "missing.onnx")


# -- providers -----------------------------------------------------------------------------
def test_cpu_always_available():
    assert "cpu" in available_providers()


@pytest.mark.parametrize("requested", ["cuda", "directml", "coreml"])
def test_unavailable_provider_falls_back_to_cpu_with_a_note(model_dir, requested):
    if requested in available_providers():
        pytest.skip(f"{requested} is really available here")
    session, info = create_session(model_dir / "region.onnx", requested)
    assert info.provider == "cpu" and info.requested == requested
    assert requested in info.note and "CPU" in info.note
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_auto_picks_a_provider_that_runs(model_dir):
    session, info = create_session(model_dir / "region.onnx", "auto")
    assert info.provider in available_providers()
    logits, cam = session.run(None, {"image": np.zeros((2, 3, 64, 64), np.float32)})
    assert logits.shape == (2, 2) and cam.shape == (2, 2, 8, 8)


def test_unknown_provider_is_refused(model_dir):
    from radreview.inference.sessions import ProviderError

    with pytest.raises(ProviderError, match="unknown provider"):
        create_session(model_dir / "region.onnx", "tpu")


def test_engine_reports_a_model_that_cannot_run(tmp_path, model_dir):
    # a graph that checks as ONNX but that onnxruntime refuses (an operator that does not exist)
    path = tmp_path / "broken.onnx"
    model = build_graph(1)
    model.graph.node[1].op_type = "NoSuchOperator"
    onnx.save(model, str(path))
    from radreview.inference.card import write_card

    write_card(path, toy_card("broken", [("hand", "region")]))
    models = discover([model_dir, tmp_path]).models
    engine = Engine(models, provider="cpu")
    assert [p.path.name for p in engine.problems] == ["broken.onnx"]
    assert "cannot run the model" in engine.problems[0].reason
    assert len(engine.models) == 3  # the others still work
    assert engine.predict(bright_blob()).labels


# -- preprocessing -------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (64, 64), (1000, 17), (9, 9)])
def test_letterbox_is_identical_to_training(shape):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    assert training_letterbox is letterbox
    np.testing.assert_array_equal(letterbox(gray, 64, 96, 0.0), _letterbox_copy(gray, 64, 96, 0.0))
    np.testing.assert_array_equal(letterbox(gray, 64, 64, 0.5), _letterbox_copy(gray, 64, 64, 0.5))


def test_letterbox_geometry_and_padding():
    canvas, geometry = letterbox_with_geometry(np.full((100, 50), 255, np.uint8), 64, 64, pad_value=0.25)
    assert geometry == LetterboxGeometry(100, 50, 64, 64, top=0, left=16, new_rows=64, new_cols=32)
    assert canvas[:, :16].max() == 0.25 and canvas[:, 48:].max() == 0.25
    assert canvas[:, 16:48].min() == 1.0


def test_cam_maps_back_onto_the_original_image():
    """A map that is hot exactly on the letterboxed image's left half comes back as the left half."""
    gray = np.zeros((100, 200), np.uint8)
    _, geometry = letterbox_with_geometry(gray, 64, 64)  # image rows 16..48 of the canvas
    canvas_map = np.zeros((64, 64), np.float32)
    canvas_map[:, :32] = 1.0
    back = cam_to_image(canvas_map, geometry)
    assert back.shape == (100, 200)
    assert back[:, :95].min() > 0.99 and back[:, 105:].max() < 0.01
    small = cam_to_image(canvas_map, geometry, (50, 100))
    assert small.shape == (50, 100)


def test_prepare_normalises_as_the_card_says():
    spec = toy_card("x", [("a", "region")]).input
    tensor, _ = prepare(np.full((64, 64), 255, np.uint8), spec)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32
    expected = (1.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(tensor[:, 10, 10], expected, rtol=1e-6)


def test_colour_image_becomes_grey_like_training():
    from PIL import Image

    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = 200
    grey = to_display_gray(rgb)
    assert grey.shape == (40, 40)
    assert grey[0, 0] == np.asarray(Image.fromarray(rgb).convert("L"))[0, 0]


def test_sixteen_bit_image_is_stretched():
    raw = np.linspace(0, 4095, 64 * 64, dtype=np.float32).reshape(64, 64).astype(np.uint16)
    grey = to_display_gray(raw)
    assert grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255


@pytest.mark.parametrize(
    "pixels, message",
    [
        (np.zeros((4, 400), np.uint8), "too small"),
        (np.zeros((10, 10, 2), np.uint8), "cannot use an image of shape"),
        (np.zeros((2, 10, 10, 3), np.uint8), "cannot use an image of shape"),
        (np.full((20, 20), np.nan, np.float32), "NaN"),
    ],
)
def test_images_the_models_cannot_take(pixels, message):
    with pytest.raises(ImageInputError, match=message):
        to_display_gray(pixels)


def test_huge_image_runs(engine):
    huge = np.zeros((5000, 5000), np.uint8)
    huge[1000:2000, 1000:2000] = 255
    result = engine.predict(huge)
    assert result.labels and all(0.0 <= r.probability <= 1.0 for r in result.labels)


# -- chain, batching, aggregation ----------------------------------------------------------
def test_chain_runs_region_first_and_filters_labels(engine):
    result = engine.predict(bright_blob())
    labels = {r.label for r in result.labels}
    assert {"hand", "leg", "hardware"} <= labels
    # the toy region model's second label ("leg") has the larger gain, so it wins the region
    assert result.regions == ("leg",) or "leg" in result.regions
    assert ("fractured" in labels) == ("hand" in result.regions)
    assert result.providers == ("cpu",)


def test_applies_to_regions_rules():
    card = toy_card("f", [("fractured", "fracture")], applies_to={"fractured": ("hand", "leg")})
    label = card.labels[0]
    assert applies(label, ("hand",)) and not applies(label, ("hip",)) and applies(label, None)


def test_chain_skips_models_for_other_regions(model_dir, tmp_path):
    """With the fracture model limited to the hip, it never runs on a leg image."""
    write_toy_model(tmp_path / "region.onnx", toy_card("region", [("hand", "region"), ("leg", "region")]))
    write_toy_model(tmp_path / "fracture.onnx",
                    toy_card("fracture", [("fractured", "fracture")], applies_to={"fractured": ("hip",)}))
    engine = Engine(discover([tmp_path]).models, provider="cpu")
    result = engine.predict(bright_blob())
    assert result.get("fractured") is None and result.regions


def test_batched_equals_one_at_a_time(engine):
    images = [bright_blob(box=(10 * i, 10 * i + 60, 20, 80)) for i in range(5)]
    prepared = [engine.prepare(image) for image in images]
    engine.batch_size = 4
    batched = engine.infer(prepared)
    single = [engine.infer([p])[0] for p in prepared]
    for a, b in zip(batched, single):
        assert [r.label for r in a.labels] == [r.label for r in b.labels]
        np.testing.assert_allclose([r.probability for r in a.labels], [r.probability for r in b.labels], atol=1e-5)


def test_probabilities_are_the_activation_of_logits(engine):
    for r in engine.predict(bright_blob()).labels:
        assert r.probability == pytest.approx(1 / (1 + math.exp(-r.logit)), abs=1e-6)
        assert r.tier == ("likely" if r.probability >= 0.7 else "possible" if r.probability >= 0.3 else "below")
        # exact CAM: the mean of the local-logit map is the image logit
        assert float(r.cam.mean()) == pytest.approx(r.logit, abs=1e-4)


def test_softmax_labels_sum_to_one(tmp_path):
    write_toy_model(tmp_path / "m.onnx",
                    toy_card("m", [("hand", "region"), ("leg", "region"), ("hip", "region")], activation="softmax"))
    engine = Engine(discover([tmp_path]).models, provider="cpu")
    result = engine.predict(bright_blob())
    assert sum(r.probability for r in result.labels) == pytest.approx(1.0, abs=1e-5)
    assert len(result.regions) >= 1


def test_study_result_is_mean_of_views(engine):
    views = [engine.predict(bright_blob(box=(10, 10 + 40 * i, 10, 150))) for i in range(1, 4)]
    rows = aggregate_studies([("study-1", v) for v in views] + [("study-2", views[0])])
    hardware = [r for r in rows if r.label == "hardware"]
    assert [r.study for r in hardware] == ["study-1", "study-2"]
    expected = np.mean([v.get("hardware").probability for v in views])
    assert hardware[0].probability == pytest.approx(expected) and hardware[0].views == 3
    assert hardware[1].views == 1


# -- CAM display -----------------------------------------------------------------------------
def test_cam_is_hot_where_the_bright_structure_is(engine):
    image = bright_blob(rows=256, cols=256, box=(0, 96, 160, 256))  # top-right corner
    r = engine.predict(image).get("hardware")
    heat = cam_to_image(r.cam, r.geometry)
    assert heat[:96, 160:].mean() > heat[160:, :96].mean() + 1.0


def test_every_scale_keeps_a_normal_image_dark(engine):
    """Below the gate nothing is drawn, in the absolute scale and in the per-image (minmax) one:
    a chest with fracture p = 0.02 must not light up because its own maximum is stretched."""
    dark = np.full((256, 256), 10, np.uint8)
    dark[100:110, 100:110] = 40  # faint texture, no bright structure
    r = engine.predict(dark).get("hardware")
    assert r.probability < r.possible
    assert float(r.cam.max()) > float(r.cam.min())  # there is a maximum that minmax used to paint
    absolute = cam_mod.CamDisplay().intensity(r.cam, r.probability, r.possible)
    minmax = cam_mod.CamDisplay(mode="minmax").intensity(r.cam, r.probability, r.possible)
    assert absolute.max() == 0.0
    assert minmax.max() == 0.0


def test_minmax_stretches_only_the_evidence_above_the_gate():
    local = np.array([[-3.0, 0.0], [1.0, 3.0]], np.float32)
    minmax = cam_mod.CamDisplay(mode="minmax", image_gate=False)
    # gate p 0.5 = logit 0: below it transparent, the image's maximum at the top of the scale
    np.testing.assert_allclose(minmax.intensity(local, 0.9, 0.5), [[0, 0], [1 / 3, 1]], atol=1e-6)
    low, high = minmax.scale_probabilities(local, 0.5)
    assert low == 0.5 and high == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert minmax.scale_labels(0.5, local) == ("p 0.5", "p 0.953 (image max)")
    assert cam_mod.CamDisplay(mode="minmax").intensity(local, 0.4, 0.5).max() == 0  # image below the gate
    assert cam_mod.CamDisplay(mode="minmax", image_gate=False).intensity(local - 5, 0.9, 0.5).max() == 0


def test_colour_bar_ends_are_probabilities_not_logits():
    display = cam_mod.CamDisplay(span_logits=4.0)
    low, high = display.scale_labels(0.31)
    assert low == "p 0.31" and high == f"p {1 / (1 + np.exp(-(np.log(0.31 / 0.69) + 4))):.3f}"
    assert "logit" not in low + high


def test_absolute_scale_is_shared_across_images():
    display = cam_mod.CamDisplay(span_logits=4.0, image_gate=False)
    local = np.array([[0.0, 2.0], [4.0, 8.0]], np.float32)
    # gate at p=0.5 (logit 0): 0 -> 0, 2 -> 0.5, 4 -> 1, 8 -> 1 (clipped), whatever the image
    np.testing.assert_allclose(display.intensity(local, 0.9, 0.5), [[0, 0.5], [1, 1]])
    np.testing.assert_allclose(display.intensity(local * 0.5, 0.9, 0.5), [[0, 0.25], [0.5, 1]])


def test_gate_follows_the_operating_point():
    local = np.full((4, 4), cam_mod.logit(0.5), np.float32)
    assert cam_mod.CamDisplay(image_gate=False).intensity(local, 0.9, threshold=0.3).max() > 0
    assert cam_mod.CamDisplay(image_gate=False).intensity(local, 0.9, threshold=0.7).max() == 0
    assert cam_mod.CamDisplay().intensity(local + 5, 0.2, threshold=0.3).max() == 0  # image below gate


def test_colour_maps_and_blend():
    for name in cam_mod.COLOR_MAPS:
        assert cam_mod.colormap_lut(name).shape == (256, 3)
    with pytest.raises(ValueError, match="unknown colour map"):
        cam_mod.colormap_lut("nonsense")
    intensity = np.array([[0.0, 1.0]], np.float32)
    rgba = cam_mod.overlay_rgba(intensity, "jet", opacity=0.5)
    assert rgba[0, 0, 3] == 0 and rgba[0, 1, 3] == 127
    rgb = cam_mod.blend(np.array([[100, 100]], np.uint8), intensity, "jet", 0.5)
    assert tuple(rgb[0, 0]) == (100, 100, 100) and tuple(rgb[0, 1]) != (100, 100, 100)


def test_inference_sees_the_pixels_training_saw(tmp_path, fracatlas_dir, pydicom_data_file):
    """Training reads files with radreview.training.images; predict and the viewer go through
    radreview.studies. Both must hand the letterbox the same 8-bit grey pixels."""
    from PIL import Image

    from radreview.studies import decode_image, index_paths, render_display
    from radreview.training.images import read_display_gray

    Image.fromarray(np.arange(300 * 200, dtype=np.uint16).reshape(300, 200) * 16).save(tmp_path / "sixteen.png")
    rgb = np.zeros((50, 60, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[10:20, :, 1] = 90
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    files = sorted((fracatlas_dir / "images" / "Fractured").glob("*.jpg"))[:3]
    files += [tmp_path / "sixteen.png", tmp_path / "colour.png", pydicom_data_file("RG3_UNCR.dcm")]
    for path in files:
        training = read_display_gray(path)
        inference = to_display_gray(render_display(decode_image(index_paths([path]).images()[0])))
        np.testing.assert_array_equal(inference, training, err_msg=str(path))
