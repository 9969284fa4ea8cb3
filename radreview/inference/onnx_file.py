"""What the viewer needs from an ONNX file, read from its protobuf wire format without the onnx package.

Loading a model for inference is onnxruntime's job; before that, radreview reads the file itself
for its model card (metadata), the checksum of its graph, the graph's inputs and outputs and the
operators it uses (int8 or float). The ``onnx`` package did that, but with protobuf and ml_dtypes it
is about 9 MiB of the installer for a few fields (installer/README.md). The wire format is small
(https://protobuf.dev/programming-guides/encoding/): each field is a varint key (number << 3 |
wire type) then a varint, 8 bytes, 4 bytes, or a varint length and that many bytes. The fields
read here are from onnx.proto (ModelProto, GraphProto, NodeProto, ValueInfoProto, TypeProto,
TensorShapeProto); everything else is skipped by its length.

The graph checksum is the sha256 of the graph's bytes as they are in the file. For a file written
by onnx (``radreview.inference.card.write_card`` always writes through ``onnx.save``) these are
exactly onnx's serialisation of the graph, which is what :func:`radreview.inference.card.weights_sha256`
hashes (tests compare both on every model they build). Any other bytes are not the weights the
card describes, and the card check says so.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

# Field numbers of onnx.proto (proto2, stable since IR version 3).
MODEL_GRAPH, MODEL_METADATA = 7, 14
ENTRY_KEY, ENTRY_VALUE = 1, 2
GRAPH_NODE, GRAPH_INPUT, GRAPH_OUTPUT = 1, 11, 12
NODE_OP_TYPE = 4
VALUE_NAME, VALUE_TYPE = 1, 2
TYPE_TENSOR = 1
TENSOR_SHAPE = 2
SHAPE_DIM = 1
DIM_VALUE, DIM_PARAM = 1, 2

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
# Fields read in all (initializers are skipped whole: the shipped model, 433 nodes, needs 3,021,
# about 7 per node); a file of millions of tiny fields would keep the reader
# busy for minutes, this many take half a second.
MAX_FIELDS = 500_000


class OnnxFormatError(ValueError):
    """The bytes are not a well-formed ONNX model (the message says where and why)."""


@dataclass(frozen=True)
class OnnxSummary:
    """The parts of an ONNX model file that radreview checks before onnxruntime loads it."""

    metadata: dict[str, str]
    graph_sha256: str
    op_types: frozenset[str]
    inputs: dict[str, list[int | str]] = field(default_factory=dict)  # name -> dims ("?" where unknown)
    outputs: dict[str, list[int | str]] = field(default_factory=dict)


def read_onnx_summary(path: str | Path) -> OnnxSummary:
    """Read ``path``; raises :class:`OnnxFormatError` for bytes that are not an ONNX model, OSError
    when the file cannot be read."""
    data = memoryview(Path(path).read_bytes())
    return summarise(data)


def summarise(data: memoryview | bytes) -> OnnxSummary:
    """The summary of a serialised ModelProto."""
    _budget.left = MAX_FIELDS
    data = memoryview(data)
    metadata: dict[str, str] = {}
    graph: memoryview | None = None
    for number, wire, value in _fields(data, "model"):
        if number == MODEL_GRAPH and wire == LENGTH:
            if graph is not None:
                raise OnnxFormatError("the model has two graphs")
            graph = value
        elif number == MODEL_METADATA and wire == LENGTH:
            entry = {n: v for n, w, v in _fields(value, "metadata entry") if w == LENGTH}
            metadata[_text(entry.get(ENTRY_KEY, b""))] = _text(entry.get(ENTRY_VALUE, b""))
    if graph is None:
        raise OnnxFormatError("no graph in the file")
    op_types: set[str] = set()
    inputs: dict[str, list[int | str]] = {}
    outputs: dict[str, list[int | str]] = {}
    for number, wire, value in _fields(graph, "graph"):
        if wire != LENGTH:
            continue
        if number == GRAPH_NODE:
            op_types.update(_text(v) for n, w, v in _fields(value, "node") if n == NODE_OP_TYPE and w == LENGTH)
        elif number in (GRAPH_INPUT, GRAPH_OUTPUT):
            name, dims = _value_info(value)
            (inputs if number == GRAPH_INPUT else outputs)[name] = dims
    return OnnxSummary(metadata, hashlib.sha256(graph).hexdigest(), frozenset(op_types), inputs, outputs)


def _value_info(data: memoryview) -> tuple[str, list[int | str]]:
    name, dims = "", []
    for number, wire, value in _fields(data, "value info"):
        if number == VALUE_NAME and wire == LENGTH:
            name = _text(value)
        elif number == VALUE_TYPE and wire == LENGTH:
            for tensor in _submessages(value, TYPE_TENSOR, "type"):
                for shape in _submessages(tensor, TENSOR_SHAPE, "tensor type"):
                    dims = [_dimension(dim) for dim in _submessages(shape, SHAPE_DIM, "shape")]
    return name, dims


def _dimension(data: memoryview) -> int | str:
    """dim_param when named (symbolic), else dim_value, else "?" (as onnx's fields read)."""
    size: int | None = None
    for number, wire, value in _fields(data, "dimension"):
        if number == DIM_PARAM and wire == LENGTH and len(value):
            return _text(value)
        if number == DIM_VALUE and wire == VARINT:
            size = _signed64(int(value))  # type: ignore[arg-type]
    return size if size is not None else "?"


def _submessages(data: memoryview, wanted: int, where: str):
    for number, wire, value in _fields(data, where):
        if number == wanted and wire == LENGTH:
            yield value


class _Budget(threading.local):
    left = MAX_FIELDS  # fields still to be read by this thread's current summarise()


_budget = _Budget()


def _fields(data: memoryview, where: str):
    """(field number, wire type, value) for every field of one message: an int for varints and
    fixed-width fields, a memoryview of the bytes for length-delimited ones."""
    position, end = 0, len(data)
    while position < end:
        _budget.left -= 1
        if _budget.left < 0:
            raise OnnxFormatError(f"more than {MAX_FIELDS:,} fields to read: not a model file radreview reads")
        key, position = _varint(data, position, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OnnxFormatError(f"field number 0 in the {where} at byte {position}")
        if wire == VARINT:
            value, position = _varint(data, position, where)
            yield number, wire, value
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if position + width > end:
                raise OnnxFormatError(f"the {where} ends inside a {width}-byte field")
            yield number, wire, int.from_bytes(data[position:position + width], "little")
            position += width
        elif wire == LENGTH:
            length, position = _varint(data, position, where)
            if position + length > end:
                raise OnnxFormatError(f"a field of the {where} claims {length} bytes, past the end of its data")
            yield number, wire, data[position:position + length]
            position += length
        else:  # 3/4: proto2 groups, which onnx.proto does not use; 6/7 do not exist
            raise OnnxFormatError(f"unexpected wire type {wire} in the {where} at byte {position}")


def _varint(data: memoryview, position: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise OnnxFormatError(f"the {where} ends inside a number")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift >= 70:
            raise OnnxFormatError(f"a number in the {where} is longer than 10 bytes")


def _signed64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def _text(value: memoryview | bytes) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OnnxFormatError(f"a text field is not UTF-8 ({exc.reason})") from exc
