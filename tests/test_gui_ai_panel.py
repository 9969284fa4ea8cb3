"""The AI panel in the real main window (pytest-qt, offscreen) with real ONNX models built here.

Results appear by themselves when an image is shown, inference runs off the GUI thread, a new
image cancels the old one, the heatmap toggles/opacity/colour map work and follow the image,
errors (bad models, bad images) are shown in the panel and the viewer keeps working.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QAction  # noqa: E402

from radreview import RESEARCH_USE_NOTICE  # noqa: E402
from radreview.gui import inference_worker  # noqa: E402
from radreview.gui.ai_panel import AiPanel, install_ai_panel  # noqa: E402
from radreview.gui.ai_settings import AiSettings, load_ai_settings, save_ai_settings  # noqa: E402
from radreview.gui.main_window import MainWindow  # noqa: E402
from radreview.gui.settings import CONFIG_DIR_ENV, ViewerSettings  # noqa: E402
from radreview.inference.aggregate import aggregate_studies  # noqa: E402
from radreview.inference.presentation import format_probability, study_line  # noqa: E402
from radreview.inference.toy import toy_card, write_toy_model  # noqa: E402
from radreview.studies import decode_image, index_paths  # noqa: E402

pytestmark = pytest.mark.gui
REGIONS = [("hand", "region"), ("leg", "region"), ("hip", "region"), ("shoulder", "region")]


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ai_models")
    write_toy_model(folder / "region.onnx", toy_card("region", REGIONS, size=96))
    write_toy_model(folder / "findings.onnx",
                    toy_card("findings", [("fractured", "fracture"), ("hardware", "hardware")], size=64), seed=3)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory, fracatlas_dir, pydicom_data_file) -> list[Path]:
    folder = tmp_path_factory.mktemp("ai_images")
    for path in sorted((fracatlas_dir / "images" / "Fractured").glob("*.jpg"))[:2]:
        shutil.copy(path, folder / path.name)
    shutil.copy(pydicom_data_file("RG3_UNCR.dcm"), folder / "RG3_UNCR.dcm")
    return sorted(folder.iterdir())


@pytest.fixture
def window(qtbot, model_dir):
    win = MainWindow(settings=ViewerSettings(), save_on_close=False)
    if getattr(win, "ai_panel", None) is None:  # not yet installed by the main window itself
        install_ai_panel(win, AiSettings(models_dir=str(model_dir)), save_settings=False)
    else:
        win.ai_panel.apply_settings(AiSettings(models_dir=str(model_dir)))
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(lambda: win.ai_panel.state is not None and bool(win.ai_panel.state.engine.models), timeout=20000)
    yield win
    win.close()


def show(qtbot, window, path: Path) -> AiPanel:
    """Open ``path`` in the viewer and wait until the AI panel has filled."""
    panel = window.ai_panel
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        window.open_paths([str(path)])
    return panel


def rows(panel: AiPanel) -> list[tuple[str, ...]]:
    return panel.table_rows()


def test_the_panel_shows_the_presentation_s_words_and_numbers(qtbot, window, images):
    """Every word and number about the AI comes from radreview.inference.presentation."""
    from radreview.inference.presentation import present_image

    panel = show(qtbot, window, images[2])
    shown = present_image(panel.result)
    assert panel.verdict_label.text() == shown.verdict_text
    assert panel.region_label.text() == shown.region_line
    assert [r[:4] for r in rows(panel)] == [(f.display_name, f.probability_text, f.tier_text, f.cutoffs_text)
                                            for f in shown.shown_findings]


def test_results_appear_without_a_click(qtbot, window, images):
    panel = show(qtbot, window, images[0])
    table = rows(panel)
    names = {r[0] for r in table}
    assert names == {"Fractured", "Hardware"}  # region labels are the region line, not findings
    assert panel.region_label.text().startswith("Region: ")
    for name, probability, tier, cutoffs in table:
        assert probability in ("> 0.999", "< 0.001") or 0.001 <= float(probability) <= 0.999
        assert len(probability.split(".")[-1]) == 3 or probability.startswith(("<", ">"))
        assert tier in ("likely", "possible", "below cut-off")
        assert cutoffs == "possible ≥ 0.3 · likely ≥ 0.7"  # visible in the row, three significant digits
        assert "findings 1.0" in panel.table.item(0, 1).toolTip()  # the model that said it
    assert panel.verdict_label.text().split(":")[0] in ("Positive", "Doubt", "Negative")
    # the toy models have no scope check, and say so
    assert "region: no scope check" in panel.scope_label.text()
    assert "findings: no scope check" in panel.scope_label.text()
    assert "Provider: cpu" in panel.status.text()
    assert RESEARCH_USE_NOTICE in [w.text() for w in panel.findChildren(type(panel.status))]
    assert panel.overlay.view is window.active_view()


def test_inference_runs_off_the_gui_thread(qtbot, window, images, monkeypatch):
    threads: list[threading.Thread] = []
    original = inference_worker.predict_decoded

    def spy(engine, decoded, cancel):
        threads.append(threading.current_thread())
        return original(engine, decoded, cancel)

    monkeypatch.setattr(inference_worker, "predict_decoded", spy)
    panel = show(qtbot, window, images[1])
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert panel.result is not None


def test_moving_on_cancels_and_only_the_last_image_is_shown(qtbot, window, images):
    panel = window.ai_panel
    index = index_paths([str(p) for p in images])
    entries = index.images()
    decoded = [decode_image(e) for e in entries]
    shown: list = []
    panel.results_shown.connect(lambda r: shown.append(panel._key))
    for entry, image in zip(entries, decoded):
        panel.on_image_changed(entry, image)  # three images in a row, faster than inference
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=20000)
    qtbot.wait(300)
    assert shown == [inference_worker.image_key(entries[-1], decoded[-1])]


def test_results_are_cached_per_image_and_model_version(qtbot, window, images):
    panel = show(qtbot, window, images[0])
    first = panel.result
    key = panel._key
    panel.on_image_changed(None, None)
    assert panel.table.rowCount() == 0
    index = index_paths([str(images[0])])
    entry = index.images()[0]
    with qtbot.waitSignal(panel.results_shown, timeout=5000):
        panel.on_image_changed(entry, decode_image(entry))
    assert panel._key == key and panel.result is first  # the same object: from the cache


def test_clicking_a_label_shows_its_heatmap_registered_with_the_image(qtbot, window, images):
    panel = show(qtbot, window, images[2])  # RG3: 1760 x 2140 CR
    view = window.active_view()
    row = next(r for r in range(panel.table.rowCount()) if panel.table.item(r, 0).text() == "Hardware")
    panel.table.selectRow(row)
    assert panel.selected == "findings/hardware"
    assert panel.overlay.is_shown()
    overlay = panel.overlay.item
    assert overlay.parentItem() is view.image_group  # follows zoom, pan, rotation, flips
    rect = overlay.mapRectToParent(overlay.boundingRect())
    rows_, cols = view.decoded.shape
    assert (rect.width(), rect.height()) == pytest.approx((cols, rows_), rel=1e-3)
    assert overlay.image.shape[0] / overlay.image.shape[1] == pytest.approx(rows_ / cols, rel=0.01)
    assert max(overlay.image.shape) <= 1024
    assert panel.heatmap_label.text() == "Hardware"
    assert view.overlay_note() == ""  # in scope (no check): nothing to warn about
    # window/level changes the radiograph, not the heatmap
    before = overlay.image.copy()
    view.set_invert(True)
    np.testing.assert_array_equal(overlay.image, before)


def _action(window, text: str) -> QAction:
    return next(a for a in window.findChildren(QAction) if a.text().replace("&", "") == text)


def test_heatmap_key_toggles_and_opacity_keys_and_slider(qtbot, window, images):
    panel = show(qtbot, window, images[0])
    toggle = _action(window, "Show Heatmap")
    assert toggle.shortcut().toString() == panel.heatmap_key
    assert panel.overlay.enabled
    qtbot.keyClick(window.active_view(), *_key(panel.heatmap_key))
    assert not panel.overlay.enabled and not panel.overlay.item.isVisible()
    assert not panel.heatmap_box.isChecked()
    toggle.trigger()
    assert panel.overlay.enabled and panel.heatmap_box.isChecked()

    panel.opacity_slider.setValue(20)
    assert panel.overlay.item.opacity() == pytest.approx(0.2, abs=0.01)
    qtbot.keyClick(window.active_view(), Qt.Key.Key_O)
    assert panel.overlay.item.opacity() == pytest.approx(0.3, abs=0.01)
    assert panel.opacity_slider.value() == 30
    qtbot.keyClick(window.active_view(), Qt.Key.Key_O, Qt.KeyboardModifier.ShiftModifier)
    assert panel.overlay.item.opacity() == pytest.approx(0.2, abs=0.01)


def _key(sequence: str):
    return (Qt.Key.Key_H, Qt.KeyboardModifier.ShiftModifier) if sequence == "Shift+H" else (Qt.Key.Key_H,)


def test_colour_map_threshold_and_scale(qtbot, window, images):
    panel = show(qtbot, window, images[2])
    panel.select_label("findings/hardware")
    panel.colormap_combo.setCurrentText("inferno")
    assert panel.overlay.colormap == "inferno" and panel.settings.colormap == "inferno"
    lut = panel.overlay.item.lut
    assert lut.shape == (256, 4) and lut[0, 3] == 0
    label = panel.selected_result()
    panel.scale_combo.setCurrentText("minmax")
    assert panel.overlay.item.image.max() == pytest.approx(1.0, abs=0.02)
    top = 1 / (1 + np.exp(-float(label.cam.max())))  # the strongest local evidence, as a probability
    assert panel.color_bar.texts() == ("likely cut-off p 0.7", f"p {format_probability(top)} (image max)")
    panel.scale_combo.setCurrentText("absolute")
    panel.gate_combo.setCurrentText("possible")
    assert panel.color_bar.low.text() == "possible cut-off p 0.3"
    panel.gate_combo.setCurrentText("likely")
    assert panel.color_bar.low.text() == "likely cut-off p 0.7"
    assert panel.color_bar.high.text() == "p > 0.999"  # default span 24 logits above logit(0.7)
    panel.span_spin.setValue(2.0)  # logit(0.7) = 0.847, + 2 = 2.847: p 0.945
    assert panel.settings.heatmap_span == 2.0 and panel.color_bar.high.text() == "p 0.945"
    assert "logit" not in " ".join(panel.color_bar.texts())


def test_a_bad_model_is_listed_and_the_others_still_run(qtbot, tmp_path, model_dir, images):
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    (folder / "broken.onnx").write_bytes(b"not a model at all")
    win = MainWindow(settings=ViewerSettings(), save_on_close=False)
    panel = getattr(win, "ai_panel", None) or install_ai_panel(win, AiSettings(), save_settings=False)
    panel.apply_settings(AiSettings(models_dir=str(folder)))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: panel.state is not None and len(panel.state.engine.models) == 2, timeout=20000)
    assert "broken.onnx" in panel.error.text() and "not an ONNX model" in panel.error.text()
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        win.open_paths([str(images[0])])
    assert panel.table.rowCount() == 2
    win.close()


def test_an_image_the_models_cannot_take_is_an_error_in_the_panel(qtbot, window, tmp_path):
    from PIL import Image

    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((5, 5), 200, np.uint8)).save(tiny)
    panel = window.ai_panel
    with qtbot.waitSignal(panel.controller.failed, timeout=20000):
        window.open_paths([str(tiny)])
    assert "too small" in panel.error.text()
    assert panel.table.rowCount() == 0
    assert window.active_view().decoded is not None  # the viewer still shows it


def test_no_models_says_so(qtbot, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    win = MainWindow(settings=ViewerSettings(), save_on_close=False)
    panel = getattr(win, "ai_panel", None) or install_ai_panel(win, AiSettings(), save_settings=False)
    panel.apply_settings(AiSettings(models_dir=str(empty)))
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: panel.state is not None, timeout=20000)
    assert "No usable model" in panel.status.text()
    win.close()


def test_auto_run_off_waits_for_run(qtbot, window, images):
    panel = window.ai_panel
    panel.settings.auto_run = False
    window.open_paths([str(images[1])])
    qtbot.waitUntil(lambda: window.active_view().decoded is not None, timeout=20000)
    qtbot.wait(200)
    assert panel.result is None
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        _action(window, "Run Classifiers").trigger()
    assert panel.result is not None


def test_settings_dialog_and_file(qtbot, window, tmp_path, model_dir):
    panel = window.ai_panel
    dialog = panel.open_settings()
    dialog.opacity.setValue(0.7)
    dialog.colormap.setCurrentText("viridis")
    dialog.provider.setCurrentIndex(dialog.provider.findData("cpu"))
    values = dialog.values()
    dialog.reject()
    assert (values.opacity, values.colormap, values.provider) == (0.7, "viridis", "cpu")
    assert values.models_dir == str(model_dir)
    panel.apply_settings(values)
    assert panel.overlay.opacity() == pytest.approx(0.7, abs=0.01)
    qtbot.waitUntil(lambda: panel.state is not None and panel.state.engine.provider == "cpu", timeout=20000)

    path = tmp_path / "ai.json"
    save_ai_settings(values, path)
    assert load_ai_settings(path) == values
    path.write_text('{"provider": "quantum", "opacity": 7, "colormap": 3, "auto_run": "yes"}')
    loaded = load_ai_settings(path)
    assert (loaded.provider, loaded.opacity, loaded.colormap, loaded.auto_run) == ("auto", 1.0, "jet", True)
    path.write_text("{not json")
    assert load_ai_settings(path) == AiSettings()


def test_study_level_mean_over_the_views_seen(qtbot, window, tmp_path, pydicom_data_file):
    import pydicom

    source = pydicom.dcmread(pydicom_data_file("RG3_UNCR.dcm"))
    for n, rows_ in enumerate((0, 400)):
        ds = source.copy()
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["radreview-ai-test", str(n)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n + 1
        pixels = ds.pixel_array.copy()
        pixels[rows_ : rows_ + 600] = pixels.max()  # the views differ, so their probabilities do
        ds.PixelData = pixels.tobytes()
        ds.save_as(tmp_path / f"view{n}.dcm")
    panel = window.ai_panel
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        window.open_paths([str(tmp_path)])
    first = panel.result
    assert panel.study_label.text().startswith("Study, 1 view: ")  # one view seen so far
    entries = window.index.images()
    other = next(e for e in entries if e is not window.active_view().entry)
    with qtbot.waitSignal(panel.results_shown, timeout=20000):
        window.show_entry(other)
    second = panel.result
    text = panel.study_label.text()
    assert text.startswith("Study, 2 views: ")
    rows_ = aggregate_studies([("s", first), ("s", second)])
    (hardware,) = [r for r in rows_ if r.label == "hardware"]
    assert hardware.probability == pytest.approx((first.get("hardware").probability
                                                  + second.get("hardware").probability) / 2)
    assert text == study_line(rows_)


def test_ai_menu_sits_before_help(window):
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert "AI" in titles and titles.index("AI") < titles.index("Help")


def test_results_never_resize_the_image_pane(qtbot, window, images):
    """A dock that widened with long text would shrink the pane and refit the image mid-read."""
    show(qtbot, window, images[0])
    view = window.active_view()
    before = view.size()
    panel = window.ai_panel
    panel.heatmap_label.setText("Orthopaedic hardware (nothing above the threshold) " * 3)
    panel.status.setText("Models: " + "a-very-long-model-name 1.0.0, " * 6)
    qtbot.wait(50)
    assert view.size() == before


def test_heatmap_has_the_h_key_and_help_lists_the_ai_keys(qtbot) -> None:
    """H toggles the heatmap (flip moved to Shift+H); Help ▸ Shortcuts lists the AI panel's keys."""
    from radreview.gui.main_window import MainWindow

    window = MainWindow(save_on_close=False)
    qtbot.addWidget(window)
    assert window.ai_panel.heatmap_key == "H"
    dialog = window.show_shortcuts()
    qtbot.addWidget(dialog)
    table = dialog.table
    rows = {(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount())}
    for keys in ("H", "O", "Shift+O", "Ctrl+R"):
        assert (keys, "AI") in rows, keys
    assert ("Shift+H", "Image") in rows


