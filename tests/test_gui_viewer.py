"""The viewer, driven like a user: open, navigate with keys, window/level, zoom, rotate, measure,
export, layouts, settings, bad input and drag-and-drop (pytest-qt, offscreen).

Real files only: pydicom-data's RG3_UNCR.dcm / RG1_UNCR.dcm (CR MONOCHROME1), deid-data's
cat.dcm (a DX with Pixel Spacing), and copies of RG3 given new UIDs to form a multi-view study.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pyqtgraph as pg
import pytest
from PIL import Image

pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent, QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from radreview import RESEARCH_USE_NOTICE  # noqa: E402
from radreview.gui.actions import ACTIONS  # noqa: E402
from radreview.gui.main_window import MainWindow  # noqa: E402
from radreview.gui.settings import CONFIG_DIR_ENV, ViewerSettings, load_settings  # noqa: E402
from radreview.studies import decode_image, render_display  # noqa: E402

pytestmark = pytest.mark.gui


# ----- fixtures ------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))


@pytest.fixture(scope="module")
def cat_file() -> Path:
    import deid_data

    return Path(deid_data.__file__).parent / "data" / "animals" / "cat.dcm"


@pytest.fixture(scope="module")
def multiview_dir(tmp_path_factory, pydicom_data_file) -> Path:
    """One study with three views (RG3 re-identified per view) plus RG1 as a second study."""
    folder = tmp_path_factory.mktemp("multiview")
    source = pydicom.dcmread(pydicom_data_file("RG3_UNCR.dcm"))
    for n, view in enumerate(("AP", "LAT", "OBL"), start=1):
        ds = source.copy()
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["radreview-test", view])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n
        ds.ViewPosition = view
        ds.save_as(folder / f"view{n}.dcm")
    shutil.copy(pydicom_data_file("RG1_UNCR.dcm"), folder / "other_study.dcm")
    return folder


@pytest.fixture
def window(qtbot):
    win = MainWindow(settings=ViewerSettings(), save_on_close=False)
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    yield win
    win.close()


def open_and_wait(qtbot, window: MainWindow, paths) -> None:
    window.open_paths([str(p) for p in paths])
    qtbot.waitUntil(lambda: not window._index_tasks, timeout=20000)
    wait_idle(qtbot, window)


def wait_idle(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window._pane_tasks, timeout=20000)
    QApplication.processEvents()


def key(qtbot, window: MainWindow, sequence: str) -> None:
    """Press a key as a user would (through the window's shortcut map)."""
    from PySide6.QtGui import QKeySequence

    combo = QKeySequence(sequence)[0]
    qtbot.keyClick(window.grid.active_view(), combo.key(), combo.keyboardModifiers())
    wait_idle(qtbot, window)


def mouse_drag(view, button: Qt.MouseButton, start: QPoint, end: QPoint, steps: int = 8) -> None:
    """A real press-move-release sequence on the view's viewport (pyqtgraph sees a drag)."""
    viewport = view.viewport()

    def send(kind, pos: QPoint, buttons) -> None:
        global_pos = QPointF(viewport.mapToGlobal(pos))
        event = QMouseEvent(kind, QPointF(pos), global_pos, button, buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)

    send(QEvent.Type.MouseButtonPress, start, button)
    for i in range(1, steps + 1):
        pos = start + (end - start) * (i / steps)
        send(QEvent.Type.MouseMove, pos, button)
        QApplication.processEvents()
    send(QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
    QApplication.processEvents()


def centre_of(view) -> QPoint:
    return view.viewport().rect().center()


# ----- opening and rendering -----------------------------------------------------------------
def test_opens_a_real_cr_rendered_like_render_display(qtbot, window, pydicom_data_file) -> None:
    path = pydicom_data_file("RG3_UNCR.dcm")
    open_and_wait(qtbot, window, [path])
    view = window.active_view()
    assert view.entry is not None and view.entry.path == path
    expected = render_display(decode_image(view.entry))
    np.testing.assert_array_equal(view.image_item.image, expected)
    # MONOCHROME1 with bone white: tibia > soft tissue > air beside the leg.
    shown = view.image_item.image.astype(float)
    tibia, soft, air = shown[400:500, 820:900].mean(), shown[400:500, 700:760].mean(), shown[400:500, 480:560].mean()
    assert tibia > soft + 50 > air + 100
    assert RESEARCH_USE_NOTICE in window.windowTitle()
    assert window.notice_label.text() == RESEARCH_USE_NOTICE
    assert window.browser.topLevelItemCount() == 1
    assert "W 1024" in window.window_label.text()


def test_current_image_changed_signal_carries_entry_and_decoded(qtbot, window, pydicom_data_file) -> None:
    seen = []
    window.current_image_changed.connect(lambda entry, decoded: seen.append((entry, decoded)))
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    entry, decoded = seen[-1]
    assert entry is window.active_view().entry
    assert decoded is window.active_view().decoded and decoded.shape == (1760, 1760)


# ----- navigation ----------------------------------------------------------------------------
def test_keyboard_navigation_between_images_and_studies(qtbot, window, multiview_dir) -> None:
    open_and_wait(qtbot, window, [multiview_dir])
    images = window.index.images()
    studies = window.index.studies()
    assert len(images) == 4 and len(studies) == 2
    assert window.current is images[0]
    key(qtbot, window, "PgDown")
    assert window.current is images[1]
    assert window.active_view().entry is images[1]
    key(qtbot, window, "PgUp")
    assert window.current is images[0]
    key(qtbot, window, "Ctrl+PgDown")
    other = next(s for s in studies if s.images()[0] is window.current)
    assert other.images()[0].path.name == window.current.path.name
    assert window.study_of(window.current) is not window.study_of(images[0])
    key(qtbot, window, "Ctrl+PgUp")
    assert window.study_of(window.current) is window.study_of(images[0])
    # The browser follows the keys.
    assert window.browser.current_entry() is window.current


def test_selecting_in_the_browser_shows_that_image(qtbot, window, multiview_dir) -> None:
    open_and_wait(qtbot, window, [multiview_dir])
    target = window.index.images()[2]
    window.browser.setCurrentItem(window.browser.item_for(target))
    wait_idle(qtbot, window)
    assert window.active_view().entry is target


# ----- window/level --------------------------------------------------------------------------
def test_presets_by_number_keys_and_default(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    view = window.active_view()
    presets = view.window_presets()
    assert len(presets) == 3  # the file's one preset, then Bone and Soft tissue
    assert [p.name for p in presets[1:]] == ["Bone", "Soft tissue"]
    key(qtbot, window, "2")
    QApplication.processEvents()
    assert view.window == presets[1]
    np.testing.assert_array_equal(view.image_item.image, render_display(view.decoded, presets[1]))
    key(qtbot, window, "3")
    assert view.window == presets[2]
    key(qtbot, window, "0")
    assert view.window == presets[0]
    assert "1024" in window.preset_actions[0].text()


def test_right_drag_changes_width_and_level(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    view = window.active_view()
    before = view.window
    start = centre_of(view)
    mouse_drag(view, Qt.MouseButton.RightButton, start, start + QPoint(100, 0))
    assert view.window.width > before.width
    assert view.window.center == pytest.approx(before.center)
    widened = view.window
    mouse_drag(view, Qt.MouseButton.RightButton, start, start + QPoint(0, 60))
    assert view.window.center > widened.center
    assert view.window.width == pytest.approx(widened.width)
    QApplication.processEvents()
    np.testing.assert_array_equal(view.image_item.image, render_display(view.decoded, view.window))
    key(qtbot, window, "R")
    assert view.window == view.decoded.windows[0]


def test_invert_toggle(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    view = window.active_view()
    normal = view.image_item.image.copy()
    key(qtbot, window, "I")
    QApplication.processEvents()
    assert view.invert
    np.testing.assert_array_equal(view.image_item.image, 255 - normal)


# ----- geometry ------------------------------------------------------------------------------
def test_zoom_fit_and_one_to_one(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    view = window.active_view()
    fitted = view.zoom_percent()
    assert 5 < fitted < 100  # a 1760-pixel image fitted into a smaller pane
    key(qtbot, window, "+")
    assert view.zoom_percent() == pytest.approx(fitted * 1.25, rel=0.02)
    key(qtbot, window, "Ctrl+1")
    assert view.zoom_percent() == pytest.approx(100, rel=0.02)
    key(qtbot, window, "F")
    assert view.zoom_percent() == pytest.approx(fitted, rel=0.02)
    assert "Zoom" in window.zoom_label.text()


def test_wheel_zooms(qtbot, window, pydicom_data_file) -> None:
    from PySide6.QtGui import QWheelEvent

    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    view = window.active_view()
    before = view.zoom_percent()
    pos = QPointF(centre_of(view))
    event = QWheelEvent(
        pos, QPointF(view.viewport().mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 240),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
    )
    QApplication.sendEvent(view.viewport(), event)
    QApplication.processEvents()
    assert view.zoom_percent() > before * 1.1


def test_rotate_and_flip_move_an_overlay_with_the_image(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    view = window.active_view()
    overlay = pg.ImageItem(np.zeros((10, 10), dtype=np.float32))
    overlay.setRect(0, 0, 1760, 1760)
    view.add_overlay(overlay)
    corner = QPointF(100, 300)  # column 100, row 300

    def where(item):
        # The same image point through each item: the overlay's 10x10 array is stretched over
        # the 1760x1760 image, so image pixel (100, 300) is overlay pixel (100/176, 300/176).
        local = corner if item is view.image_item else QPointF(corner.x() / 176, corner.y() / 176)
        return view.view_box.childGroup.mapFromScene(item.mapToScene(local))

    assert overlay.parentItem() is view.image_group

    def same(a: QPointF, b: QPointF) -> bool:
        return abs(a.x() - b.x()) < 1e-6 and abs(a.y() - b.y()) < 1e-6

    original = where(view.image_item)
    key(qtbot, window, "]")
    assert view.rotation == 90
    rotated = where(view.image_item)
    # Clockwise on a y-down screen: (x, y) about the centre c goes to (c + (c - y), c + (x - c)).
    assert (rotated.x(), rotated.y()) == pytest.approx((1760 - 300, 100))
    assert same(where(overlay), rotated)
    key(qtbot, window, "[")
    assert view.rotation == 0
    key(qtbot, window, "Shift+H")
    flipped = where(view.image_item)
    assert (flipped.x(), flipped.y()) == pytest.approx((1760 - 100, 300))
    assert same(where(overlay), flipped)
    key(qtbot, window, "Shift+V")
    assert (where(view.image_item).x(), where(view.image_item).y()) == pytest.approx((1660, 1460))
    # The data itself is never flipped.
    np.testing.assert_array_equal(view.image_item.image, render_display(view.decoded))
    key(qtbot, window, "R")
    assert same(where(view.image_item), original)


# ----- measurement and readout ----------------------------------------------------------------
def test_distance_in_millimetres_with_pixel_spacing(qtbot, window, cat_file) -> None:
    open_and_wait(qtbot, window, [cat_file])
    view = window.active_view()
    assert view.decoded.pixel_spacing == pytest.approx((0.14, 0.14))
    key(qtbot, window, "M")
    assert view.view_box.measuring
    start = centre_of(view)
    mouse_drag(view, Qt.MouseButton.LeftButton, start - QPoint(100, 0), start + QPoint(100, 0))
    assert len(view.rulers) == 1
    ruler = view.rulers[0]
    expected_px = 200 / (view.zoom_percent() / 100)  # 200 screen pixels at the current zoom
    assert ruler.pixels == pytest.approx(expected_px, rel=0.03)
    assert ruler.millimetres == pytest.approx(ruler.pixels * 0.14, rel=1e-6)
    assert ruler.text.endswith(" mm")
    # A ruler drawn programmatically: 100 columns of 0.14 mm.
    assert view.add_ruler(QPointF(10, 10), QPointF(110, 10)).millimetres == pytest.approx(14.0)
    key(qtbot, window, "Delete")
    assert view.rulers == []


def test_distance_without_spacing_says_pixels(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    ruler = window.active_view().add_ruler(QPointF(0, 0), QPointF(30, 40))
    assert ruler.millimetres is None
    assert ruler.text == "50.0 px (no pixel spacing)"


def test_status_bar_shows_the_modality_value_under_the_cursor(qtbot, window, cat_file) -> None:
    open_and_wait(qtbot, window, [cat_file])
    view = window.active_view()
    pos = centre_of(view)
    scene_pos = view.mapToScene(pos)
    row, col, value = view.pixel_at(scene_pos)
    assert value == float(view.decoded.pixels[row, col])
    event = QMouseEvent(QEvent.Type.MouseMove, QPointF(pos), QPointF(view.viewport().mapToGlobal(pos)),
                        Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view.viewport(), event)
    QApplication.processEvents()
    text = window.cursor_label.text()
    assert f"x {col}" in text and f"y {row}" in text and f"value {value:g}" in text


# ----- export, layouts, panels -----------------------------------------------------------------
def test_export_view_as_png(qtbot, window, pydicom_data_file, tmp_path) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    out = tmp_path / "view.png"
    assert window.export_view_png(out)
    picture = np.asarray(Image.open(out).convert("L"))
    assert picture.shape[0] > 100 and picture.shape[1] > 100
    assert picture.std() > 10  # an image, not a blank pane
    # In a multi-pane layout the active pane's blue frame is not part of the export.
    window.set_layout("1x2")
    wait_idle(qtbot, window)
    assert window.active_view().active
    assert window.export_view_png(tmp_path / "pane.png")
    rgb = np.asarray(Image.open(tmp_path / "pane.png").convert("RGB")).astype(int)
    edge = rgb[0, :, :]
    assert (edge[:, 2] - edge[:, 0]).max() < 40  # no blue border along the top
    assert window.active_view().active  # and the highlight is back on screen


def test_layouts_hang_the_views_of_a_study(qtbot, window, multiview_dir) -> None:
    open_and_wait(qtbot, window, [multiview_dir])
    study_images = next(s for s in window.index.studies() if len(s.images()) == 3).images()
    window.show_entry(study_images[0])
    wait_idle(qtbot, window)
    key(qtbot, window, "Alt+4")
    assert window.grid.layout_name == "2x2" and len(window.views()) == 4
    wait_idle(qtbot, window)
    shown = [v.entry for v in window.views()]
    assert shown[:3] == study_images and shown[3] is None
    key(qtbot, window, "PgDown")
    assert window.grid.active_index == 1 and window.active_view().entry is study_images[1]
    QApplication.processEvents()
    widths = {v.width() for v in window.views()}
    assert max(widths) - min(widths) <= 2  # equal panes
    key(qtbot, window, "Alt+2")
    assert window.grid.layout_name == "1x2" and len(window.views()) == 2
    QApplication.processEvents()
    left, right = window.views()
    assert abs(left.width() - right.width()) <= 2 and left.height() == right.height()
    assert window.actions_by_name["layout_1x2"].isChecked()
    # Clicking a pane makes it active and its image current; Ctrl+Tab moves to the next pane.
    qtbot.mouseClick(window.views()[0].viewport(), Qt.MouseButton.LeftButton, pos=centre_of(window.views()[0]))
    wait_idle(qtbot, window)
    assert window.grid.active_index == 0 and window.current is window.views()[0].entry
    key(qtbot, window, "Ctrl+Tab")
    assert window.grid.active_index == 1 and window.current is window.views()[1].entry
    key(qtbot, window, "Alt+1")
    assert len(window.views()) == 1


def test_header_panel_and_all_tags(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    qtbot.waitUntil(lambda: window.header_panel.table.rowCount() > 5, timeout=3000)
    table = window.header_panel.table
    attributes = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert attributes["Modality"] == "CR"
    dialog = window.header_panel.show_all_tags()
    qtbot.addWidget(dialog)
    keywords = {dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())}
    assert {"Modality", "Rows", "PhotometricInterpretation"} <= keywords
    dialog.filter.setText("Photometric")
    visible = [r for r in range(dialog.table.rowCount()) if not dialog.table.isRowHidden(r)]
    assert visible and all("Photometric" in dialog.table.item(r, 1).text() for r in visible)


def test_shortcuts_dialog_lists_every_key_of_the_action_table(qtbot, window) -> None:
    dialog = window.show_shortcuts()
    qtbot.addWidget(dialog)
    listed = {dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())}
    for spec in ACTIONS:
        if spec.shortcuts:
            assert ", ".join(spec.shortcuts) in listed, spec.name
            # ...and the key really is bound to the action.
            bound = [s.toString() for s in window.actions_by_name[spec.name].shortcuts()]
            assert len(bound) == len(spec.shortcuts)
    assert "1 … 9" in listed


# ----- bad input --------------------------------------------------------------------------------
def test_bad_input_is_listed_and_the_rest_opens(qtbot, window, pydicom_data_file, tmp_path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = pydicom_data_file("RG3_UNCR.dcm")
    shutil.copy(good, folder / "good.dcm")
    (folder / "not_dicom.dcm").write_text("this is a text file, not DICOM")
    (folder / "empty_subfolder").mkdir()
    data = good.read_bytes()
    (folder / "truncated_header.dcm").write_bytes(data[:300])
    # A full header but half of the pixel data: indexing succeeds, decoding fails.
    (folder / "truncated_pixels.dcm").write_bytes(data[: len(data) // 2])
    no_pixels = pydicom.dcmread(good)
    del no_pixels.PixelData  # like an SR or a presentation state: nothing to show
    no_pixels.SOPInstanceUID = no_pixels.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    no_pixels.save_as(folder / "no_pixels.dcm")
    mpeg = pydicom.dcmread(good)
    mpeg.SOPInstanceUID = mpeg.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    mpeg.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: not a radiograph syntax
    mpeg.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    mpeg["PixelData"].VR = "OB"
    mpeg.save_as(folder / "mpeg2.dcm", enforce_file_format=True)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    open_and_wait(qtbot, window, [folder])
    problems = {p.path.name: p.reason for p in window.problems_panel.problems}
    assert "not_dicom.dcm" in problems and "truncated_header.dcm" in problems
    assert "no_pixels.dcm" in problems and "broken.jpg" in problems
    assert not window.problems_dock.isHidden()
    # The good file opened; the one with cut pixel data reports when it is shown.
    names = sorted(e.path.name for e in window.index.images())
    assert "good.dcm" in names
    for entry in window.index.images():
        window.show_entry(entry)
        wait_idle(qtbot, window)
    if "truncated_pixels.dcm" in names:
        assert "truncated_pixels.dcm" in {p.path.name for p in window.problems_panel.problems}
        bad_view = window.active_view()
        assert bad_view.decoded is None and "truncated_pixels.dcm" in bad_view._message.text()
    assert "mpeg2.dcm" in {p.path.name for p in window.problems_panel.problems}  # at indexing or display
    good_entry = next(e for e in window.index.images() if e.path.name == "good.dcm")
    window.show_entry(good_entry)
    wait_idle(qtbot, window)
    assert window.active_view().decoded is not None  # the app is still usable
    rows = [window.problems_panel.list.item(r).text() for r in range(window.problems_panel.list.count())]
    # the full path, not a bare name that does not say which "not_dicom.dcm" it was
    assert any(r.startswith(f"{folder / 'not_dicom.dcm'}: ") for r in rows)
    assert not any(r.startswith("not_dicom.dcm") for r in rows)


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="FIFOs are POSIX")
def test_hostile_files_never_stop_the_viewer(qtbot, window, tmp_path) -> None:
    """Issue 12: frames that make gdcm abort, symlink loops, a FIFO, a zip bomb: the viewer lists
    them, shows every good image and keeps running (it used to die 1.8 s after the folder opened)."""
    import os
    import signal

    import _hostile_files as hostile

    folder = hostile.good_folder(tmp_path / "hostile")
    j2k = hostile.gdcm_abort_file("JPEG2000.dcm", folder / "garbage_j2k.dcm")
    assert hostile.gdcm_kills_a_process_on(j2k) == -signal.SIGABRT
    hostile.gdcm_abort_file("JPEG-LL.dcm", folder / "garbage_ll.dcm")
    os.symlink("ping.dcm", folder / "pong.dcm")
    os.symlink("pong.dcm", folder / "ping.dcm")
    os.mkfifo(folder / "pipe.dcm")
    bomb = hostile.zip_bomb(tmp_path / "bomb.zip")
    open_and_wait(qtbot, window, [folder, bomb])
    for entry in window.index.images():
        window.show_entry(entry)
        wait_idle(qtbot, window)
    problems = {p.path.name: p.reason for p in window.problems_panel.problems}
    assert "SIGABRT" in problems["garbage_j2k.dcm"] and "SIGABRT" in problems["garbage_ll.dcm"]
    assert problems["ping.dcm"].startswith("symbolic link loop") and "named pipe" in problems["pipe.dcm"]
    assert "zip bomb" in problems["bomb.zip"]
    good = [e for e in window.index.images() if e.path.name in ("mr.dcm", "ct.dcm", "hip.dcm")]
    assert len(good) == 3
    window.show_entry(good[0])
    wait_idle(qtbot, window)
    assert window.active_view().decoded is not None


def test_empty_folder_and_missing_path_are_reported(qtbot, window, tmp_path) -> None:
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    open_and_wait(qtbot, window, [empty, tmp_path / "no_such_file.dcm"])
    assert sorted(p.path.name for p in window.problems_panel.problems) == ["no_such_file.dcm", "nothing_here"]
    assert window.active_view().decoded is None


# ----- drag and drop, settings ------------------------------------------------------------------
def test_drop_a_folder_opens_it(qtbot, window, multiview_dir) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(multiview_dir))])
    from PySide6.QtGui import QDragEnterEvent

    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    # Without a window system drag in progress Qt does not route a synthetic drop; deliver it
    # to the handler the way Qt would after an accepted drag-enter.
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert drop.isAccepted()
    qtbot.waitUntil(lambda: len(window.index.images()) == 4, timeout=20000)
    wait_idle(qtbot, window)
    assert window.active_view().decoded is not None
    assert window.settings.recent_paths[0] == str(multiview_dir.resolve())


def test_settings_survive_a_restart(qtbot, multiview_dir) -> None:
    first = MainWindow(settings=load_settings())
    qtbot.addWidget(first)
    first.show()
    open_and_wait(qtbot, first, [multiview_dir])
    first.set_layout("1x2")
    first.resize(1000, 700)
    first.close()
    saved = load_settings()
    assert saved.layout == "1x2"
    assert saved.recent_paths == [str(multiview_dir.resolve())]
    assert saved.window_geometry
    second = MainWindow(settings=saved)
    qtbot.addWidget(second)
    second.show()
    assert second.grid.layout_name == "1x2"
    assert second.actions_by_name["layout_1x2"].isChecked()
    second.close()


def test_decoded_images_are_cached_and_reused(qtbot, window, multiview_dir) -> None:
    open_and_wait(qtbot, window, [multiview_dir])
    first = window.active_view().decoded
    key(qtbot, window, "PgDown")
    key(qtbot, window, "PgUp")
    assert window.active_view().decoded is first  # from the LRU, not decoded again
    assert len(window.cache) == 2


# ----- demo studies, DICOMDIR, multi-frame, the `radreview PATH` entry point -------------------------
def test_dicomdir_of_the_demo_leg_opens_both_views(qtbot, window) -> None:
    from radreview.studies import demo_dir

    open_and_wait(qtbot, window, [demo_dir() / "DEMO_LEG" / "DICOMDIR"])
    labels = [e.label for e in window.index.images()]
    assert labels == ["LEG AP #1", "LEG LATERAL #2"]
    key(qtbot, window, "Alt+2")
    assert [v.entry.label for v in window.views()] == labels
    assert all(v.decoded is not None for v in window.views())


def test_frames_of_a_multiframe_file_with_arrow_keys(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("emri_small.dcm")])
    view = window.active_view()
    assert view.decoded.number_of_frames == 10 and view.decoded.frame == 0
    key(qtbot, window, "Right")
    key(qtbot, window, "Right")
    assert view.decoded.frame == 2
    np.testing.assert_array_equal(view.image_item.image, render_display(decode_image(view.entry, 2), view.window))
    assert "frame 3/10" in view._caption.text()
    key(qtbot, window, "Left")
    assert view.decoded.frame == 1


def test_viewer_entry_point_opens_the_demo_studies_and_saves_a_screenshot(qtbot, tmp_path) -> None:
    """What `make run` does (`radreview resources/demo`), with the debug screenshot option."""
    from radreview.cli import main
    from radreview.studies import demo_dir

    out = tmp_path / "shot.png"
    assert main([str(demo_dir()), "--screenshot", str(out), "--size", "1200", "800"]) == 0
    picture = np.asarray(Image.open(out).convert("L"))
    assert picture.shape == (800, 1200)
    assert picture.std() > 20
    assert not (tmp_path / "config" / "settings.json").exists()  # debug runs leave settings alone


def test_window_drag_previews_at_screen_resolution_then_renders_in_full(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    view = window.active_view()
    assert view.zoom_percent() < 50 and view.preview_factor() >= 2
    view.view_box.window_dragged.emit(40.0, 10.0, True, False)  # a drag in progress
    QApplication.processEvents()
    preview = view.image_item.image
    assert preview.shape[0] == -(-1760 // view.preview_factor())
    # The preview covers exactly the image's pixel rectangle (overlays and rulers stay put).
    rect = view.image_item.mapRectToParent(view.image_item.boundingRect())
    assert (rect.width(), rect.height()) == pytest.approx((1760, 1760))
    view.view_box.window_dragged.emit(5.0, 0.0, False, True)  # released
    np.testing.assert_array_equal(view.image_item.image, render_display(view.decoded, view.window))


def test_left_drag_pans(qtbot, window, pydicom_data_file) -> None:
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    view = window.active_view()
    before = view.view_box.viewRect().center()
    start = centre_of(view)
    mouse_drag(view, Qt.MouseButton.LeftButton, start, start + QPoint(120, 0))
    after = view.view_box.viewRect().center()
    # Dragging right moves the image right: the view centre moves left in image coordinates.
    scale = 100 / view.zoom_percent()
    assert before.x() - after.x() == pytest.approx(120 * scale, rel=0.05)
    assert after.y() == pytest.approx(before.y())
    assert view.rulers == []  # not in measure mode: no ruler


def test_moving_on_drops_the_stale_decode(qtbot, window, multiview_dir) -> None:
    open_and_wait(qtbot, window, [multiview_dir])
    window.cache.clear()
    first, second, third = window.index.images()[1:4]
    shown = []
    window.current_image_changed.connect(lambda entry, _decoded: shown.append(entry))
    window.show_entry(first)
    window.show_entry(second)  # before the first has decoded: the user moved on
    window.show_entry(third)
    wait_idle(qtbot, window)
    qtbot.wait(200)
    assert window.active_view().entry is third and window.active_view().decoded is not None
    assert first not in shown and second not in shown


def test_recent_menu_reopens_a_study(qtbot, window, multiview_dir) -> None:
    open_and_wait(qtbot, window, [multiview_dir])
    window.close_all()
    assert window.index.images() == [] and window.active_view().decoded is None
    window._fill_recent_menu()
    entries = [a for a in window.recent_menu.actions() if a.text() == str(multiview_dir.resolve())]
    assert len(entries) == 1
    entries[0].trigger()
    qtbot.waitUntil(lambda: len(window.index.images()) == 4, timeout=20000)
    wait_idle(qtbot, window)
    assert window.active_view().decoded is not None


def test_no_key_is_bound_twice(window) -> None:
    """Qt ignores an ambiguous shortcut altogether, so two actions on one key would both die."""
    from PySide6.QtGui import QAction

    seen: dict[str, str] = {}
    for action in window.findChildren(QAction):
        for sequence in action.shortcuts():
            text = sequence.toString()
            assert text not in seen, f"{text!r} is bound to {seen.get(text)!r} and {action.text()!r}"
            seen[text] = action.text()


def test_colour_image_shows_rgb_and_ignores_window_drag(qtbot, window, tmp_path) -> None:
    rgb = np.zeros((120, 160, 3), dtype=np.uint8)
    rgb[..., 0] = np.arange(160, dtype=np.uint8)[None, :]  # a red ramp
    rgb[40:80, 60:100, 2] = 200
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    open_and_wait(qtbot, window, [tmp_path / "photo.png"])
    view = window.active_view()
    assert view.decoded.is_color
    np.testing.assert_array_equal(view.image_item.image, rgb)
    before = view.window
    mouse_drag(view, Qt.MouseButton.RightButton, centre_of(view), centre_of(view) + QPoint(80, 40))
    assert view.window == before
    np.testing.assert_array_equal(view.image_item.image, rgb)
    assert view.pixel_text(view.image_group.mapToScene(QPointF(70.5, 50.5))) == "x 70  y 50   RGB 70,0,200"


def test_pixel_value_shows_a_rescale_unit_but_not_unspecified(qtbot, window, tmp_path, pydicom_data_file) -> None:
    """Rescale Type "US" is DICOM's "unspecified": no unit after the value (it read as ultrasound)."""
    units = {"US": "", "OD": " OD"}
    for rescale_type in units:
        ds = pydicom.dcmread(pydicom_data_file("RG3_UNCR.dcm"))
        ds.RescaleType = rescale_type
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()  # two images
        ds.save_as(tmp_path / f"rg3_{rescale_type}.dcm")
    open_and_wait(qtbot, window, [tmp_path])
    seen = set()
    for entry in window.index.images():
        window.show_entry(entry)
        wait_idle(qtbot, window)
        view = window.active_view()
        suffix = units[view.decoded.rescale_type]
        seen.add(view.decoded.rescale_type)
        text = view.pixel_text(view.image_group.mapToScene(QPointF(100.5, 200.5)))
        assert text == f"x 100  y 200   value {view.decoded.pixels[200, 100]:g}{suffix}"
    assert seen == set(units)  # both images were shown


def test_opening_the_same_folder_twice_adds_nothing(qtbot, window, multiview_dir) -> None:
    open_and_wait(qtbot, window, [multiview_dir])
    shown = window.current
    open_and_wait(qtbot, window, [multiview_dir])
    assert len(window.index.images()) == 4
    assert window.current is shown and window.browser.current_entry() is shown


def test_thumbnails_are_made_for_rows_in_view_only(qtbot, window) -> None:
    from radreview.studies import demo_dir

    window.resize(1000, 420)  # a short browser: only some rows are visible
    open_and_wait(qtbot, window, [demo_dir()])
    browser = window.browser
    browser.scrollToTop()
    qtbot.waitUntil(lambda: not window.is_busy() and bool(browser._has_thumbnail), timeout=20000)
    total = len(window.index.images())
    first_batch = set(browser._has_thumbnail)
    assert 0 < len(first_batch) < total
    browser.verticalScrollBar().setValue(browser.verticalScrollBar().maximum())
    qtbot.waitUntil(lambda: len(browser._has_thumbnail) > len(first_batch), timeout=20000)
    qtbot.waitUntil(lambda: not window.is_busy(), timeout=20000)
    last = window.index.images()[-1]
    assert (str(last.path), last.sop_instance_uid) in browser._has_thumbnail


def test_tool_bar_buttons_are_the_menu_actions(qtbot, window, pydicom_data_file) -> None:
    from radreview.gui.actions import TOOLBAR

    on_bar = window.toolbar.actions()
    for name in filter(None, TOOLBAR):
        assert window.actions_by_name[name] in on_bar
    open_and_wait(qtbot, window, [pydicom_data_file("RG3_UNCR.dcm")])
    window.toolbar.widgetForAction(window.actions_by_name["rotate_cw"]).click()
    assert window.active_view().rotation == 90
    assert "]" in window.actions_by_name["rotate_cw"].toolTip()
