"""A reader study whose AI comes from ``radreview predict`` on real files, with a scope check.

The model is the toy network of radreview.inference.toy with a real scope check fitted (as
``radreview calibrate`` does) on dark radiograph-like frames with a bright blob; such frames are
inside its scope, a bright flat frame and a frame of noise are outside. Its cut-offs (possible
0.05, likely 0.12) put the in-scope frames at "likely", so their heatmap shows.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from _scoped_models import build_scoped_model, dark_images
from PIL import Image

from radreview.cli import main

PIN = "kestrel-7391"
READER = "r1"
STUDY = "scope-study"


def blob_frames(n: int, seed: int) -> list[np.ndarray]:
    return dark_images(n, seed)


def write_scoped_model(folder: Path) -> Path:
    """A one-label fracture model with a fitted scope check (tests/_scoped_models.py)."""
    from radreview.inference.card import OperatingPoints

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scoped.onnx"
    ops = OperatingPoints(0.05, 0.12, basis={"n_pos": 40, "n_neg": 80, "split": "validation"})
    # a colour span of its own, as trained models carry: the reading window must take it, as the viewer does
    build_scoped_model(path, "scoped", [("fractured", "fracture")], {"fractured": {"operating_points": ops}},
                       cam={"span_logits": 6.0})
    return path


def write_cases(folder: Path) -> dict[str, str]:
    """PNG frames and cases.csv under ``folder``; returns case id -> kind (in_scope / out_of_scope)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    frames = {f"blob{i}": f for i, f in enumerate(blob_frames(4, 7), start=1)}
    frames["flat"] = np.full((96, 80), 230, np.uint8)
    frames["noise"] = np.random.default_rng(3).integers(0, 255, (96, 80)).astype(np.uint8)
    kinds = {}
    with (folder / "cases.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "images", "truth"])
        for n, (name, frame) in enumerate(frames.items()):
            Image.fromarray(frame).save(images / f"{name}.png")
            writer.writerow([name, f"images/{name}.png", n % 2])
            kinds[name] = "in_scope" if name.startswith("blob") else "out_of_scope"
    return kinds


def make_ai_study(folder: Path, models: Path, mode: str = "sequential", scale: str = "0-100") -> Path:
    """predict (default JSON, --key) -> study create --ai -> add-reader, as the README says."""
    import os

    kinds = write_cases(folder)
    assert kinds
    predictions, key = folder / "predictions.json", folder / "predictions-key.csv"
    assert main(["predict", str(folder / "images"), "--models", str(models), "--out", str(predictions),
                 "--key", str(key), "--quiet"]) == 0
    database = folder / "study.sqlite"
    assert main(["study", "create", "--db", str(database), "--name", STUDY, "--cases", str(folder / "cases.csv"),
                 "--ai", str(predictions), "--mode", mode, "--scale", scale, "--seed", "5"]) == 0
    previous = os.environ.get("RADREVIEW_READER_PIN")
    os.environ["RADREVIEW_READER_PIN"] = PIN
    try:
        assert main(["study", "add-reader", "--db", str(database), "--reader", READER]) == 0
    finally:
        if previous is None:
            os.environ.pop("RADREVIEW_READER_PIN")
        else:
            os.environ["RADREVIEW_READER_PIN"] = previous
    return database
