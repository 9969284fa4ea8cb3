"""Per-user JSON files (settings, saved PACS nodes): where they live, reading and writing them.

Plain Python, no Qt: the viewer's settings (:mod:`radreview.gui.settings`), the AI settings and
the saved PACS nodes (:mod:`radreview.pacs.nodes`) all read and write through these functions.
Files live in ``platformdirs.user_config_dir("radreview")`` or, when set, in the folder named by
the ``RADREVIEW_CONFIG_DIR`` environment variable (tests point it at a tmp dir). Reading never
fails: a missing file gives None, a corrupt one is set aside as ``<name>.corrupt``; writing is
atomic (temporary name, then rename).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import platformdirs

log = logging.getLogger(__name__)

CONFIG_DIR_ENV = "RADREVIEW_CONFIG_DIR"


def config_dir() -> Path:
    """The folder holding the user's settings."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir("radreview", appauthor=False))


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


def write_settings_file(path: Path, settings: Any) -> None:
    """Write a settings dataclass (or a plain dict) as JSON atomically (a crash mid-write leaves the old file intact)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        data = settings if isinstance(settings, dict) else asdict(settings)
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        # Losing preferences must not lose the user's session.
        log.warning("cannot save settings to %s: %s", path, exc)
