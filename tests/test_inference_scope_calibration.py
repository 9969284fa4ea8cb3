"""Scope check, calibration and the one presentation of the AI, with real ONNX models built here."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest

from radreview.inference.aggregate import aggregate_studies
from radreview.inference.card import (
    Calibration,
    ModelCard,
    OperatingPoints,
    read_card,
    write_card,
)
from radreview.inference.engine import Engine
from radreview.inference.presentation import (
    OUT_OF_SCOPE_MESSAGE,
    cutoffs_text,
    format_cutoff,
    format_probability,
    present_image,
    present_study,
)
from radreview.inference.registry import check_model_file, discover
from radreview.inference.scope import ScopeCheck, ScopeError, fit_scope, rejection_rate
from radreview.inference.toy import toy_card, write_toy_model
from radreview.metrics.calibration import expected_calibration_error, fit_logit_calibration
from _scoped_models import build_scoped_model, dark_images
from radreview.training.calibrate import calibrated_card


# -- the scope statistics ------------------------------------------------------------------------
def gaussian(n: int, d: int = 24, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(d, d)) / math.sqrt(d)  # correlated features
    return rng.normal(size=(n, d)) @ mixing + shift


def test_fit_scope_rejects_about_one_percent_in_distribution_and_catches_a_shift():
    check = fit_scope(gaussian(2000), gaussian(500, seed=1), percentile=99, components=8)
    assert 0.0 <= rejection_rate(check, gaussian(4000, seed=2)) <= 0.03
    assert rejection_rate(check, gaussian(500, shift=1.5, seed=3)) >= 0.95
    # a shift along a direction of *small* variance counts more than its size suggests
    assert check.reference["n_fit"] == 2000 and check.reference["n_threshold"] == 500


def test_scope_round_trips_through_the_card_dict():
    check = fit_scope(gaussian(300), gaussian(100, seed=1), components=6)
    again = ScopeCheck.from_dict(json.loads(json.dumps(check.to_dict())))
    x = gaussian(20, seed=5)
    assert np.allclose(check.distance(x), again.distance(x))
    assert again.threshold == pytest.approx(check.threshold)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("mean"), "'mean' is missing"),
    (lambda d: d.update(dim=d["dim"] + 1), "holds"),
    (lambda d: d.update(variances=d["variances"][:-1]), "'variances' must be a list"),
    (lambda d: d.update(threshold=float("nan")), "'threshold' must be a positive finite number"),
    (lambda d: d.update(residual_variance=-1.0), "'residual_variance'"),
    (lambda d: d.update(method="knn/9"), "unknown scope method"),
    (lambda d: d.update(mean="not base64!"), "not valid base64"),
])
def test_malformed_scope_statistics_are_named(change, message):
    raw = fit_scope(gaussian(100), gaussian(50, seed=1), components=4).to_dict()
    change(raw)
    with pytest.raises(ScopeError, match=message):
        ScopeCheck.from_dict(raw)


def test_non_finite_scope_values_are_refused():
    check = fit_scope(gaussian(100), gaussian(50, seed=1), components=4)
    raw = dataclasses.replace(check, mean=np.full(check.dim, np.nan)).to_dict()
    with pytest.raises(ScopeError, match="NaN"):
        ScopeCheck.from_dict(raw)


# -- calibration ----------------------------------------------------------------------------------
def test_platt_scaling_recovers_a_known_miscalibration_and_lowers_ece():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, 3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-(0.3 * z - 1.5)))).astype(int)
    fit = fit_logit_calibration(y, z, "platt")
    assert fit.scale == pytest.approx(0.3, abs=0.05) and fit.offset == pytest.approx(-1.5, abs=0.2)
    before = expected_calibration_error(y, 1 / (1 + np.exp(-z)))
    after = expected_calibration_error(y, 1 / (1 + np.exp(-fit.apply(z))))
    assert after < before / 3


def test_temperature_scaling_keeps_the_midpoint():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 5, 2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-z / 3))).astype(int)
    fit = fit_logit_calibration(y, z, "temperature")
    assert fit.offset == 0.0 and 1 / fit.scale == pytest.approx(3.0, rel=0.15)


def test_calibration_needs_both_classes():
    with pytest.raises(ValueError, match="positive and negative"):
        fit_logit_calibration(np.ones(10), np.zeros(10))


# -- models with a scope check and calibration ----------------------------------------------------
@pytest.fixture(scope="module")
def scoped_model(tmp_path_factory):
    """A toy fracture model with a real scope check fitted on dark-with-blob images, and calibration."""
    path = tmp_path_factory.mktemp("scoped") / "scoped.onnx"
    build_scoped_model(path, "scoped", [("fractured", "fracture")], {"fractured": {
        "calibration": Calibration("platt", 0.5, -1.0, "test"),
        "operating_points": OperatingPoints(0.2, 0.6, basis={"n_pos": 40, "n_neg": 80})}})
    return path


def scoped_engine(path) -> Engine:
    return Engine([check_model_file(path)], provider="cpu", threads=1)


def test_engine_gives_in_scope_for_training_like_images_and_out_of_scope_otherwise(scoped_model):
    engine = scoped_engine(scoped_model)
    inside = engine.predict(dark_images(1, seed=7)[0])
    outside = engine.predict(np.full((96, 80), 230, np.uint8))  # a blank white page
    assert inside.scopes["scoped"].status == "in_scope" and inside.in_scope is True
    assert outside.scopes["scoped"].status == "out_of_scope" and outside.in_scope is False
    label = outside.labels[0]
    assert label.tier == "out_of_scope" and label.in_scope is False
    assert label.tier_in_scope in ("likely", "possible", "below")  # kept for "show anyway"
    assert math.isfinite(label.probability)


def test_calibrated_probability_is_the_card_s_affine_map_of_the_logit(scoped_model):
    engine = scoped_engine(scoped_model)
    result = engine.predict(dark_images(1, seed=3)[0]).labels[0]
    raw_logit = math.log(result.raw_probability / (1 - result.raw_probability))
    assert result.logit == pytest.approx(0.5 * raw_logit - 1.0, abs=1e-4)
    assert result.probability == pytest.approx(1 / (1 + math.exp(-result.logit)), abs=1e-6)
    assert result.tier == OperatingPoints(0.2, 0.6).tier(result.probability)


def test_the_cam_is_on_the_calibrated_scale(scoped_model):
    engine = scoped_engine(scoped_model)
    result = engine.predict(dark_images(1, seed=3)[0]).labels[0]
    assert float(result.cam.mean()) == pytest.approx(result.logit, abs=1e-3)  # logit = mean(local logits)


def test_a_model_without_scope_statistics_runs_with_no_check(tmp_path):
    write_toy_model(tmp_path / "plain.onnx", toy_card("plain", [("fractured", "fracture")]))
    result = Engine(discover([tmp_path]).models, provider="cpu").predict(dark_images(1)[0])
    assert result.scopes["plain"].status == "no_check" and result.in_scope is None
    assert result.labels[0].in_scope is None and result.labels[0].tier in ("likely", "possible", "below")
    assert "no scope check" in present_image(result).scope_text.lower()


@pytest.mark.parametrize("breakage", ["wrong_shape", "nan", "missing_output"])
def test_unusable_scope_statistics_load_with_a_clear_message_and_run_without_a_check(tmp_path, scoped_model, breakage):
    path = tmp_path / "broken.onnx"
    path.write_bytes(scoped_model.read_bytes())
    card = read_card(path)
    raw = dict(card.scope)
    if breakage == "wrong_shape":
        raw["dim"] += 3
    elif breakage == "nan":
        raw["threshold"] = float("nan")
    else:
        raw["output"] = "pooled_features_that_do_not_exist"
    write_card(path, dataclasses.replace(card, scope=raw))
    model_file = check_model_file(path)  # loads
    engine = Engine([model_file], provider="cpu")
    assert not engine.problems
    result = engine.predict(dark_images(1)[0])
    verdict = result.scopes["scoped"]
    assert verdict.status == "no_check"
    assert ("scope" in verdict.note) and verdict.note
    if breakage != "missing_output":
        assert any("no scope check" in note for note in model_file.card.notes)
    else:
        assert "pooled_features_that_do_not_exist" in verdict.note


def test_too_few_validation_positives_give_no_tier_and_say_why(tmp_path):
    card = toy_card("rare", [("hardware", "hardware")])
    label = dataclasses.replace(card.labels[0], operating_points=OperatingPoints(
        0.003, 0.0034, basis={"split": "validation", "n_pos": 8, "n_neg": 311}))
    write_toy_model(tmp_path / "rare.onnx", dataclasses.replace(card, labels=(label,)))
    result = Engine(discover([tmp_path]).models, provider="cpu").predict(dark_images(1)[0]).labels[0]
    assert result.tier == "" and "8 positive" in result.tier_note
    assert "8 positive" in cutoffs_text(result)
    assert present_image(Engine(discover([tmp_path]).models).predict(dark_images(1)[0])).verdict == "none"


def test_card_round_trip_keeps_calibration_basis_and_scope(scoped_model):
    card = read_card(scoped_model)
    again = ModelCard.from_json(card.to_json())
    assert again.labels[0].calibration == Calibration("platt", 0.5, -1.0, "test")
    assert again.labels[0].operating_points.basis == {"n_pos": 40, "n_neg": 80}
    assert again.scope_check is not None and again.scope_check.checks[0].threshold == pytest.approx(card.scope_check.checks[0].threshold)


def test_calibrated_card_fits_everything_on_validation_data():
    card = toy_card("fit", [("fractured", "fracture"), ("hardware", "hardware")])
    rng = np.random.default_rng(0)
    n = 400
    targets = np.stack([rng.random(n) < 0.3, rng.random(n) < 0.04], axis=1).astype(float)
    raw = np.where(targets > 0, 6.0, -2.0) + rng.normal(0, 3, (n, 2))  # over-confident, shifted
    features = rng.normal(size=(n, 12))
    cam = (raw[:, :, None, None] + rng.normal(0, 1, (n, 2, 4, 4))).astype(np.float32)
    new, report = calibrated_card(card, {"logits": raw, "features": features, "cam": cam}, targets,
                                  {"features": rng.normal(size=(800, 12))})
    fractured, hardware = new.labels
    assert fractured.calibration.method in ("platt", "temperature") and fractured.calibration.scale < 1
    assert report["calibration"]["fractured"]["ece_after"] < report["calibration"]["fractured"]["ece_before"]
    assert fractured.operating_points.reliable and fractured.operating_points.basis["n_pos"] == int(targets[:, 0].sum())
    assert not hardware.operating_points.reliable  # about 16 validation positives
    assert new.scope_check is not None and 0.0 < report["scope"]["validation_rejected"] <= 0.02
    assert new.cam["span_logits"] >= 2.0 and set(new.cam["label_span_logits"]) == {"fractured", "hardware"}
    ModelCard.from_json(new.to_json())  # valid


# -- the presentation -----------------------------------------------------------------------------
def test_out_of_scope_image_presents_no_findings_as_answers(scoped_model):
    engine = scoped_engine(scoped_model)
    shown = present_image(engine.predict(np.full((96, 80), 230, np.uint8)))
    assert shown.in_scope is False and shown.verdict == "out_of_scope"
    assert shown.scope_text == OUT_OF_SCOPE_MESSAGE == shown.verdict_text
    assert shown.findings and not shown.shown_findings
    assert shown.findings[0].tier == "out_of_scope" and shown.findings[0].tier_text == "outside scope"
    inside = present_image(engine.predict(dark_images(1, seed=7)[0]))
    assert inside.in_scope is True and inside.verdict in ("positive", "doubt", "negative")
    assert "in scope (distance" in inside.scope_text


def test_probabilities_never_round_to_certainty_and_cutoffs_keep_three_digits():
    assert format_probability(0.9996) == "> 0.999" and format_probability(0.0004) == "< 0.001"
    assert format_probability(0.5) == "0.500"
    assert format_cutoff(0.0034172) == "0.00342" and format_cutoff(0.456) == "0.456"


def test_verdicts_follow_the_tiers(tmp_path):
    # the toy model answers bright structure: a bright frame is "likely", a dark one "below"
    card = toy_card("tiers", [("fractured", "fracture")])
    label = dataclasses.replace(card.labels[0], operating_points=OperatingPoints(0.3, 0.7))
    write_toy_model(tmp_path / "tiers.onnx", dataclasses.replace(card, labels=(label,)))
    engine = Engine(discover([tmp_path]).models, provider="cpu")
    verdicts = {}
    for name, image in (("bright", np.full((64, 64), 250, np.uint8)), ("dark", np.full((64, 64), 5, np.uint8))):
        result = engine.predict(image)
        verdicts[name] = (result.labels[0].tier, present_image(result).verdict, present_image(result).verdict_text)
    assert verdicts["bright"][:2] == ("likely", "positive") and "Fractured (likely)" in verdicts["bright"][2]
    assert verdicts["dark"][:2] == ("below", "negative")


def test_study_aggregation_leaves_out_of_scope_views_out(scoped_model):
    engine = scoped_engine(scoped_model)
    inside = engine.predict(dark_images(1, seed=7)[0])
    outside = engine.predict(np.full((96, 80), 230, np.uint8))
    (row,) = aggregate_studies([("S1", inside), ("S1", outside)])
    assert row.views == 1 and row.out_of_scope_views == 1
    assert row.probability == pytest.approx(inside.labels[0].probability)
    (only_outside,) = aggregate_studies([("S2", outside)])
    assert only_outside.tier == "out_of_scope"
    assert present_study([only_outside])[0] == "out_of_scope"


def test_predict_outputs_carry_in_scope_and_distance(scoped_model, tmp_path):
    from PIL import Image

    from radreview.inference.batch import predict_paths
    from radreview.inference.results_io import write_csv, write_json

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(dark_images(1, seed=7)[0]).save(folder / "a_inside.png")
    Image.fromarray(np.full((96, 80), 230, np.uint8)).save(folder / "b_blank.png")
    engine = scoped_engine(scoped_model)
    result = predict_paths([folder], engine, workers=1)
    write_csv(tmp_path / "out.csv", result, engine)
    write_json(tmp_path / "out.json", result, engine)
    rows = [r for r in csv.DictReader(open(tmp_path / "out.csv")) if r["level"] == "image"]
    assert sorted(r["in_scope"] for r in rows) == ["false", "true"]
    outside = next(r for r in rows if r["in_scope"] == "false")
    assert outside["tier"] == "out_of_scope" and float(outside["probability"]) >= 0
    assert float(outside["scope_distance"]) > float(outside["scope_threshold"])
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["models"][0]["scope_check"] is True and document["models"][0]["calibrated"] is True


# -- several checks (head features and the frozen lower stages' statistics) ----------------------
def two_check_set():
    from radreview.inference.scope import LOWER_FEATURES_OUTPUT, fit_scope_set

    fit = {"features": gaussian(1500), LOWER_FEATURES_OUTPUT: gaussian(1500, d=10, seed=4)}
    held = {"features": gaussian(400, seed=1), LOWER_FEATURES_OUTPUT: gaussian(400, d=10, seed=5)}
    return fit_scope_set(fit, held, percentile=99, components=8)


def test_scope_set_rejects_when_either_check_does_and_keeps_the_overall_rate():
    from radreview.inference.scope import LOWER_FEATURES_OUTPUT

    scope = two_check_set()
    assert scope.outputs == ("features", LOWER_FEATURES_OUTPUT)
    assert all(check.percentile == pytest.approx(99.5) for check in scope.checks)  # the 1% split between two
    inside = {"features": gaussian(3000, seed=2), LOWER_FEATURES_OUTPUT: gaussian(3000, d=10, seed=6)}
    assert rejection_rate(scope, inside) <= 0.03
    # the head features look normal, the lower statistics do not (what heavy augmentation causes)
    lower_only = {"features": gaussian(300, seed=7), LOWER_FEATURES_OUTPUT: gaussian(300, d=10, shift=2.0, seed=8)}
    assert rejection_rate(scope, lower_only) >= 0.95
    distance, threshold = scope.judge(lower_only)
    assert np.all(threshold[distance > threshold] == scope.checks[1].threshold)  # the deciding check reports
    with pytest.raises(ScopeError, match="lower_features"):
        scope.judge({"features": inside["features"]})


def test_scope_set_round_trips_and_single_checks_keep_their_layout():
    from radreview.inference.scope import SCOPE_METHOD, ScopeSet

    scope = two_check_set()
    again = ScopeSet.from_dict(json.loads(json.dumps(scope.to_dict())))
    probe = {"features": gaussian(20, seed=9), "lower_features": gaussian(20, d=10, seed=9)}
    assert np.allclose(scope.judge(probe)[0], again.judge(probe)[0]) and again.percentile == 99
    single = fit_scope(gaussian(100), gaussian(50, seed=1), components=4)
    assert ScopeSet((single,)).to_dict()["method"] == SCOPE_METHOD  # older readers still read it
    assert ScopeSet.from_dict(single.to_dict()).checks[0].threshold == pytest.approx(single.threshold)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(checks=[]), "'checks' must be a list"),
    (lambda d: d.update(checks=d["checks"][:1] * 2), "same graph output"),
    (lambda d: d["checks"][1].pop("mean"), "check 2: 'mean' is missing"),
    (lambda d: d.update(percentile="high"), "'percentile' must be a number"),
])
def test_malformed_scope_sets_are_named(change, message):
    from radreview.inference.scope import ScopeSet

    raw = json.loads(json.dumps(two_check_set().to_dict()))
    change(raw)
    with pytest.raises(ScopeError, match=message):
        ScopeSet.from_dict(raw)


def _add_lower_output(path):
    """Give a scoped toy graph a ``lower_features`` output: per-channel mean and mean square of the
    input image (a stand-in for a lower stage's statistics, computed in the graph)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    graph.node.extend([  # opset 13: the axes are an attribute
        helper.make_node("ReduceMean", ["image"], ["t_mean"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["image", "image"], ["t_sq"]),
        helper.make_node("ReduceMean", ["t_sq"], ["t_msq"], axes=[2, 3], keepdims=0),
        helper.make_node("Concat", ["t_mean", "t_msq"], ["lower_features"], axis=1),
    ])
    graph.output.append(helper.make_tensor_value_info("lower_features", TensorProto.FLOAT, ["N", 6]))
    onnx.save(model, str(path))


