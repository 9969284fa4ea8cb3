"""The viewer's AI panel with real models that have a scope check (pytest-qt, offscreen).

An image outside a model's scope shows the plain message, no tier and no heatmap; "Show findings
anyway" reveals them, marked; a model without a scope check says so; a label without reliable
operating points shows its probability and why it has no tier; unusable scope statistics load
with their note; the colour bar reads in probability; every scale respects the gate; nothing of
the previous image is drawn while the next one loads (slow decode and slow inference); the
exported view carries a legend.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QEvent, QPointF  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from radreview import RESEARCH_USE_NOTICE  # noqa: E402
from radreview.gui import inference_worker, main_window  # noqa: E402
from radreview.gui.ai_panel import HIDE_TEXT, REVEAL_TEXT, AiPanel  # noqa: E402
from radreview.gui.ai_settings import AiSettings  # noqa: E402
from radreview.gui.main_window import MainWindow  # noqa: E402
from radreview.gui.settings import CONFIG_DIR_ENV, ViewerSettings  # noqa: E402
from radreview.inference.cam import logit, sigmoid  # noqa: E402
from radreview.inference.presentation import OUT_OF_SCOPE_MESSAGE, format_probability  # noqa: E402

from _scoped_models import (  # noqa: E402
    blank_image,
    break_scope,
    dark_images,
    noise_image,
    write_scoped_model,
    write_unreliable_model,
)

pytestmark = pytest.mark.gui
TIER_WORDS = ("likely", "possible", "below cut-off")


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))


@pytest.fixture(scope="module")
def scoped_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scoped_models")
    write_scoped_model(folder / "scoped.onnx")
    return folder


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scope_images")
    images = {"inside": dark_images(1, seed=7)[0], "inside2": dark_images(2, seed=8)[1],
              "blank": blank_image(), "noise": noise_image()}
    paths = {}
    for name, pixels in images.items():
        paths[name] = folder / f"{name}.png"
        Image.fromarray(pixels).save(paths[name])
    return paths


def make_window(qtbot, models: Path) -> MainWindow:
    win = MainWindow(settings=ViewerSettings(), save_on_close=False)
    win.ai_panel.apply_settings(AiSettings(models_dir=str(models)))
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.ai_panel.state is not None and bool(win.ai_panel.state.engine.models), timeout=20000)
    return win


@pytest.fixture
def window(qtbot, scoped_dir):
    win = make_window(qtbot, scoped_dir)
    yield win
    win.close()


def show(qtbot, window: MainWindow, path: Path) -> AiPanel:
    panel = window.ai_panel
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        window.open_paths([str(path)])
    return panel


def coloured_pixels(view) -> int:
    """Pixels of the pane's viewport that are not grey: a heatmap is coloured, a radiograph is not."""
    image = view.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    array = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    array = array.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].reshape(image.height(), -1, 3)
    spread = array.max(axis=2).astype(int) - array.min(axis=2).astype(int)
    return int(np.count_nonzero(spread > 40))


# -- scope -----------------------------------------------------------------------------------------
def test_out_of_scope_image_shows_the_message_no_tier_and_no_heatmap(qtbot, window, pictures):
    panel = show(qtbot, window, pictures["blank"])
    assert panel.result.in_scope is False
    assert panel.verdict_label.text() == OUT_OF_SCOPE_MESSAGE
    assert "scoped: outside scope (distance" in panel.scope_label.text()
    assert panel.table.rowCount() == 0  # no finding, so no tier, is shown as an answer
    shown_text = " ".join(w.text() for w in panel.findChildren(type(panel.status)) if w.isVisible())
    assert not any(f" {word}" in shown_text for word in ("likely", "possible"))
    assert not panel.overlay.is_shown() and panel.overlay.item.image is None
    assert panel.color_bar.texts() == ("", "")
    assert coloured_pixels(window.active_view()) == 0
    assert panel.reveal_button.isVisible() and panel.reveal_button.text() == REVEAL_TEXT


