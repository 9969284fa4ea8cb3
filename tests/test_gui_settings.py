"""The viewer's settings file: round trip, corrupt and older files, the config-dir override."""

from __future__ import annotations

import json
import logging

import pytest

from radreview.gui.settings import (
    CONFIG_DIR_ENV,
    MAX_RECENT,
    ViewerSettings,
    config_dir,
    load_settings,
    save_settings,
    settings_path,
)


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))


def test_config_dir_follows_the_environment_variable(tmp_path) -> None:
    assert config_dir() == tmp_path / "config"
    assert settings_path() == tmp_path / "config" / "settings.json"


def test_missing_file_gives_defaults() -> None:
    assert load_settings() == ViewerSettings()


def test_round_trip_keeps_every_field() -> None:
    settings = ViewerSettings(layout="2x2", overlay_opacity=0.7, thumbnail_size=64, window_geometry="AAEC")
    settings.add_recent("/data/study1")
    settings.add_recent("/data/study2")
    save_settings(settings)
    loaded = load_settings()
    assert loaded == settings
    assert loaded.recent_paths[0].endswith("study2")


def test_recent_list_has_no_duplicates_and_a_limit() -> None:
    settings = ViewerSettings()
    for n in range(MAX_RECENT + 5):
        settings.add_recent(f"/data/{n}")
    settings.add_recent("/data/3")
    assert len(settings.recent_paths) == MAX_RECENT
    assert settings.recent_paths[0].endswith("3")
    assert len(set(settings.recent_paths)) == MAX_RECENT


def test_corrupt_file_is_set_aside_and_defaults_used(caplog) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    path.write_text("{ this is not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert load_settings() == ViewerSettings()
    assert "corrupt" in caplog.text
    assert path.with_name("settings.json.corrupt").exists()
    assert not path.exists()


def test_older_or_hand_edited_file_keeps_valid_fields(caplog) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    data = {"layout": "1x2", "overlay_opacity": "high", "thumbnail_size": 5000, "removed_option": 1, "recent_paths": ["/a", 3]}
    path.write_text(json.dumps(data), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        settings = load_settings()
    assert settings.layout == "1x2"
    assert settings.overlay_opacity == ViewerSettings().overlay_opacity  # wrong type: default
    assert settings.thumbnail_size == 256  # clamped
    assert settings.recent_paths == []  # not a list of strings: default
    assert "overlay_opacity" in caplog.text


def test_unknown_layout_falls_back_to_one_pane() -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"layout": "3x3"}), encoding="utf-8")
    assert load_settings().layout == "1x1"


def test_unwritable_config_dir_does_not_raise(tmp_path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(CONFIG_DIR_ENV, str(blocker / "sub"))
    with caplog.at_level(logging.WARNING):
        save_settings(ViewerSettings())
    assert "cannot save settings" in caplog.text


def test_the_heatmap_span_defaults_to_the_model_card_and_old_files_do_not_pin_it(tmp_path) -> None:
    """Older versions saved their default span (24) as "cam_span"; that must not override the
    model card's span now, while a span the user sets is kept."""
    import json

    from radreview.gui.ai_settings import AiSettings, load_ai_settings, save_ai_settings

    path = tmp_path / "ai_settings.json"
    path.write_text(json.dumps({"cam_span": 24.0, "colormap": "inferno"}))
    loaded = load_ai_settings(path)
    assert loaded.heatmap_span == 0.0 and loaded.colormap == "inferno"  # 0: from the card
    save_ai_settings(AiSettings(heatmap_span=6.0), path)
    assert load_ai_settings(path).heatmap_span == 6.0
    path.write_text(json.dumps({"heatmap_span": -3}))
    assert load_ai_settings(path).heatmap_span == 0.0
