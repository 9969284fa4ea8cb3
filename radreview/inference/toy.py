"""A small but real radreview model file built with ``onnx.helper`` and numpy weights.

conv 3x3 stride 4 + ReLU -> conv 3x3 stride 2 + ReLU -> global average pool + linear head, with
the CAM computed in the graph exactly as the exported models do (``cam_k = sum_c w_kc f_c``).
Tests, the benchmark and demos use it where the shipped models are not needed; its weights are
deterministic, so its outputs are too. It responds to bright structure (a positive filter on
intensity), which makes CAM behaviour checkable: a bright blob lights up where it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radreview.inference.card import InputCard, LabelCard, ModelCard, OperatingPoints, write_card


def build_graph(num_labels: int, size: int = 64, channels: int = 8, seed: int = 0, bright_gain: float = 4.0,
                bias: float = -2.0):
    """An ``onnx.ModelProto``: image [N,3,size,size] -> logits [N,K], cam [N,K,size/8,size/8]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.2, (channels, 3, 3, 3)).astype(np.float32)
    w1[0] = 1.0 / 27  # channel 0: mean intensity, so bright regions drive the label
    b1 = np.zeros(channels, np.float32)
    w2 = rng.normal(0, 0.2, (channels, channels, 3, 3)).astype(np.float32)
    w2[0] = 0.0
    w2[0, 0] = 1.0 / 9
    b2 = np.zeros(channels, np.float32)
    head = rng.normal(0, 0.1, (num_labels, channels)).astype(np.float32)
    head[:, 0] = bright_gain * (1 + np.arange(num_labels, dtype=np.float32) / max(1, num_labels))
    head_bias = np.full(num_labels, bias, np.float32)
    init = [
        numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2"),
        numpy_helper.from_array(head, "head_w"), numpy_helper.from_array(head_bias, "head_b"),
        numpy_helper.from_array(head.T.copy(), "head_wt"),
        numpy_helper.from_array(head[:, :, None, None].copy(), "head_conv"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], strides=[4, 4], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "head_wt", "head_b"], ["logits"]),
        # cam_k = sum_c w_kc * features_c: a 1x1 convolution with the head's weights, no bias
        helper.make_node("Conv", ["features", "head_conv"], ["cam"]),
    ]
    cam_side = size // 8
    graph = helper.make_graph(
        nodes,
        "radreview_toy",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_labels]),
            helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["N", num_labels, cam_side, cam_side]),
        ],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def toy_card(name: str, labels: list[tuple[str, str]], size: int = 64, version: str = "1.0",
             applies_to: dict[str, tuple[str, ...]] | None = None, activation: str = "sigmoid") -> ModelCard:
    """A card for :func:`build_graph` with (label, task) pairs and fixed operating points."""
    applies_to = applies_to or {}
    return ModelCard(
        name=name,
        version=version,
        labels=tuple(
            LabelCard(name=label, task=task, index=i, activation=activation,  # type: ignore[arg-type]
                      operating_points=OperatingPoints(possible=0.3, likely=0.7),
                      display_name=label.capitalize(), applies_to_regions=applies_to.get(label, ()))
            for i, (label, task) in enumerate(labels)
        ),
        input=InputCard(height=size, width=size),
        architecture="toy conv net + GAP + linear (onnx.helper, deterministic weights)",
        description="A small deterministic model for tests and benchmarks.",
    )


def write_toy_model(path: str | Path, card: ModelCard, seed: int = 0, **graph_kwargs) -> ModelCard:
    """Write graph + card to ``path``; returns the card with its checksum."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(len(card.labels), card.input.height, seed=seed, **graph_kwargs), str(path))
    return write_card(path, card)
