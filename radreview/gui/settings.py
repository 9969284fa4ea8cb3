"""The viewer's settings: one typed object, stored per user as JSON.

The file lives in ``platformdirs.user_config_dir("radreview")`` or, when set, in the folder
named by the ``RADREVIEW_CONFIG_DIR`` environment variable (tests point it at a tmp dir).
Loading never fails: a missing file gives the defaults, a corrupt file is set aside as
``settings.json.corrupt`` and the defaults are used, and a field with the wrong type (an older
or hand-edited file) falls back to its default while the other fields are kept.

This module is plain Python (no Qt) so that it can be tested and reused without a display; the
file functions themselves live in :mod:`radreview.settings_files` (the PACS nodes use them too).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radreview.settings_files import (  # noqa: F401 - re-exported: older imports keep working
    CONFIG_DIR_ENV,
    config_dir,
    read_settings_file,
    typed_fields,
    write_settings_file,
)

log = logging.getLogger(__name__)

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


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


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


def load_settings(path: Path | None = None) -> ViewerSettings:
    """Read the settings file; never raises (see the module docstring)."""
    data = read_settings_file(path or settings_path())
    return ViewerSettings() if data is None else settings_from_dict(data)


def save_settings(settings: ViewerSettings, path: Path | None = None) -> None:
    write_settings_file(path or settings_path(), settings)