def test_a_model_failing_on_the_image_is_named_and_the_others_still_answer(qtbot, model_dir, images, tmp_path):
    """A model whose graph returns fewer logits than its card lists (issue 12): its failure is
    shown in the panel; the other models' findings are listed as usual."""
    import json

    import onnx

    from radreview.inference.card import CARD_METADATA_KEY, weights_sha256
    from radreview.inference.toy import build_graph

    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    graph = build_graph(1, 64)
    for output in graph.graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = "K"  # only running it shows the mismatch
    card = toy_card("short", [("a", "fracture"), ("b", "fracture")], size=64).to_dict()
    card["weights_sha256"] = weights_sha256(graph)
    graph.metadata_props.add(key=CARD_METADATA_KEY, value=json.dumps(card))
    onnx.save(graph, str(folder / "short.onnx"))
    win = MainWindow(settings=ViewerSettings(), save_on_close=False)
    if getattr(win, "ai_panel", None) is None:
        install_ai_panel(win, AiSettings(models_dir=str(folder)), save_settings=False)
    else:
        win.ai_panel.apply_settings(AiSettings(models_dir=str(folder)))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.ai_panel.state is not None and len(win.ai_panel.state.engine.models) == 3,
                    timeout=20000)
    panel = show(qtbot, win, images[-1])
    assert "model short 1.0 failed: returned logits of shape [1, 1], but its card lists 2 labels" in panel.error.text()
    assert "Fractured" in {r[0] for r in rows(panel)}
    assert panel.region_label.text().startswith("Region: ")
    win.close()


