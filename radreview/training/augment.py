"""On-the-fly augmentation of letterboxed grey batches (torch, batched, on the training device).

Geometric: rotation, scale and a small shift (one affine warp, zero padding like the letterbox),
horizontal flip only when the task is laterality-free (``allow_flip``). Photometric: gamma,
contrast/brightness and Gaussian noise. Inputs and outputs are [N, 1, H, W] in 0..1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(0.0, (1.0, 1.0), 0.0, False, (1.0, 1.0), (1.0, 1.0), 0.0, 0.0)


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def augment_batch(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly augment a batch [N, 1, H, W] in 0..1 (values stay in 0..1)."""
    n, device = images.shape[0], images.device
    angle = _uniform(n, -config.rotation_degrees, config.rotation_degrees, generator, device) * (math.pi / 180)
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
    gamma = _uniform(n, *config.gamma_range, generator, device).view(n, 1, 1, 1)
    out = out.clamp(0, 1) ** gamma
    contrast = _uniform(n, *config.contrast_range, generator, device).view(n, 1, 1, 1)
    brightness = _uniform(n, -config.brightness, config.brightness, generator, device).view(n, 1, 1, 1)
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + brightness
    if config.noise_std > 0:
        out = out + torch.randn(out.shape, generator=generator, device=device) * config.noise_std
    return out.clamp(0, 1)


def to_model_input(gray: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """[N, 1, H, W] in 0..1 -> [N, 3, H, W] normalised (the card's mean/std per channel)."""
    mean_t = torch.tensor(mean, dtype=gray.dtype, device=gray.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=gray.dtype, device=gray.device).view(1, 3, 1, 1)
    return (gray.expand(-1, 3, -1, -1) - mean_t) / std_t