def test_show_findings_anyway_reveals_them_marked_outside_scope(qtbot, window, pictures):
    panel = show(qtbot, window, pictures["blank"])
    panel.reveal_button.click()
    assert panel.revealed and panel.reveal_button.text() == HIDE_TEXT
    rows = panel.table_rows()
    assert {r[0] for r in rows} == {"Fractured", "Hardware"}
    for row in rows:
        assert row[2].startswith("outside scope (cut-offs: ")  # marked, with what its cut-offs say
        assert row[3] == "possible ≥ 0.3 · likely ≥ 0.6"
    # the longer tier wraps: the Cut-offs column keeps a readable share of the panel (no scrolling)
    header = panel.table.horizontalHeader()
    assert panel.table.viewport().width() - header.sectionViewportPosition(3) >= 0.25 * panel.table.viewport().width()
    assert panel.table.item(0, 0).font().italic()
    assert panel.verdict_label.text() == OUT_OF_SCOPE_MESSAGE  # revealed findings are still no answer
    # the heatmap of the top finding appears only now, marked in the panel and on the image
    assert panel.selected == "scoped/fractured" and panel.overlay.is_shown()
    assert "outside scope, shown on request" in panel.heatmap_label.text()
    assert "outside scope" in window.active_view().overlay_note()
    assert coloured_pixels(window.active_view()) > 0
    panel.reveal_button.click()  # hide again
    assert panel.table.rowCount() == 0 and not panel.overlay.is_shown()
    assert window.active_view().overlay_note() == ""


def test_revealing_does_not_carry_over_to_the_next_image(qtbot, window, pictures):
    panel = show(qtbot, window, pictures["blank"])
    panel.set_revealed(True)
    assert panel.table.rowCount() == 2
    window.open_paths([str(pictures["noise"])])
    qtbot.waitUntil(lambda: len(window.index.images()) == 2, timeout=20000)
    noise = next(e for e in window.index.images() if e.path == pictures["noise"])
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        window.show_entry(noise)
    assert panel.result.in_scope is False and not panel.revealed
    assert panel.table.rowCount() == 0 and not panel.overlay.is_shown()


def test_each_image_opens_on_its_own_top_finding(qtbot, window, pictures):
    """A label picked on one image does not carry over: under a "Positive: Fractured" verdict the
    next image shows the fracture heatmap, not an empty map of the label picked before."""
    panel = show(qtbot, window, pictures["inside"])
    panel.select_label("scoped/hardware")
    assert panel.selected == "scoped/hardware"
    window.open_paths([str(pictures["inside2"])])
    qtbot.waitUntil(lambda: len(window.index.images()) == 2, timeout=20000)
    other = next(e for e in window.index.images() if e.path == pictures["inside2"])
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        window.show_entry(other)
    top = panel.presentation.shown_findings[0]
    assert panel.selected == top.key and panel.table.item(0, 0).isSelected()
    assert panel.heatmap_label.text().startswith(top.display_name)


def test_in_scope_image_shows_tiers_and_the_heatmap_on_the_card_s_span(qtbot, window, pictures):
    panel = show(qtbot, window, pictures["inside"])
    assert panel.result.in_scope is True
    assert panel.verdict_label.text() == "Positive: Fractured (likely)"
    assert "scoped: in scope (distance" in panel.scope_label.text()
    assert not panel.reveal_button.isVisible()
    rows = {r[0]: r for r in panel.table_rows()}
    assert rows["Fractured"][2] == "likely" and rows["Hardware"][2] == "below cut-off"
    assert panel.selected == "scoped/fractured" and panel.overlay.is_shown()
    assert window.active_view().overlay_note() == ""
    # the colour bar in probability; its top from the card's span (3 logits above the cut-off)
    assert panel.legend.span_source == "model card" and panel.legend.span_logits == 3.0
    top = format_probability(sigmoid(logit(0.6) + 3.0))
    assert panel.color_bar.texts() == ("likely cut-off p 0.6", f"p {top}")
    panel.span_spin.setValue(6.0)  # the user's span wins over the card's
    assert panel.legend.span_source == "user"
    assert panel.color_bar.high.text() == f"p {format_probability(sigmoid(logit(0.6) + 6.0))}"
    assert panel.span_label.text() == "6 logits, set by you"
    panel.span_spin.setValue(0.0)  # back to the card
    assert panel.span_spin.text() == "auto" and panel.legend.span_source == "model card"
    assert panel.span_label.text() == "3 logits, from the model card"


