"""How a heatmap reads (radreview.inference.presentation): drawn or not, its colour bar in
probability, its span, the gate of a label without reliable cut-offs; the study line and the
exported legend. Real engine results from toy ONNX models; no Qt."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from radreview import RESEARCH_USE_NOTICE
from radreview.inference.aggregate import aggregate_studies
from radreview.inference.cam import DEFAULT_SPAN_LOGITS, logit, sigmoid
from radreview.inference.engine import Engine
from radreview.inference.presentation import (
    OUT_OF_SCOPE_MESSAGE,
    format_probability,
    gate_text,
    legend_lines,
    present_heatmap,
    present_image,
    resolve_span,
    study_line,
)
from radreview.inference.registry import check_model_file

from _scoped_models import blank_image, dark_images, write_scoped_model, write_unreliable_model


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    folder = tmp_path_factory.mktemp("presentation_models")
    write_scoped_model(folder / "scoped.onnx")
    write_unreliable_model(folder / "plain.onnx")
    return Engine([check_model_file(folder / "scoped.onnx"), check_model_file(folder / "plain.onnx")],
                  provider="cpu", threads=1)


@pytest.fixture(scope="module")
def inside(engine):
    return engine.predict(dark_images(1, seed=7)[0])


@pytest.fixture(scope="module")
def outside(engine):
    return engine.predict(blank_image())


def test_a_heatmap_above_its_cut_off_reads_in_probability_on_the_card_s_span(inside):
    label = inside.get("fractured")
    legend = present_heatmap(label)
    assert legend.drawn and legend.mode == "absolute" and legend.gate == 0.6
    assert (legend.span_logits, legend.span_source) == (3.0, "model card")
    assert legend.low_text == "likely cut-off p 0.6"
    assert legend.high_text == f"p {format_probability(sigmoid(logit(0.6) + 3.0))}"
    assert "logit" not in legend.colour_bar_text
    heat = legend.intensity(label.cam)
    assert heat.max() > 0 and np.all(heat[label.cam <= logit(0.6)] == 0)


def test_the_user_s_span_wins_and_the_default_is_the_last_resort(inside):
    label = inside.get("fractured")
    assert resolve_span(label, 5.0) == (5.0, "user")
    assert resolve_span(label, 0.0) == (3.0, "model card")
    assert resolve_span(dataclasses.replace(label, cam_span=None)) == (DEFAULT_SPAN_LOGITS, "default")


@pytest.mark.parametrize("scale", ["absolute", "minmax"])
def test_below_the_gate_nothing_is_drawn_in_any_scale(inside, scale):
    label = inside.get("hardware")
    assert label.probability < 0.6 < sigmoid(float(label.cam.max()))  # local evidence a stretch would paint
    legend = present_heatmap(label, scale)
    assert not legend.drawn and legend.note.startswith("nothing drawn: p ")
    assert legend.intensity(label.cam).max() == 0


def test_minmax_tops_out_at_the_image_s_strongest_evidence(inside):
    label = inside.get("fractured")
    legend = present_heatmap(label, "minmax")
    assert legend.high_text == f"p {format_probability(sigmoid(float(label.cam.max())))} (image max)"
    assert legend.intensity(label.cam).max() == pytest.approx(1.0)


def test_out_of_scope_maps_are_drawn_only_on_request_and_marked(outside):
    label = outside.get("fractured")
    hidden = present_heatmap(label)
    assert not hidden.drawn and hidden.note == OUT_OF_SCOPE_MESSAGE and hidden.low_text == ""
    assert hidden.intensity(label.cam).max() == 0
    revealed = present_heatmap(label, revealed=True)
    assert revealed.drawn and revealed.out_of_scope
    assert revealed.title == "Fractured — outside scope, shown on request"


def test_a_label_without_reliable_cut_offs_is_gated_at_one_half(inside):
    label = inside.get("dislocation")
    assert label.tier == "" and label.likely == pytest.approx(0.0034)
    legend = present_heatmap(label)
    assert legend.gate == 0.5 and legend.low_text == "p 0.5" == gate_text(label)
    assert legend.drawn == (label.probability >= 0.5)


def test_the_exported_legend_says_everything_a_later_reader_needs(inside, outside):
    shown = present_image(inside)
    heatmap = present_heatmap(inside.get("fractured"))
    lines = legend_lines(shown, heatmap, study="Study, 1 view: Positive: Fractured (likely)", models="Models: x")
    assert lines[0] == f"AI: {shown.verdict_text}" and lines[-1] == RESEARCH_USE_NOTICE
    assert "Study, 1 view: Positive: Fractured (likely)" in lines and "Models: x" in lines
    assert any(line.startswith("Scope: scoped: in scope") and "plain: no scope check" in line for line in lines)
    assert any(line.startswith("Fractured: p ") and "(possible ≥ 0.3 · likely ≥ 0.6)" in line for line in lines)
    assert any("Dislocation: p " in line and "no tier (operating points rest on only 8 positive" in line
               for line in lines)
    assert f"Heatmap: Fractured (absolute scale, {heatmap.colour_bar_text})" in lines
    hidden = legend_lines(present_image(outside), present_heatmap(outside.get("fractured")))
    assert not any(line.startswith("Fractured") for line in hidden)  # the plain model still answers
    assert f"Heatmap: Fractured — {OUT_OF_SCOPE_MESSAGE}" in hidden
    revealed = legend_lines(present_image(outside), present_heatmap(outside.get("fractured"), revealed=True),
                            revealed=True)
    assert any(line.startswith("Fractured: p ") and "outside scope (cut-offs: likely)" in line for line in revealed)


def test_study_line_counts_views_and_leaves_out_of_scope_ones_out(inside, outside):
    rows = aggregate_studies([("S", inside), ("S", outside)])
    line = study_line(rows)
    assert line.startswith("Study, 2 views, 1 outside scope: ")
    assert "Fractured (likely)" in line
    assert study_line([]) == ""
    assert study_line(aggregate_studies([("S", outside)])).startswith("Study, 1 view, 1 outside scope: ")
    assert math.isfinite(rows[0].probability)
