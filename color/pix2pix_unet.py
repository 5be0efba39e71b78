"""The pix2pix U-Net generator (Isola et al. 2017), as the original colorization design used it."""

from __future__ import annotations

import torch
from torch import nn


class UnetBlock(nn.Module):
    """One level of the U-Net: down (conv 4x4 s2), the inner levels, up (transposed conv 4x4 s2), skip concat.

    Args:
        outer_ch: channels entering this level from above (and leaving it, before the skip concat).
        inner_ch: channels after this level's down conv.
        submodule: the next level inwards (None for the innermost).
        in_ch: channels of the network input, for the outermost level only.
        dropout: dropout 0.5 after the up conv (pix2pix puts it in the innermost 512-channel levels).
    """

    def __init__(
        self,
        outer_ch: int,
        inner_ch: int,
        submodule: nn.Module | None = None,
        in_ch: int | None = None,
        dropout: bool = False,
        innermost: bool = False,
        outermost: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        down_conv = nn.Conv2d(in_ch or outer_ch, inner_ch, kernel_size=4, stride=2, padding=1, bias=False)
        up_in = (
            inner_ch if innermost else inner_ch * 2
        )  # below the innermost level there is no skip to concat
        if outermost:
            down = [down_conv]
            up = [
                nn.ReLU(True),
                nn.ConvTranspose2d(up_in, outer_ch, kernel_size=4, stride=2, padding=1),
                nn.Tanh(),
            ]
        else:
            down = [nn.LeakyReLU(0.2, True), down_conv]
            if not innermost:
                down.append(nn.BatchNorm2d(inner_ch))
            up = [
                nn.ReLU(True),
                nn.ConvTranspose2d(up_in, outer_ch, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(outer_ch),
            ]
            if dropout:
                up.append(nn.Dropout(0.5))
        inner = [] if submodule is None else [submodule]
        self.model = nn.Sequential(*down, *inner, *up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class Pix2PixUNet(nn.Module):
    """pix2pix U-Net: ``n_down`` halvings (8 takes 256x256 down to 1x1), BN, LeakyReLU 0.2 down, ReLU up,
    dropout in the innermost 512-channel levels, tanh out.

    Args:
        in_ch: input channels (1: L normalized to [-1, 1]).
        out_ch: output channels (2: ab normalized to [-1, 1]).
        n_down: number of down levels; inputs must be a multiple of ``2 ** n_down`` (``size_multiple``).
        num_filters: channels of the outermost level; inner levels double up to 8x this.
    """

    def __init__(self, in_ch: int = 1, out_ch: int = 2, n_down: int = 8, num_filters: int = 64):
        super().__init__()
        if n_down < 5:
            raise ValueError(
                f"pix2pix_unet needs n_down >= 5 (4 widening levels and the innermost), not {n_down}"
            )
        widest = num_filters * 8
        block = UnetBlock(widest, widest, innermost=True)
        for _ in range(n_down - 5):
            block = UnetBlock(widest, widest, submodule=block, dropout=True)
        ch = widest
        for _ in range(3):
            block = UnetBlock(ch // 2, ch, submodule=block)
            ch //= 2
        self.model = UnetBlock(out_ch, ch, in_ch=in_ch, submodule=block, outermost=True)
        # the facts every cascade network declares: scale, image channels, the multiple its input sides need
        self.scale, self.in_ch, self.out_ch, self.size_multiple = 1, in_ch, out_ch, 2**n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_ch, H, W) -> (B, out_ch, H, W)
        return self.model(x)