@pytest.mark.parametrize("scale", ["absolute", "minmax"])
def test_every_scale_respects_the_gate(qtbot, window, pictures, scale):
    """Hardware is p ~ 0.03 here though its map has local evidence above the cut-off: no scale
    may draw it (the old minmax stretched its own maximum to full heat)."""
    panel = show(qtbot, window, pictures["inside"])
    panel.scale_combo.setCurrentText(scale)
    panel.select_label("scoped/hardware")
    label = panel.selected_result()
    assert label.probability < 0.6 and float(label.cam.max()) > logit(0.6)
    assert not panel.overlay.is_shown()
    assert panel.heatmap_label.text().startswith("Hardware — nothing drawn: p ")
    assert "below the likely cut-off p 0.6" in panel.heatmap_label.text()
    assert coloured_pixels(window.active_view()) == 0
    panel.select_label("scoped/fractured")
    assert panel.overlay.is_shown() and coloured_pixels(window.active_view()) > 0
    if scale == "minmax":
        assert panel.color_bar.high.text().endswith("(image max)")
        # the top of the scale is the map's strongest local logit (smoothed a little by upsampling)
        assert 0.9 < panel.overlay.item.image.max() <= 1.0


def test_a_model_without_scope_check_and_with_unreliable_operating_points(qtbot, tmp_path, pictures):
    write_unreliable_model(tmp_path / "plain.onnx")
    win = make_window(qtbot, tmp_path)
    try:
        panel = show(qtbot, win, pictures["blank"])
        assert panel.scope_label.text() == "plain: no scope check (the model card has no scope statistics)"
        ((name, probability, tier, cutoffs),) = panel.table_rows()
        assert (name, tier) == ("Dislocation", "no tier")
        assert probability == format_probability(panel.result.labels[0].probability)
        assert cutoffs == "operating points rest on only 8 positive and 311 negative validation images"
        assert panel.verdict_label.text() == "No AI result: no finding has operating points"
        # its map is gated at p 0.5, not at the untrusted "likely" p 0.0034
        assert panel.legend.gate == 0.5 and panel.color_bar.low.text() == "p 0.5"
    finally:
        win.close()


def test_unusable_scope_statistics_load_with_their_note_and_never_crash_the_panel(qtbot, tmp_path, scoped_dir,
                                                                                   pictures):
    folder = tmp_path / "models"
    folder.mkdir()
    break_scope(scoped_dir / "scoped.onnx", folder / "broken_scope.onnx")
    win = make_window(qtbot, folder)
    try:
        panel = win.ai_panel
        assert "broken_scope.onnx" in panel.error.text() and "no scope check: unusable scope statistics" in \
            panel.error.text()
        panel = show(qtbot, win, pictures["blank"])
        assert panel.result.in_scope is None
        assert panel.scope_label.text().startswith("scoped: no scope check (unusable scope statistics")
        assert {r[2] for r in panel.table_rows()} <= set(TIER_WORDS)  # answers, as a model without a check gives
    finally:
        win.close()


# -- no stale patient data ---------------------------------------------------------------------------
def _slow(function, seconds: float):
    def slow(*args, **kwargs):
        time.sleep(seconds)
        return function(*args, **kwargs)
    return slow


def test_nothing_of_the_previous_image_is_drawn_while_the_next_one_loads(qtbot, window, pictures, monkeypatch):
    panel = show(qtbot, window, pictures["inside"])
    window.open_paths([str(pictures["inside2"]), str(pictures["blank"])])
    qtbot.waitUntil(lambda: len(window.index.images()) == 3, timeout=20000)
    first = next(e for e in window.index.images() if e.path == pictures["inside"])
    second = next(e for e in window.index.images() if e.path == pictures["inside2"])
    blank = next(e for e in window.index.images() if e.path == pictures["blank"])
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        window.show_entry(first)
    qtbot.waitUntil(lambda: window.header_panel.table.rowCount() > 0, timeout=5000)
    view = window.active_view()
    assert panel.overlay.is_shown() and coloured_pixels(view) > 0 and panel.verdict_label.text()
    window.cursor_label.setText("x 10  y 10   value 200")  # as if the cursor were over the image

    # from now on decoding and inference are slow, and nothing is cached
    window.cache.clear()
    panel.controller.cache.clear()
    monkeypatch.setattr(main_window, "decode_for_display", _slow(main_window.decode_for_display, 0.6))
    monkeypatch.setattr(inference_worker, "predict_decoded", _slow(inference_worker.predict_decoded, 0.6))
    shown_keys: list = []
    panel.results_shown.connect(lambda _r: shown_keys.append(panel._key))

    previous = [first]

    def nothing_of_the_previous_image() -> None:
        assert panel.result is None and panel.table.rowCount() == 0
        for label in (panel.verdict_label, panel.study_label, panel.region_label, panel.scope_label):
            assert label.text() == "", label.text()
        assert not panel.overlay.is_shown() and panel.color_bar.texts() == ("", "")
        header = window.header_panel
        assert all(header.entry is not e for e in previous) and (header.entry is not None or header.table.rowCount() == 0)
        assert window.cursor_label.text() == ""
        assert coloured_pixels(view) == 0

    window.show_entry(second)  # a second "patient": the first one's AI must be gone at once
    nothing_of_the_previous_image()
    samples = 0
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline and view.decoded is None:  # while it decodes
        qtbot.wait(40)
        nothing_of_the_previous_image()
        samples += 1
    assert samples >= 3
    # the user moves on while the second image's inference runs: its result must be dropped
    qtbot.waitUntil(lambda: view.decoded is not None and view.entry is second, timeout=10000)
    second_key = inference_worker.image_key(second, view.decoded)
    previous.append(second)
    window.show_entry(blank)
    nothing_of_the_previous_image()
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        while view.entry is not blank or view.decoded is None:
            qtbot.wait(40)
            nothing_of_the_previous_image()
    qtbot.wait(800)  # long enough for the second image's slow inference to have come back
    assert shown_keys == [inference_worker.image_key(blank, view.decoded)]
    assert panel.verdict_label.text() == OUT_OF_SCOPE_MESSAGE
    # should a result for an image no longer shown reach the panel anyway, it is dropped there too
    stale = panel.result
    dropped = panel.dropped_results
    panel.controller.result_ready.emit(second_key, stale)
    panel.controller.failed.emit(second_key, "a late error of the previous image")
    assert panel.dropped_results == dropped + 2 and panel.result is stale
    assert panel.error.text() == "" and panel.verdict_label.text() == OUT_OF_SCOPE_MESSAGE


