"""Finding, indexing and decoding local studies, and the pixel pipeline (no Qt here).

- :func:`index_paths` — files/folders/DICOMDIR ▸ :class:`StudyIndex` (headers only).
- :func:`decode_image` — one frame ▸ :class:`DecodedImage` (Modality LUT applied, VOI presets).
- :func:`render_display` — VOI LUT ▸ MONOCHROME1 ▸ Presentation LUT ▸ uint8 for the screen.
- :func:`decode_display_levels` — both at once for the first display, without the float copy
  window/level needs (batch prediction, thumbnails, training).
"""

from radreview.studies.demo import demo_dir
from radreview.studies.display import render_display
from radreview.studies.errors import StudyLoadError
from radreview.studies.header import header_attributes, key_attributes
from radreview.studies.index import index_paths
from radreview.studies.model import ImageEntry, LoadProblem, Patient, Series, Study, StudyIndex
from radreview.studies.pixels import DecodedImage, decode_display_levels, decode_image
from radreview.studies.presets import bone_window, soft_tissue_window
from radreview.studies.voi import VoiLutTable, Window, apply_window

__all__ = [
    "DecodedImage",
    "ImageEntry",
    "LoadProblem",
    "Patient",
    "Series",
    "Study",
    "StudyIndex",
    "StudyLoadError",
    "VoiLutTable",
    "Window",
    "apply_window",
    "bone_window",
    "decode_display_levels",
    "decode_image",
    "demo_dir",
    "header_attributes",
    "index_paths",
    "key_attributes",
    "render_display",
    "soft_tissue_window",
]
