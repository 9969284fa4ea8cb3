"""Heatmaps judged by where they point: the pointing game and the energy inside annotated boxes.

For images whose finding is annotated with boxes (FracAtlas ships COCO boxes of every fracture,
``fracture_masks_coco.json``), a class-activation map is useful only if it points at the finding:
- **pointing game** (Zhang et al. 2018, "Top-down neural attention by excitation backprop"): the
  share of true-positive images whose map maximum falls inside an annotated box (a hit within
  ``tolerance`` pixels of a box counts, as in the original protocol's 15 px);
- **energy inside boxes** (Wang et al. 2020, Score-CAM's "energy-based pointing game"): the share
  of the map's positive mass inside the boxes.
The map is the model's own CAM, mapped back from the model canvas onto the image with the same
letterbox geometry the viewer uses (``radreview.inference.preprocess.cam_to_image``), so what is
measured is what a reader sees. numpy only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radreview.inference.preprocess import LetterboxGeometry, cam_to_image

COCO_FILE = "fracture_masks_coco.json"
POINTING_TOLERANCE_PX = 15


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    width: float
    height: float

    def contains(self, x: float, y: float, tolerance: float = 0.0) -> bool:
        return (self.left - tolerance <= x <= self.left + self.width + tolerance
                and self.top - tolerance <= y <= self.top + self.height + tolerance)


def read_coco_boxes(path: str | Path) -> dict[str, tuple[tuple[int, int], list[Box]]]:
    """file name -> ((height, width), boxes) from a COCO annotation file."""
    document = json.loads(Path(path).read_text())
    images = {img["id"]: (img["file_name"], (int(img["height"]), int(img["width"]))) for img in document["images"]}
    out: dict[str, tuple[tuple[int, int], list[Box]]] = {}
    for annotation in document["annotations"]:
        name, shape = images[annotation["image_id"]]
        out.setdefault(name, (shape, []))[1].append(Box(*[float(v) for v in annotation["bbox"]]))
    return out


def score_map(heat: np.ndarray, boxes: list[Box], tolerance: float = POINTING_TOLERANCE_PX) -> tuple[bool, float]:
    """(hit, energy inside) for one map [rows, cols] over the image and its boxes."""
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    hit = any(box.contains(x + 0.5, y + 0.5, tolerance) for box in boxes)
    positive = np.clip(heat, 0.0, None)
    total = float(positive.sum())
    mask = np.zeros(heat.shape, bool)
    for box in boxes:
        top, left = max(0, int(np.floor(box.top))), max(0, int(np.floor(box.left)))
        mask[top:int(np.ceil(box.top + box.height)), left:int(np.ceil(box.left + box.width))] = True
    energy = float(positive[mask].sum()) / total if total > 0 else 0.0
    return hit, energy


def pointing_game(cams: np.ndarray, names: list[str], boxes: dict[str, tuple[tuple[int, int], list[Box]]],
                  canvas: tuple[int, int], chosen: np.ndarray) -> dict[str, Any]:
    """Pointing game and energy over the ``chosen`` images (e.g. true positives) that have boxes.

    ``cams`` [N, h, w] are one label's maps over the model canvas (``canvas`` = (height, width)),
    ``names`` the images' file names. The map minimum is subtracted first, so that "energy" is
    the evidence above the image's own floor.
    """
    hits, energies, used = [], [], []
    for index in np.flatnonzero(chosen):
        entry = boxes.get(names[index])
        if entry is None or not entry[1]:
            continue
        (rows, cols), image_boxes = entry
        geometry = LetterboxGeometry.fit(rows, cols, canvas[0], canvas[1])
        heat = cam_to_image(np.asarray(cams[index], np.float32), geometry)
        hit, energy = score_map(heat - heat.min(), image_boxes)
        hits.append(hit)
        energies.append(energy)
        used.append(names[index])
    n = len(hits)
    return {
        "n": n,
        "pointing_game": float(np.mean(hits)) if n else None,
        "hits": int(np.sum(hits)),
        "mean_energy_inside_boxes": float(np.mean(energies)) if n else None,
        "tolerance_px": POINTING_TOLERANCE_PX,
        "images": used,
        "method": "CAM maximum inside an annotated box (pointing game); share of the map above its "
                  "minimum inside the boxes (energy)",
    }
