"""SPAN (Wan et al., "Swift Parameter-free Attention Network", NTIRE 2024 efficient SR), in the re-parameterised
form its released ncnn and ONNX files store: every Conv3XC (3x3 + 1x1 + 3x3 branches) already merged into one
plain 3x3 convolution, so inference and fine-tuning see the network as it runs.

One SPAB block: three 3x3 convs with SiLU between them; the third output ``o3`` gates itself with the
parameter-free attention ``sigmoid(o3) - 0.5``: ``(o3 + x) * (sigmoid(o3) - 0.5)``. The network: a first conv,
six blocks, a conv after the last block, a 1x1 conv over [first features, last conv, block 1, block 6's first
activation], and a 3x3 conv to ``scale**2 * out_ch`` channels with a pixel shuffle. The input is shifted by the
training set's mean and multiplied by ``img_range`` (255), as in the original; the output is not shifted back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def _conv3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


class SPAB(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.c1_r = _conv3(channels, channels)
        self.c2_r = _conv3(channels, channels)
        self.c3_r = _conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out1 = F.silu(self.c1_r(x))  # the original's in-place SiLU: block 6 hands on this activated tensor
        out3 = self.c3_r(F.silu(self.c2_r(out1)))
        return (out3 + x) * (torch.sigmoid(out3) - 0.5), out1


class SPAN(nn.Module):
    """SPAN x``scale``, re-parameterised.

    Args:
        in_ch: image channels in (3: RGB as released; 1: a luminance network folded from it).
        out_ch: image channels out.
        num_feat: feature channels (48 for SPAN x4 ch48, 52 for ch52).
        num_block: SPAB blocks (6 in every released SPAN).
        scale: upscaling factor.
        img_range: the input is multiplied by this after the mean is taken off.
        img_mean: per-input-channel mean taken off the input (DIV2K's RGB mean in the released models).
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        num_feat: int = 48,
        num_block: int = 6,
        scale: int = 4,
        img_range: float = 255.0,
        img_mean: tuple[float, ...] = DIV2K_RGB_MEAN,
    ):
        super().__init__()
        if len(img_mean) != in_ch:
            raise ValueError(f"img_mean has {len(img_mean)} values for {in_ch} input channel(s)")
        if num_block < 1:
            raise ValueError(f"num_block must be at least 1, not {num_block}")
        self.img_range = img_range
        self.register_buffer("mean", torch.tensor(img_mean, dtype=torch.float32).view(1, in_ch, 1, 1), False)
        self.conv_1 = _conv3(in_ch, num_feat)
        self.blocks = nn.ModuleList(SPAB(num_feat) for _ in range(num_block))
        self.conv_2 = _conv3(num_feat, num_feat)
        self.conv_cat = nn.Conv2d(4 * num_feat, num_feat, 1)
        self.upsampler = _conv3(num_feat, out_ch * scale * scale)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_ch, h, w) -> (B, out_ch, h*s, w*s)
        feat = self.conv_1((x - self.mean.to(x.dtype)) * self.img_range)
        out, first = feat, None
        for block in self.blocks:
            out, act = block(out)
            first = out if first is None else first
        out = self.conv_cat(torch.cat([feat, self.conv_2(out), first, act], dim=1))
        return F.pixel_shuffle(self.upsampler(out), self.scale)
