"""The AI panel's settings: provider, precision, models folder, heatmap look, auto-run. Stored as JSON.

Kept apart from the viewer's ``settings.json`` (``ai_settings.json`` in the same folder) so the AI
can be configured, reset or deployed by a site without touching the viewer's preferences.
Plain Python, no Qt; loading never fails (a bad file or field falls back to the defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from radreview.gui.settings import config_dir, read_settings_file, typed_fields, write_settings_file
from radreview.inference.cam import COLOR_MAPS, DEFAULT_OPACITY
from radreview.inference.registry import PRECISION_CHOICES
from radreview.inference.sessions import PROVIDER_CHOICES

AI_SETTINGS_FILE = "ai_settings.json"
GATES = ("likely", "possible", "0.5")
BACKENDS = ("onnx", "torch")
# the torch back end's methods (radreview.training.torch_cam.CAM_METHODS; not imported here: torch)
CAM_METHODS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM", "eigencam": "Eigen-CAM"}


@dataclass
class AiSettings:
    provider: str = "auto"
    precision: str = "auto"  # a model shipped in two precisions: int8 where there is one, or as chosen
    models_dir: str = ""  # "" = the shipped and per-user folders
    opacity: float = DEFAULT_OPACITY
    colormap: str = "jet"
    auto_run: bool = True
    show_heatmap: bool = True
    cam_scale: str = "absolute"  # or "minmax" (per image, misleading on normal studies)
    # Local logits above the gate that the colour bar covers (absolute scale); 0 = the model
    # card's span (``cam.span_logits``, fitted on its validation positives), else the default.
    # (Named anew: files of older versions saved their default, 24, as "cam_span".)
    heatmap_span: float = 0.0
    gate: str = "likely"  # the operating point that gates the heatmap (high specificity by default)
    backend: str = "onnx"  # or "torch": a .pt checkpoint with a Grad-CAM method ([train] extra)
    checkpoint: str = ""
    cam_method: str = "gradcam"

    def model_dirs(self) -> list[Path] | None:
        return [Path(self.models_dir)] if self.models_dir else None


def ai_settings_path() -> Path:
    return config_dir() / AI_SETTINGS_FILE


def _valid(settings: AiSettings) -> AiSettings:
    defaults = AiSettings()
    if settings.provider not in PROVIDER_CHOICES:
        settings.provider = defaults.provider
    if settings.precision not in PRECISION_CHOICES:
        settings.precision = defaults.precision
    if settings.colormap not in COLOR_MAPS:
        settings.colormap = defaults.colormap
    if settings.cam_scale not in ("absolute", "minmax"):
        settings.cam_scale = defaults.cam_scale
    if settings.gate not in GATES:
        settings.gate = defaults.gate
    if settings.backend not in BACKENDS:
        settings.backend = defaults.backend
    if settings.cam_method not in CAM_METHODS:
        settings.cam_method = defaults.cam_method
    settings.opacity = min(1.0, max(0.0, float(settings.opacity)))
    span = float(settings.heatmap_span)
    settings.heatmap_span = 0.0 if not span > 0 else min(200.0, max(0.5, span))
    return settings


def load_ai_settings(path: Path | None = None) -> AiSettings:
    data = read_settings_file(path or ai_settings_path())
    return AiSettings() if data is None else _valid(AiSettings(**typed_fields(AiSettings, data)))


def save_ai_settings(settings: AiSettings, path: Path | None = None) -> None:
    write_settings_file(path or ai_settings_path(), settings)
