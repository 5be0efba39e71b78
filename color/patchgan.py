"""The 70x70 PatchGAN discriminator of pix2pix, judging overlapping patches of the Lab image."""

from __future__ import annotations

import torch
from torch import nn


class PatchGAN(nn.Module):
    """Conv 4x4 stack: one stride-2 conv without norm, ``n_down`` convs with BN (the last at stride 1), then a
    1-channel conv. With n_down=3 each output logit sees a 70x70 input patch (30x30 logits for 256x256).

    Args:
        in_ch: channels judged (3: L and ab, normalized).
        num_filters: channels of the first conv, doubling per level.
        n_down: BN levels after the first conv.
    """

    def __init__(self, in_ch: int = 3, num_filters: int = 64, n_down: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, num_filters, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = num_filters
        for i in range(n_down):
            out = num_filters * 2 ** (i + 1)
            stride = 1 if i == n_down - 1 else 2
            layers += [
                nn.Conv2d(ch, out, 4, stride, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, True),
            ]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1, h, w) logits
        return self.model(x)
