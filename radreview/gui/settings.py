"""The viewer's settings: one typed object, stored per user as JSON.

The file lives in ``platformdirs.user_config_dir("radreview")`` or, when set, in the folder
named by the ``RADREVIEW_CONFIG_DIR`` environment variable (tests point it at a tmp dir).
Loading never fails: a missing file gives the defaults, a corrupt file is set aside as
``settings.json.corrupt`` and the defaults are used, and a field with the wrong type (an older
or hand-edited file) falls back to its default while the other fields are kept.

This module is plain Python (no Qt) so that it can be tested and reused without a display.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

log = logging.getLogger(__name__)

CONFIG_DIR_ENV = "RADREVIEW_CONFIG_DIR"
SETTINGS_FILE = "settings.json"
SETTINGS_VERSION = 1
MAX_RECENT = 10
LAYOUTS = ("1x1", "1x2", "2x2")


@dataclass
class ViewerSettings:
    """Everything the viewer remembers between runs."""

    version: int = SETTINGS_VERSION
    # QMainWindow.saveGeometry()/saveState() as base64 text ("" = let Qt choose).
    window_geometry: str = ""
    window_state: str = ""
    recent_paths: list[str] = field(default_factory=list)
    last_open_dir: str = ""
    layout: str = "1x1"
    # Opacity of overlays such as AI heatmaps (0..1); read by the overlay docks.
    overlay_opacity: float = 0.4
    thumbnail_size: int = 96
    # Budget of the in-memory cache of decoded images: a handful of radiographs (a 1760x1760
    # CR takes ~18 MB decoded), so that going back and forth is instant but memory stays flat.
    image_cache_mb: int = 64
    # Grey levels per screen pixel of a right-drag, as a fraction of the image's value range.
    window_drag_sensitivity: float = 1.0
    show_header_panel: bool = True

    def add_recent(self, path: str | os.PathLike[str]) -> None:
        """Put ``path`` first in the recent list (no duplicates, at most MAX_RECENT)."""
        text = str(Path(path))
        self.recent_paths = [text] + [p for p in self.recent_paths if p != text]
        del self.recent_paths[MAX_RECENT:]


def config_dir() -> Path:
    """The folder holding the user's settings."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir("radreview", appauthor=False))


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def _coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` if it has the type of ``default`` (ints accepted for floats), else raise."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise TypeError(f"setting {name!r} should be {type(default).__name__}, got {value!r}")
    return value


def typed_fields(cls: type, data: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of dataclass ``cls`` found in ``data`` with their default's type; a field of
    the wrong type is logged and left out (so it takes its default)."""
    defaults = cls()
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data or f.name in skip:
            continue
        try:
            values[f.name] = _coerce(f.name, data[f.name], getattr(defaults, f.name))
        except TypeError as exc:
            log.warning("%s; using the default", exc)
    return values


def settings_from_dict(data: dict[str, Any]) -> ViewerSettings:
    """Build settings from parsed JSON, keeping each valid field and defaulting the rest."""
    settings = ViewerSettings(**typed_fields(ViewerSettings, data, skip=("version",)))
    if settings.layout not in LAYOUTS:
        log.warning("unknown layout %r in settings; using 1x1", settings.layout)
        settings.layout = "1x1"
    settings.overlay_opacity = min(1.0, max(0.0, settings.overlay_opacity))
    settings.thumbnail_size = min(256, max(32, settings.thumbnail_size))
    settings.image_cache_mb = min(8192, max(16, settings.image_cache_mb))
    del settings.recent_paths[MAX_RECENT:]
    return settings


def read_settings_file(path: Path) -> dict[str, Any] | None:
    """The JSON object in a settings file, or None (missing, unreadable or corrupt); never raises.

    A corrupt file is set aside as ``<name>.corrupt`` so that the next save does not destroy
    what a user may want to recover.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read settings %s (%s); using defaults", path, exc.strerror or exc)
        return None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        corrupt = path.with_name(path.name + ".corrupt")
        log.warning("settings file %s is corrupt (%s); kept as %s, using defaults", path, exc, corrupt)
        try:
            path.replace(corrupt)
        except OSError:
            pass
        return None
    return data


def load_settings(path: Path | None = None) -> ViewerSettings:
    """Read the settings file; never raises (see the module docstring)."""
    data = read_settings_file(path or settings_path())
    return ViewerSettings() if data is None else settings_from_dict(data)


def write_settings_file(path: Path, settings: Any) -> None:
    """Write a settings dataclass atomically (a crash mid-write leaves the old file intact)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(settings), indent=2), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        # Losing preferences must not lose the user's session.
        log.warning("cannot save settings to %s: %s", path, exc)


def save_settings(settings: ViewerSettings, path: Path | None = None) -> None:
    write_settings_file(path or settings_path(), settings)
