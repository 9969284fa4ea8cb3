"""The one table of the viewer's actions: menus, keyboard shortcuts and Help ▸ Shortcuts.

The main window builds its QActions from :data:`ACTIONS`, and the shortcuts dialog is generated
from the same table, so the list a user reads cannot drift from what the keys do.
Each entry's ``name`` is the key of its handler in ``MainWindow._action_handlers()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    menu: str  # one of MENUS
    shortcuts: tuple[str, ...] = ()
    tip: str = ""
    checkable: bool = False


MENUS = ("File", "Navigate", "View", "Image", "Window/Level", "Panels", "Help")

ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open_files", "Open &File…", "File", ("Ctrl+O",), "Open DICOM, PNG, JPEG or TIFF files"),
    ActionSpec("open_folder", "Open F&older…", "File", ("Ctrl+Shift+O",), "Open every image under a folder"),
    ActionSpec("open_dicomdir", "Open &DICOMDIR…", "File", ("Ctrl+Shift+D",), "Open a DICOMDIR (media directory)"),
    ActionSpec("pacs", "&PACS…", "File", (), "Query a PACS, retrieve studies and open them"),
    ActionSpec("save_ai_sr", "Save AI Results as DICOM S&R…", "File", (),
               "The shown image's AI results as a DICOM Structured Report (holds patient data)"),
    ActionSpec("export_png", "&Export View as PNG…", "File", ("Ctrl+E",), "Save the active view as shown"),
    ActionSpec("close_all", "&Close All Studies", "File", ("Ctrl+W",), "Close every open study"),
    ActionSpec("quit", "&Quit", "File", ("Ctrl+Q",)),
    ActionSpec("next_image", "&Next Image", "Navigate", ("PgDown", "Down"), "Next image of the study list"),
    ActionSpec("previous_image", "&Previous Image", "Navigate", ("PgUp", "Up"), "Previous image"),
    ActionSpec("next_study", "Next &Study", "Navigate", ("Ctrl+PgDown", "Ctrl+Down"), "First image of the next study"),
    ActionSpec("previous_study", "Previous S&tudy", "Navigate", ("Ctrl+PgUp", "Ctrl+Up"), "First image of the previous study"),
    ActionSpec("next_frame", "Next &Frame", "Navigate", ("Right",), "Next frame of a multi-frame image"),
    ActionSpec("previous_frame", "Previous F&rame", "Navigate", ("Left",), "Previous frame of a multi-frame image"),
    ActionSpec("fit", "&Fit to Window", "View", ("F", "Home"), "Show the whole image"),
    ActionSpec("actual_size", "&Actual Pixels (1:1)", "View", ("Ctrl+1",), "One image pixel per screen pixel"),
    ActionSpec("zoom_in", "Zoom &In", "View", ("+", "="), "Also: mouse wheel"),
    ActionSpec("zoom_out", "Zoom &Out", "View", ("-",), "Also: mouse wheel"),
    ActionSpec("layout_1x1", "Layout 1×1", "View", ("Alt+1",), "One image", checkable=True),
    ActionSpec("layout_1x2", "Layout 1×2", "View", ("Alt+2",), "Two views side by side", checkable=True),
    ActionSpec("layout_2x2", "Layout 2×2", "View", ("Alt+4",), "Four views", checkable=True),
    ActionSpec("next_pane", "Next &Pane", "View", ("Ctrl+Tab",), "Make the next pane active"),
    ActionSpec("rotate_cw", "Rotate 90° &Clockwise", "Image", ("]",)),
    ActionSpec("rotate_ccw", "Rotate 90° C&ounter-clockwise", "Image", ("[",)),
    ActionSpec("flip_h", "Flip &Horizontal", "Image", ("Shift+H",), "H itself toggles the AI heatmap"),
    ActionSpec("flip_v", "Flip &Vertical", "Image", ("Shift+V",)),
    ActionSpec("invert", "&Invert Grey Scale", "Image", ("I",), checkable=True),
    ActionSpec("measure", "&Measure Distance", "Image", ("M",), "Left-drag draws a ruler (mm when spacing is known)", checkable=True),
    ActionSpec("clear_measurements", "C&lear Measurements", "Image", ("Delete", "Backspace")),
    ActionSpec("reset", "&Reset Image", "Image", ("R",), "Default window, no rotation/flip/invert, fit"),
    ActionSpec("default_window", "&Default Window", "Window/Level", ("0",), "The file's first window preset"),
    ActionSpec("show_header", "&Header Panel", "Panels", ("Ctrl+H",), "Key DICOM attributes", checkable=True),
    ActionSpec("show_problems", "&Problems Panel", "Panels", ("Ctrl+Shift+P",), "Files that could not be opened", checkable=True),
    ActionSpec("all_tags", "&All Tags…", "Panels", ("Ctrl+T",), "Every attribute of the current file"),
    ActionSpec("shortcuts", "&Keyboard Shortcuts…", "Help", ("F1",)),
    ActionSpec("about", "&About radreview", "Help"),
)

# Not actions of their own but part of what a user must be able to look up.
MOUSE_AND_KEYS_HELP: tuple[tuple[str, str], ...] = (
    ("1 … 9", "Window presets: the file's presets first, then Bone and Soft tissue (Window/Level menu)"),
    ("Right-drag", "Window/level: left/right changes width, up/down changes level (center)"),
    ("Left-drag", "Pan (or draw a ruler in measure mode)"),
    ("Mouse wheel", "Zoom about the cursor"),
    ("Click a pane", "Make it the active pane (header, status bar and keys follow it)"),
    ("Drop files or folders", "Open them"),
)

PRESET_KEYS = tuple(str(n) for n in range(1, 10))

# The tool bar: the actions a reader reaches for most ("" = separator).
TOOLBAR = (
    "open_folder", "", "previous_image", "next_image", "", "layout_1x1", "layout_1x2", "layout_2x2", "",
    "fit", "actual_size", "rotate_ccw", "rotate_cw", "flip_h", "flip_v", "invert", "", "measure", "reset",
)


def action_spec(name: str) -> ActionSpec:
    for spec in ACTIONS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def shortcut_rows(extra: Sequence[tuple[str, str, str]] = ()) -> list[tuple[str, str, str]]:
    """(keys, menu, action text) for every action with a key, then ``extra`` rows that panels
    added to the window (the AI panel's keys), then mouse/keyboard extras."""
    rows = [
        (", ".join(spec.shortcuts), spec.menu, spec.text.replace("&", "").rstrip("…"))
        for spec in ACTIONS
        if spec.shortcuts
    ]
    rows += list(extra)
    rows += [(keys, "Mouse and keys", text) for keys, text in MOUSE_AND_KEYS_HELP]
    return rows
