"""Real ONNX models with a real scope check, for the GUI tests of the AI presentation.

Built as tests/test_inference_scope_calibration.py builds its own: the toy graph of
:mod:`radreview.inference.toy` gains a ``features`` output
(:func:`radreview.training.calibrate.add_features_output`), and
:func:`radreview.inference.scope.fit_scope` fits the check on "training" images that look like
small radiographs (dark frames with one bright blob) and sets the threshold on "validation" ones.
Blank pages and noise are then outside its scope; dark frames with a blob inside.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from radreview.inference.card import CARD_METADATA_KEY, Calibration, ModelCard, OperatingPoints, write_card
from radreview.inference.preprocess import prepare
from radreview.inference.scope import fit_scope
from radreview.inference.toy import toy_card, write_toy_model

IMAGE_SHAPE = (96, 80)


def dark_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Radiograph-like stand-ins for a model's training images: dark frames with a bright blob."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        image = rng.integers(0, 40, IMAGE_SHAPE).astype(np.uint8)
        r, c = rng.integers(10, 50), rng.integers(10, 40)
        image[r:r + 30, c:c + 25] = rng.integers(180, 255)
        out.append(image)
    return out


def blank_image(value: int = 230) -> np.ndarray:
    return np.full(IMAGE_SHAPE, value, np.uint8)


def noise_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, IMAGE_SHAPE).astype(np.uint8)


def _features(path: Path, card: ModelCard, images: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.stack([prepare(image, card.input)[0] for image in images])
    return session.run(["features"], {"image": batch})[0]


def build_scoped_model(path: Path, name: str, labels: list[tuple[str, str]],
                       overrides: dict[str, dict] | None = None, cam: dict | None = None) -> ModelCard:
    """A toy model with a ``features`` output and a scope check fitted on dark-with-blob images;
    ``overrides`` sets label fields (calibration, operating_points) by label name."""
    import onnx

    from radreview.training.calibrate import add_features_output

    write_toy_model(path, toy_card(name, labels))
    model = onnx.load(str(path))
    card = ModelCard.from_json({p.key: p.value for p in model.metadata_props}[CARD_METADATA_KEY])
    onnx.save(add_features_output(model), str(path))
    card = write_card(path, card)
    scope = fit_scope(_features(path, card, dark_images(300, 0)), _features(path, card, dark_images(120, 1)),
                      components=4)
    new_labels = tuple(dataclasses.replace(label, **(overrides or {}).get(label.name, {})) for label in card.labels)
    return write_card(path, dataclasses.replace(card, labels=new_labels, scope=scope.to_dict(), cam=cam or {}))


def write_scoped_model(path: Path, name: str = "scoped", span_logits: float | None = 3.0) -> ModelCard:
    """A fracture + hardware model with a fitted scope check and calibration.

    On dark-with-blob images (inside its scope) "fractured" is *likely* (calibrated p ~ 0.75,
    cut-offs 0.3 / 0.6) and "hardware" *below* (p ~ 0.03). ``span_logits``: the card's colour span.
    """
    ops = OperatingPoints(0.3, 0.6, basis={"split": "validation", "n_pos": 40, "n_neg": 80})
    return build_scoped_model(
        path, name, [("fractured", "fracture"), ("hardware", "hardware")],
        {"fractured": {"calibration": Calibration("platt", 4.0, 8.0, "test"), "operating_points": ops},
         "hardware": {"calibration": Calibration("platt", 1.0, -2.0, "test"), "operating_points": ops}},
        {"span_logits": span_logits} if span_logits else {})


def write_unreliable_model(path: Path, name: str = "plain") -> ModelCard:
    """A model without a scope check whose one label's operating points rest on 8 positives."""
    card = toy_card(name, [("dislocation", "dislocation")])
    label = dataclasses.replace(card.labels[0], operating_points=OperatingPoints(
        0.003, 0.0034, basis={"split": "validation", "n_pos": 8, "n_neg": 311}))
    return write_toy_model(path, dataclasses.replace(card, labels=(label,)))


def break_scope(source: Path, target: Path) -> ModelCard:
    """A copy of a scoped model whose scope statistics have the wrong shape."""
    from radreview.inference.card import read_card

    target.write_bytes(source.read_bytes())
    card = read_card(target)
    raw = dict(card.scope)
    raw["dim"] += 3
    return write_card(target, dataclasses.replace(card, scope=raw))