def test_the_pixel_value_leaves_the_status_bar_with_the_cursor(qtbot, window, pictures):
    show(qtbot, window, pictures["inside"])
    view = window.active_view()
    view.scene().sigMouseMoved.emit(view.image_group.mapToScene(QPointF(10.5, 10.5)))
    assert window.cursor_label.text().startswith("x 10  y 10")
    QApplication.sendEvent(view, QEvent(QEvent.Type.Leave))
    assert window.cursor_label.text() == ""


# -- export ----------------------------------------------------------------------------------------
def blue_pixels(rgb: np.ndarray) -> int:
    return int(np.count_nonzero((rgb[..., 2] > rgb[..., 0] + 100) & (rgb[..., 2] > rgb[..., 1] + 40)))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_exported_view_carries_a_legend_with_the_colour_bar(qtbot, window, pictures, tmp_path):
    panel = show(qtbot, window, pictures["inside"])
    lines, heatmap = panel.export_legend()
    text = "\n".join(lines)
    assert lines[0] == "AI: Positive: Fractured (likely)"
    assert "Scope: scoped: in scope (distance" in text
    assert any(line.startswith("Fractured: p ") and "likely (possible ≥ 0.3 · likely ≥ 0.6)" in line for line in lines)
    assert f"Heatmap: Fractured (absolute scale, likely cut-off p 0.6 … p {heatmap.high_text[2:]})" in text
    assert lines[-1] == RESEARCH_USE_NOTICE
    path = tmp_path / "view.png"
    assert window.export_view_png(path)
    view = window.active_view()
    shot = view.grab_view().toImage()
    exported = _png(path)
    assert exported.shape[0] > shot.height()  # the legend strip below the view
    strip = exported[shot.height():]
    assert len(np.unique(strip.reshape(-1, 3), axis=0)) > 20  # text and a gradient, not a blank band
    assert blue_pixels(strip) > 100  # the colour bar (jet starts blue; the text is grey and orange)


def test_exported_out_of_scope_view_says_so_and_has_no_colour_bar(qtbot, window, pictures, tmp_path):
    panel = show(qtbot, window, pictures["blank"])
    lines, heatmap = panel.export_legend()
    assert lines[0] == f"AI: {OUT_OF_SCOPE_MESSAGE}"
    assert not any(line.startswith(("Fractured", "Hardware")) for line in lines)
    assert lines[-1] == RESEARCH_USE_NOTICE
    path = tmp_path / "out.png"
    assert window.export_view_png(path)
    exported = _png(path)
    strip = exported[window.active_view().grab_view().toImage().height():]
    assert exported.shape[0] > strip.shape[0] > 0
    assert blue_pixels(strip) == 0  # text only: no colour bar
    assert math.isfinite(float(strip.mean()))