def test_engine_runs_every_check_of_a_two_check_model(tmp_path):
    import onnxruntime as ort

    from radreview.inference.preprocess import prepare
    from radreview.inference.scope import fit_scope_set
    from _scoped_models import blank_image

    path = tmp_path / "two.onnx"
    card = build_scoped_model(path, "two", [("fractured", "fracture")])
    _add_lower_output(path)
    card = write_card(path, dataclasses.replace(card, scope={}))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def outputs(images):
        batch = np.stack([prepare(image, card.input)[0] for image in images])
        return dict(zip(["features", "lower_features"], session.run(["features", "lower_features"], {"image": batch})))

    scope = fit_scope_set(outputs(dark_images(300, 0)), outputs(dark_images(120, 1)), components=4)
    write_card(path, dataclasses.replace(card, scope=scope.to_dict()))
    engine = Engine(discover([tmp_path]).models, provider="cpu")
    assert engine.models[0].outputs == ["logits", "cam", "features", "lower_features"]
    inside = engine.predict(dark_images(1, seed=11)[0]).scopes["two"]
    outside = engine.predict(blank_image()).scopes["two"]
    assert inside.status == "in_scope" and outside.status == "out_of_scope"
    assert outside.threshold in [check.threshold for check in scope.checks]


def test_a_check_whose_output_is_missing_disables_the_whole_scope_check(tmp_path):
    from radreview.inference.scope import LOWER_FEATURES_OUTPUT, ScopeSet

    path = tmp_path / "partial.onnx"
    card = build_scoped_model(path, "partial", [("fractured", "fracture")])
    head = card.scope_check.checks[0]
    lower = dataclasses.replace(head, output=LOWER_FEATURES_OUTPUT)
    write_card(path, dataclasses.replace(card, scope=ScopeSet((head, lower)).to_dict()))
    engine = Engine(discover([tmp_path]).models, provider="cpu")
    verdict = engine.predict(dark_images(1)[0]).scopes["partial"]
    assert verdict.status == "no_check" and "lower_features" in verdict.note


