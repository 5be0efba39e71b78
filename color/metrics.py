"""Colorization metrics that need no reference model."""

from __future__ import annotations

import torch


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler and Suesstrunk's colorfulness, on the 0-255 scale as DDColor reports it.

    ``rgb`` is (B, 3, H, W) in [0, 1]; returns (B,). Gray images score 0; DDColor reports about 38 for ImageNet
    val ground truth at 256 px. As DDColor's code (after pyimagesearch), the opponent channels are taken as
    absolute values before their mean and deviation, which the paper does not do: we follow the code so that
    our numbers compare with the published tables.
    """
    r, g, b = (rgb.float() * 255).unbind(1)
    rg = (r - g).abs().flatten(1)
    yb = (0.5 * (r + g) - b).abs().flatten(1)
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return std + 0.3 * mean
