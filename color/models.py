"""Colorization generators and discriminators by name; ``cascade.models`` builds them from these tables."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from color.patchgan import PatchGAN
from color.pix2pix_unet import Pix2PixUNet
from color.timm_unet import TimmUNet

GENERATORS: dict[str, Callable[..., nn.Module]] = {"pix2pix_unet": Pix2PixUNet, "timm_unet": TimmUNet}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {"patchgan": PatchGAN}
