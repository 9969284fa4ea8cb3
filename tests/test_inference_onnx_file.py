"""radreview's own reader of ONNX files (radreview.inference.onnx_file) against the onnx package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import REPO_ROOT
from radreview.inference.card import ModelCardError, read_card, weights_sha256
from radreview.inference.onnx_file import OnnxFormatError, read_onnx_summary, summarise
from radreview.inference.registry import check_model_file
from radreview.inference.toy import toy_card, write_toy_model


def _dims(value_info) -> list[int | str]:
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in value_info.type.tensor_type.shape.dim]


def _model_files(tmp_path: Path) -> list[Path]:
    write_toy_model(tmp_path / "toy.onnx", toy_card("toy", [("bright", "abnormality"), ("dark", "region")]))
    return [*sorted((REPO_ROOT / "models").glob("*.onnx")), tmp_path / "toy.onnx"]


def test_the_reader_sees_what_onnx_sees(tmp_path):
    files = _model_files(tmp_path)
    assert len(files) >= 2
    for path in files:
        model = onnx.load(str(path))
        summary = read_onnx_summary(path)
        assert summary.graph_sha256 == weights_sha256(model), path  # the card's checksum, without onnx
        assert summary.metadata == {p.key: p.value for p in model.metadata_props}
        assert summary.inputs == {i.name: _dims(i) for i in model.graph.input}
        assert summary.outputs == {o.name: _dims(o) for o in model.graph.output}
        assert summary.op_types == {node.op_type for node in model.graph.node}
        assert read_card(path).name


def test_a_changed_weight_is_caught_by_the_checksum(tmp_path):
    path = _model_files(tmp_path)[-1]
    model = onnx.load(str(path))
    weight = model.graph.initializer[0]
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] += 1.0
    weight.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), weight.name))
    onnx.save(model, str(path))  # the card (metadata) still names the old weights
    with pytest.raises(ModelCardError, match="weights checksum mismatch"):
        check_model_file(path)


@pytest.mark.parametrize("damage, words", [
    (lambda data: data[: len(data) // 2], "past the end"),
    (lambda data: b"\x0b" + data, "unexpected wire type 3"),
    (lambda data: b"\x00\x01" + data, "field number 0"),
    (lambda data: data + b"\x3a\x00", "two graphs"),  # field 7 (graph) again, empty
    (lambda data: data + b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "longer than 10 bytes"),
    (lambda data: b"\x72\x04\x0a\x02\xff\xfe" + data, "not UTF-8"),  # a metadata key of bad UTF-8
    (lambda data: b"", "no graph"),
    (lambda data: b"\x08\x01" * 600_000 + data, "more than 500,000 fields"),  # a field flood: refused quickly
])
def test_damaged_files_are_refused_with_the_file_and_the_reason(tmp_path, damage, words):
    good = _model_files(tmp_path)[-1]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(OnnxFormatError, match=words):
        summarise(bad.read_bytes())
    with pytest.raises(ModelCardError, match=r"bad\.onnx: not an ONNX model") as caught:
        check_model_file(bad)
    assert words in str(caught.value)