def test_help_shortcuts_is_generated_from_the_one_table(qtbot) -> None:
    """Every row of Help ▸ Keyboard Shortcuts comes from actions.ACTIONS (plus the keys panels
    registered), and every key of the window's actions is listed there."""
    from PySide6.QtGui import QAction, QKeySequence

    from radreview.gui.actions import shortcut_rows

    window = MainWindow(settings=ViewerSettings(), save_on_close=False)
    qtbot.addWidget(window)
    dialog = window.show_shortcuts()
    qtbot.addWidget(dialog)
    table = dialog.table
    shown = [tuple(table.item(r, c).text() for c in range(3)) for r in range(table.rowCount())]
    assert shown == shortcut_rows(window.extra_shortcuts)
    listed = {QKeySequence(key.strip()).toString() for keys, _menu, _text in shown for key in keys.split(",")}
    bound = {s.toString() for a in window.findChildren(QAction) for s in a.shortcuts()}
    presets = {str(n) for n in range(1, 10)}  # listed as "1 … 9"
    assert bound - presets <= listed


def test_precision_setting_chooses_the_int8_or_float32_file(qtbot, tmp_path):
    import dataclasses

    import numpy as np

    from radreview.inference.card import read_card, write_card
    from radreview.training.quantize import quantize_graph

    folder = tmp_path / "models"
    card = write_toy_model(folder / "toy.onnx", toy_card("toy", [("fractured", "fracture")], size=64))
    pixels = np.random.default_rng(0).integers(0, 256, (8, 64, 64), dtype=np.uint8)
    quantize_graph(folder / "toy.onnx", folder / "toy_int8.onnx", pixels, card, stem_convs=0)
    write_card(folder / "toy_int8.onnx", dataclasses.replace(read_card(folder / "toy.onnx"), precision="int8",
                                                            quantization={"float32_sha256": card.weights_sha256}))
    win = MainWindow(settings=ViewerSettings(), save_on_close=False)
    panel = getattr(win, "ai_panel", None) or install_ai_panel(win, AiSettings(models_dir=str(folder)), save_settings=False)
    panel.save_settings = False
    qtbot.addWidget(win)
    for precision, expected in (("auto", "int8"), ("float32", "float32"), ("int8", "int8")):
        dialog = panel.open_settings()
        dialog.models_dir.setText(str(folder))
        dialog.precision.setCurrentIndex(dialog.precision.findData(precision))
        values = dialog.values()
        dialog.reject()
        assert values.precision == precision
        panel.apply_settings(values)
        qtbot.waitUntil(lambda: panel.state is not None and bool(panel.state.engine.models), timeout=20000)
        assert [m.card.precision for m in panel.state.engine.models] == [expected]
    path = tmp_path / "ai.json"
    path.write_text('{"precision": "int4"}')
    assert load_ai_settings(path).precision == "auto"
    win.close()
