"""int8 models: quantisation with its parity gate, the registry's two precisions, bad int8 files.

The quantiser runs for real (onnxruntime.quantization) on radreview's toy model and on small
image sets written here; the demo-study test quantises the shipped model itself.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from conftest import REPO_ROOT
from radreview.cli import main
from radreview.inference.card import ModelCardError, read_card, write_card
from radreview.inference.engine import Engine
from radreview.inference.registry import check_model_file, choose_precision, discover
from radreview.inference.toy import toy_card, write_toy_model
from radreview.training.datasets import load_dataset
from radreview.training.quantize import Gate, ParityError, QuantizationError, quantize_graph, quantize_model_file
from radreview.training.splits import write_split

LABELS = [("bright", "abnormality")]


def bright_images(n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    """Dark noise; every other image has a large bright square (the toy model's positive)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pixels = rng.integers(0, 40, (64, 64)).astype(np.uint8)
        if i % 2:
            r, c = rng.integers(0, 24, 2)
            pixels[r:r + 40, c:c + 40] = 230
        out.append((pixels, i % 2))
    return out


def write_dataset(folder: Path, train: list, val: list) -> tuple[Path, Path]:
    """A CSV dataset (path,bright) and its split file: ``train`` and ``val`` lists of (pixels, label)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, items in (("train", train), ("val", val)):
        for k, (pixels, label) in enumerate(items):
            name = f"{split}_{k:03d}.png"
            Image.fromarray(pixels).save(folder / name)
            rows.append((split, name, label))
    with open(folder / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "bright"])
        writer.writerows((name, label) for _, name, label in rows)
    dataset = load_dataset(folder / "data.csv")
    by_name = {s.path.name: s for s in dataset.samples}
    split = {"train": [by_name[n] for s, n, _ in rows if s == "train"],
             "val": [by_name[n] for s, n, _ in rows if s == "val"], "test": []}
    write_split(folder / "split.csv", dataset, split)
    return folder / "data.csv", folder / "split.csv"


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    """A float32 toy model, its training data, and its int8 twin made by quantize_model_file."""
    root = tmp_path_factory.mktemp("int8")
    write_toy_model(root / "models" / "toy.onnx", toy_card("toy", LABELS), bright_gain=16.0, bias=-3.0)
    data, split = write_dataset(root / "data", bright_images(24, seed=1), bright_images(24, seed=2))
    card, report = quantize_model_file(root / "models" / "toy.onnx", data, split, root / "models" / "toy_int8.onnx",
                                       calibration_images=16, stem_convs=0)
    return {"root": root, "float": root / "models" / "toy.onnx", "int8": root / "models" / "toy_int8.onnx",
            "data": data, "split": split, "report": report, "card": card}


def test_the_int8_file_records_how_it_was_made_and_passed_the_gate(toy):
    float_card, card = read_card(toy["float"]), read_card(toy["int8"])
    assert card.precision == "int8" and float_card.precision == "float32"
    q = card.quantization
    assert q["float32_sha256"] == float_card.weights_sha256 != card.weights_sha256
    assert q["calibration_set"] == {"split": "train", "count": 16, "seed": 0, "split_file": "split.csv",}
    assert q["parity"]["tier_agreement"] >= 0.99 and q["parity"]["n_images"] == 24
    assert q["parity"]["auc"]["bright"]["int8"] >= q["parity"]["auc"]["bright"]["float32"] - 0.005
    ops = {n.op_type for n in onnx.load(str(toy["int8"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(name.endswith("Gemm") or "Gemm" in name for name in q["kept_float"])  # the head stays float
    # the float32 file's test figures are not the int8 file's: its card says they were not measured
    assert card.validation["labels"] == {} and card.validation["source"].startswith("not measured on this int8 file")


def test_int8_answers_like_float32_through_the_engine(toy):
    images = [p for p, _ in bright_images(10, seed=3)]
    engines = [Engine([check_model_file(toy[k])], provider="cpu") for k in ("float", "int8")]
    for pixels in images:
        a, b = (e.predict(pixels).labels[0] for e in engines)
        assert a.tier == b.tier
        assert abs(a.probability - b.probability) < 0.1
        assert b.cam is not None and b.cam.shape == a.cam.shape
        assert float(b.cam.mean()) == pytest.approx(b.logit, abs=1e-3)  # the CAM survives quantisation


def test_the_gate_refuses_a_model_calibrated_on_blank_images(toy, tmp_path):
    blank = [(np.zeros((64, 64), np.uint8), k % 2) for k in range(24)]  # labels are irrelevant to calibration
    data, split = write_dataset(tmp_path / "blank", blank, bright_images(24, seed=2))
    out = tmp_path / "broken_int8.onnx"
    with pytest.raises(ParityError) as caught:
        quantize_model_file(toy["float"], data, split, out, calibration_images=16, stem_convs=0)
    message = str(caught.value)
    assert "not written" in message and "same tiers on only 50.0% of 24 validation images" in message
    assert "bright       AUC float32" in message  # the figures of every label come with the refusal
    assert caught.value.parity.failures and not out.exists()


def test_quantize_command_prints_the_parity_figures_and_refuses_with_exit_code_3(toy, tmp_path, capsys):
    blank = [(np.zeros((64, 64), np.uint8), k % 2) for k in range(24)]
    data, split = write_dataset(tmp_path / "blank", blank, bright_images(24, seed=2))
    code = main(["quantize", str(toy["float"]), str(data), "--split-file", str(split),
                 "--out", str(tmp_path / "x_int8.onnx"), "--calibration-images", "16", "--stem-convs", "0"])
    err = capsys.readouterr().err
    assert code == 3 and "does not answer like the float32 one" in err and "AUC float32" in err


def test_a_model_that_is_all_stem_is_refused_with_a_clear_message(toy, tmp_path, capsys):
    code = main(["quantize", str(toy["float"]), str(toy["data"]), "--split-file", str(toy["split"]),
                 "--out", str(tmp_path / "y_int8.onnx"), "--calibration-images", "8"])
    assert code == 2 and "nothing was quantised" in capsys.readouterr().err


def test_quantize_refuses_an_int8_source_and_overwriting_the_source(toy, tmp_path):
    with pytest.raises(QuantizationError, match="already int8"):
        quantize_model_file(toy["int8"], toy["data"], toy["split"], tmp_path / "again.onnx")
    with pytest.raises(QuantizationError, match="must not overwrite"):
        quantize_model_file(toy["float"], toy["data"], toy["split"], toy["float"])


# -- the registry ----------------------------------------------------------------------------------
def test_auto_runs_int8_and_float32_is_there_on_request(toy):
    catalog = discover([toy["root"] / "models"])
    assert sorted((m.card.name, m.card.precision) for m in catalog.available) == [("toy", "float32"), ("toy", "int8")]
    assert [m.card.precision for m in catalog.models] == ["int8"]
    assert [m.card.precision for m in discover([toy["root"] / "models"], precision="float32").models] == ["float32"]
    assert catalog.notes == [] and catalog.problems == []


def test_an_int8_file_of_another_float32_model_is_not_run_by_default(toy, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(toy["int8"], folder / "toy_int8.onnx")
    write_toy_model(folder / "toy.onnx", toy_card("toy", LABELS), seed=5)  # retrained: other weights
    catalog = discover([folder])
    assert [m.card.precision for m in catalog.models] == ["float32"]
    assert "quantised from another float32 model" in str(catalog.notes[0])


def test_a_precision_a_model_lacks_falls_back_to_the_other_with_a_note(toy, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(toy["float"], folder / "toy.onnx")
    chosen, notes = choose_precision(discover([folder]).available, "int8")
    assert [m.card.precision for m in chosen] == ["float32"]
    assert "has no int8 file; running float32" in str(notes[0])
    with pytest.raises(ValueError, match="unknown precision"):
        choose_precision([], "int4")


def test_a_later_folder_shadows_only_the_same_name_and_precision(toy, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(toy["float"], user / "mine.onnx")
    catalog = discover([toy["root"] / "models", user])
    by_precision = {m.card.precision: m.path for m in catalog.available}
    assert by_precision == {"float32": user / "mine.onnx", "int8": toy["int8"]}


def test_a_truncated_int8_file_is_refused_by_name_and_float32_keeps_working(toy, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(toy["float"], folder / "toy.onnx")
    data = toy["int8"].read_bytes()
    (folder / "toy_int8.onnx").write_bytes(data[: len(data) // 2])
    catalog = discover([folder])
    assert [(p.path.name, "not an ONNX model" in p.reason) for p in catalog.problems] == [("toy_int8.onnx", True)]
    assert [m.card.precision for m in catalog.models] == ["float32"]
    result = Engine(catalog.models, provider="cpu").predict(bright_images(2, seed=4)[1][0])
    assert result.labels and result.labels[0].tier in ("likely", "possible", "below")


def test_an_int8_card_over_a_float_graph_is_refused_naming_the_file(toy, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(toy["float"], folder / "toy.onnx")
    liar = folder / "liar_int8.onnx"
    shutil.copy(toy["float"], liar)
    write_card(liar, dataclasses.replace(read_card(toy["float"]), precision="int8"))
    with pytest.raises(ModelCardError, match="liar_int8.onnx.*says precision int8 but the graph has no quantised"):
        check_model_file(liar)
    catalog = discover([folder])
    assert [p.path.name for p in catalog.problems] == ["liar_int8.onnx"]
    assert [m.card.precision for m in catalog.models] == ["float32"]


def test_a_float32_card_over_an_int8_graph_is_refused(toy, tmp_path):
    liar = tmp_path / "liar.onnx"
    shutil.copy(toy["int8"], liar)
    write_card(liar, dataclasses.replace(read_card(toy["int8"]), precision="float32"))
    with pytest.raises(ModelCardError, match="liar.onnx.*quantised.*card says precision float32"):
        check_model_file(liar)


def test_predict_runs_the_precision_asked_for(toy, tmp_path, capsys):
    image = tmp_path / "in.png"
    Image.fromarray(bright_images(2, seed=6)[1][0]).save(image)
    for precision in ("float32", "int8"):
        out = tmp_path / f"{precision}.json"
        assert main(["predict", str(image), "--models", str(toy["root"] / "models"), "--out", str(out),
                     "--precision", precision, "--quiet"]) == 0
        assert f'"precision": "{precision}"' in out.read_text()
        assert f"({precision})" in capsys.readouterr().err


# -- the shipped model ------------------------------------------------------------------------------
SHIPPED = REPO_ROOT / "models"
DEMO = REPO_ROOT / "resources" / "demo"


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "msk_region_fracture_hardware.onnx").exists(), reason="no shipped model")
def test_int8_and_float32_give_the_same_tiers_on_the_demo_studies(tmp_path, fracatlas_dir):
    """The shipped int8 file when there is one, else an int8 twin made here from 48 training images."""
    from radreview.inference.presentation import present_image
    from radreview.studies import decode_image, index_paths, render_display
    from radreview.training.image_cache import load_letterboxed
    from radreview.training.quantize import calibration_samples
    from radreview.training.splits import read_split

    float_path = SHIPPED / "msk_region_fracture_hardware.onnx"
    int8_path = SHIPPED / "msk_region_fracture_hardware_int8.onnx"
    if not int8_path.exists():
        card = read_card(float_path)
        split = read_split(SHIPPED / "evaluation" / "split.csv", load_dataset(fracatlas_dir))
        pixels, _, _ = load_letterboxed(calibration_samples(split["train"], 48), card.input.height, card.input.width)
        int8_path = tmp_path / "int8.onnx"
        quantize_graph(float_path, int8_path, pixels, card)
        write_card(int8_path, dataclasses.replace(card, precision="int8",
                                                  quantization={"float32_sha256": card.weights_sha256}))
    engines = {p: Engine([check_model_file(path)], provider="cpu") for p, path in (("float32", float_path), ("int8", int8_path))}
    entries = index_paths([DEMO]).images()
    assert len(entries) >= 7
    for entry in entries:
        display = render_display(decode_image(entry))
        shown = {p: present_image(e.predict(display)) for p, e in engines.items()}
        tiers = {p: {f.key: f.tier for f in (*s.findings, *s.regions)} for p, s in shown.items()}
        assert tiers["int8"] == tiers["float32"], entry.path
        assert shown["int8"].verdict == shown["float32"].verdict
