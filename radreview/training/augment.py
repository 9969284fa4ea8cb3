"""On-the-fly augmentation of letterboxed grey batches (torch, batched, on the training device).

Radiographs from another hospital differ from the training images in ways that carry no
diagnosis: orientation (rotated, turned by 90°, flipped on the light box), collimation and
zoom (a tight crop of a joint, a whole limb), exposure and the site's processing (gamma,
contrast, edge enhancement or CLAHE-like local contrast, an inverted look-up table), sharpness
and resolution (blur, a small matrix scaled up), noise, and JPEG re-compression on the way out
of a PACS. The ``robust`` preset varies all of them, so that the model and its scope check learn
to ignore them; ``standard`` is the milder recipe of the first shipped model.

Geometric: one affine warp per image (rotation, 90° turns, scale/crop, shift, flips; zero
padding like the letterbox). Photometric: gamma, contrast/brightness, unsharp masking, inversion,
blur, down-and-up scaling, Gaussian noise. JPEG re-compression runs on uint8 pixels with Pillow
(:func:`jpeg_recompress`) before the batch reaches the device. Inputs and outputs are
[N, 1, H, W] in 0..1.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotation_degrees: float = 15.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    shift_fraction: float = 0.05
    allow_flip: bool = False  # horizontal flip changes laterality; only for laterality-free tasks
    gamma_range: tuple[float, float] = (0.7, 1.4)
    contrast_range: tuple[float, float] = (0.8, 1.2)
    brightness: float = 0.08
    noise_std: float = 0.02
    # the robust preset's additions (all off by default: the first shipped model's recipe)
    turn90_probability: float = 0.0  # a turn by +-90 or 180 degrees (needs allow_flip: turns mirror laterality cues)
    invert_probability: float = 0.0
    sharpen_range: tuple[float, float] = (0.0, 0.0)  # unsharp-mask amount (edge enhancement / CLAHE-like)
    blur_probability: float = 0.0
    blur_sigma_range: tuple[float, float] = (0.5, 2.0)  # pixels of the model canvas
    downscale_probability: float = 0.0
    downscale_range: tuple[float, float] = (0.35, 0.8)  # a smaller matrix scaled back up
    noise_probability: float = 1.0  # share of images that get noise (std drawn up to noise_std)
    jpeg_probability: float = 0.0
    jpeg_quality_range: tuple[int, int] = (30, 90)

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(0.0, (1.0, 1.0), 0.0, False, (1.0, 1.0), (1.0, 1.0), 0.0, 0.0)

    @classmethod
    def standard(cls, allow_flip: bool = False) -> AugmentConfig:
        return cls(allow_flip=allow_flip)

    @classmethod
    def robust(cls, allow_flip: bool = True) -> AugmentConfig:
        """Strong, varied augmentation for robustness to other hospitals (the shipped model's recipe)."""
        return cls(rotation_degrees=30.0, scale_range=(0.7, 1.5), shift_fraction=0.12, allow_flip=allow_flip,
                   gamma_range=(0.5, 2.0), contrast_range=(0.6, 1.5), brightness=0.15, noise_std=0.05,
                   turn90_probability=0.25 if allow_flip else 0.0, invert_probability=0.1,
                   sharpen_range=(0.0, 1.5), blur_probability=0.25, blur_sigma_range=(0.5, 2.0),
                   downscale_probability=0.25, downscale_range=(0.35, 0.8), noise_probability=0.5,
                   jpeg_probability=0.3, jpeg_quality_range=(30, 90))


AUGMENT_PRESETS = ("robust", "standard", "none")


def preset(name: str, allow_flip: bool) -> AugmentConfig:
    if name == "robust":
        return AugmentConfig.robust(allow_flip)
    if name == "standard":
        return AugmentConfig.standard(allow_flip)
    if name == "none":
        return AugmentConfig.none()
    raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENT_PRESETS)}")


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _chance(n: int, probability: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """[n] bool, True with ``probability`` (drawn even when 0, so that the stream stays aligned)."""
    return torch.rand(n, generator=generator, device=device) < probability


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur [N, 1, H, W] with per-image sigma [N] (separable, reflect padding)."""
    radius = int(math.ceil(3 * float(sigma.max()))) if len(sigma) else 1
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernels = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].clamp(min=1e-3)) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # [N, K]
    n = images.shape[0]
    x = images.transpose(0, 1)  # [1, N, H, W]: grouped convolution, one kernel per image
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernels.view(n, 1, 1, -1), groups=n)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernels.view(n, 1, -1, 1), groups=n)
    return x.transpose(0, 1)


def augment_batch(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly augment a batch [N, 1, H, W] in 0..1 (values stay in 0..1)."""
    n, device = images.shape[0], images.device
    angle = _uniform(n, -config.rotation_degrees, config.rotation_degrees, generator, device) * (math.pi / 180)
    if config.turn90_probability > 0:
        turns = torch.randint(1, 4, (n,), generator=generator, device=device).float() * (math.pi / 2)
        angle = angle + torch.where(_chance(n, config.turn90_probability, generator, device), turns, 0.0)
    scale = _uniform(n, *config.scale_range, generator, device)
    shift = _uniform(2 * n, -config.shift_fraction, config.shift_fraction, generator, device).view(n, 2) * 2
    flip = torch.ones(n, device=device)
    if config.allow_flip:
        flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    content = F.grid_sample(torch.ones_like(images), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    out = out.clamp(0, 1)
    if config.downscale_probability > 0:
        out = _down_and_up(out, config, generator)
    if config.blur_probability > 0:
        chosen = _chance(n, config.blur_probability, generator, device)
        sigma = _uniform(n, *config.blur_sigma_range, generator, device)
        if chosen.any():
            out = torch.where(chosen.view(n, 1, 1, 1), _gaussian_blur(out, torch.where(chosen, sigma, 0.5)), out)
    if config.sharpen_range[1] > 0:
        amount = _uniform(n, *config.sharpen_range, generator, device).view(n, 1, 1, 1)
        smooth = _gaussian_blur(out, torch.full((n,), 3.0, device=device))
        out = (out + amount * (out - smooth)).clamp(0, 1)
    gamma = _uniform(n, *config.gamma_range, generator, device).view(n, 1, 1, 1)
    out = out.clamp(0, 1) ** gamma
    contrast = _uniform(n, *config.contrast_range, generator, device).view(n, 1, 1, 1)
    brightness = _uniform(n, -config.brightness, config.brightness, generator, device).view(n, 1, 1, 1)
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + brightness
    if config.invert_probability > 0:
        invert = _chance(n, config.invert_probability, generator, device).view(n, 1, 1, 1)
        out = torch.where(invert, 1.0 - out.clamp(0, 1), out)
    if config.noise_std > 0 and config.noise_probability >= 1:
        out = out + torch.randn(out.shape, generator=generator, device=device) * config.noise_std
    elif config.noise_std > 0:  # a share of the images, each with its own noise level
        noisy = _chance(n, config.noise_probability, generator, device).view(n, 1, 1, 1).float()
        std = _uniform(n, 0.0, config.noise_std, generator, device).view(n, 1, 1, 1)
        out = out + torch.randn(out.shape, generator=generator, device=device) * std * noisy
    # the letterbox padding stays black, as a real letterboxed image's does
    return (out.clamp(0, 1) * content) if config.invert_probability > 0 else out.clamp(0, 1)


def _down_and_up(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """A smaller matrix scaled back up (bilinear), for a share of the batch."""
    n, _, h, w = images.shape
    chosen = _chance(n, config.downscale_probability, generator, images.device)
    factor = float(_uniform(1, *config.downscale_range, generator, images.device))
    if not chosen.any():
        return images
    small = F.interpolate(images, size=(max(8, round(h * factor)), max(8, round(w * factor))), mode="bilinear",
                          align_corners=False, antialias=True)
    back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return torch.where(chosen.view(n, 1, 1, 1), back, images)


def jpeg_recompress(pixels: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, H, W]: a share of the images JPEG-encoded and decoded again (as a PACS export would)."""
    if config.jpeg_probability <= 0:
        return pixels
    from PIL import Image

    out = pixels.copy()
    for i in range(len(pixels)):
        if rng.random() >= config.jpeg_probability:
            continue
        buffer = io.BytesIO()
        quality = int(rng.integers(config.jpeg_quality_range[0], config.jpeg_quality_range[1] + 1))
        Image.fromarray(pixels[i]).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        out[i] = np.asarray(Image.open(buffer).convert("L"))
    return out


def to_model_input(gray: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """[N, 1, H, W] in 0..1 -> [N, 3, H, W] normalised (the card's mean/std per channel)."""
    mean_t = torch.tensor(mean, dtype=gray.dtype, device=gray.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=gray.dtype, device=gray.device).view(1, 3, 1, 1)
    return (gray.expand(-1, 3, -1, -1) - mean_t) / std_t