def test_figures_of_another_model_are_refused_for_the_card(tmp_path):
    """`calibrate --figures-only` writes test figures into a card only when they were measured on
    this model: its weights (where metrics.json names them) and its cut-offs."""
    from _scoped_models import write_scoped_model

    from radreview.training.calibrate import CalibrationError, embed_figures

    model = tmp_path / "scoped.onnx"
    card = write_scoped_model(model)

    def metrics(possible: float, sha: str | None) -> Path:
        point = {"threshold": possible, "sensitivity": {"estimate": 1.0}, "specificity": {"estimate": 0.5}}
        likely = {"threshold": 0.6, "sensitivity": {"estimate": 0.8}, "specificity": {"estimate": 0.9}}
        document = {"model": {"file": "scoped.onnx", **({"weights_sha256": sha} if sha else {})},
                    "labels": {"fractured": {"auc": {"auc": 0.9, "n_pos": 30, "n_neg": 60},
                                             "card_operating_points": {"possible": point, "likely": likely}}}}
        path = tmp_path / f"metrics_{possible}_{bool(sha)}.json"
        path.write_text(json.dumps(document))
        return path

    with pytest.raises(CalibrationError, match=r"'possible' figures are at p 0.25 but scoped.onnx's cut-off is p 0.3"):
        embed_figures(model, tmp_path / "out.onnx", metrics(0.25, None))
    with pytest.raises(CalibrationError, match="measured on other weights"):
        embed_figures(model, tmp_path / "out.onnx", metrics(0.3, "0" * 64))
    assert not (tmp_path / "out.onnx").exists()
    written = embed_figures(model, tmp_path / "out.onnx", metrics(0.3, card.weights_sha256))
    assert written.validation["labels"]["fractured"]["at_operating_points"]["possible"]["threshold"] == 0.3


def test_a_validation_file_that_is_not_metrics_json_is_named(tmp_path):
    from _scoped_models import write_scoped_model

    from radreview.training.calibrate import CalibrationError, embed_figures

    model = tmp_path / "scoped.onnx"
    write_scoped_model(model)
    (tmp_path / "notes.txt").write_text("not json")
    with pytest.raises(CalibrationError, match=r"notes.txt: not a metrics.json from radreview evaluate"):
        embed_figures(model, tmp_path / "out.onnx", tmp_path / "notes.txt")
