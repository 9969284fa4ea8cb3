"""The classifier: a staged backbone, global average pooling and one linear head for all labels.

One linear layer with K outputs is the same as one head per task side by side; the card says
which columns belong to which task. Keeping GAP + linear makes the class activation map exact:
``logit_k = mean_hw(cam_k) + bias_k`` with ``cam_k = sum_c w_kc * feature_c`` (Zhou et al. 2016).
"""

from __future__ import annotations

import torch
from torch import nn

from radreview.training.backbones import StagedBackbone


class MultiLabelClassifier(nn.Module):
    def __init__(self, backbone: StagedBackbone, num_labels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.num_features, num_labels)

    def forward(self, x: torch.Tensor, start_stage: int = 0) -> torch.Tensor:
        """Logits [N, K]; ``start_stage`` > 0 takes the cached output of the lower stages as ``x``."""
        features = self.backbone(x, start=start_stage)
        return self.head(self.dropout(features.mean(dim=(2, 3))))

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [N, K], cam [N, K, h, w]) from one pass; the CAM is in logit units without bias."""
        logits, cam, _ = self.forward_all(x)
        return logits, cam

    def forward_all(self, x: torch.Tensor, start_stage: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [N, K], cam [N, K, h, w], pooled features [N, C]) from one pass (eval use)."""
        features = self.backbone(x, start=start_stage)
        cam = torch.einsum("kc,nchw->nkhw", self.head.weight, features)
        pooled = features.mean(dim=(2, 3))
        return self.head(pooled), cam, pooled

    def forward_scoped(self, x: torch.Tensor, scope_stage: int) -> tuple[torch.Tensor, ...]:
        """:meth:`forward_all` plus ``lower_features``: the :func:`feature_statistics` of the map
        after the first ``scope_stage`` stages (eval use; what the exported graph computes)."""
        lower = self.backbone(x, stop=scope_stage)
        logits, cam, pooled = self.forward_all(lower, start_stage=scope_stage)
        return logits, cam, pooled, feature_statistics(lower)


class CamExportWrapper(nn.Module):
    """What the ONNX file contains: ``image`` -> (``logits``, ``cam``, ``features``[, ``lower_features``]).

    ``features`` are the pooled features that feed the head; ``lower_features`` (when
    ``scope_stage`` is given) the per-channel mean and standard deviation of the feature map after
    the first ``scope_stage`` stages. Both are scope-check inputs (radreview.inference.scope).
    """

    def __init__(self, model: MultiLabelClassifier, scope_stage: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.scope_stage = scope_stage

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.scope_stage:
            return self.model.forward_all(image)
        return self.model.forward_scoped(image, self.scope_stage)


def feature_statistics(feature_map: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation over the map [N, C, h, w] -> [N, 2C]: what kind of
    picture it is (texture, contrast, structure), independent of where things are."""
    mean = feature_map.mean(dim=(2, 3))
    std = (feature_map * feature_map).mean(dim=(2, 3)).sub(mean * mean).clamp_min(0.0).sqrt()
    return torch.cat([mean, std], dim=1)


def scope_stage_for(num_stages: int, trainable_stages: int | None) -> int:
    """Where ``lower_features`` are tapped: below the stages that training changed (the frozen
    ImageNet stages), or below the top four when everything was trained."""
    if trainable_stages is not None and 0 < trainable_stages < num_stages:
        return num_stages - trainable_stages
    return max(1, num_stages - 4)


def freeze_lower_stages(model: MultiLabelClassifier, trainable_stages: int | None) -> int:
    """Freeze all but the top ``trainable_stages`` backbone stages (None: train everything,
    0: only the head, the fracture paper's recipe). Returns the index of the first trainable stage."""
    n = len(model.backbone.stages)
    first = 0 if trainable_stages is None else max(0, n - trainable_stages)
    for index, stage in enumerate(model.backbone.stages):
        for parameter in stage.parameters():
            parameter.requires_grad = index >= first
    return first


def set_train_mode(model: MultiLabelClassifier, first_trainable: int) -> None:
    """Train mode, but frozen stages keep their BatchNorm statistics (eval mode)."""
    model.train()
    for stage in model.backbone.stages[:first_trainable]:
        stage.eval()
