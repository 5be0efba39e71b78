"""Every network of both stages, built by name from config dicts (see ``configs/``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import color
import sr
from cascade.config import build


def create_sr_generator(config: dict[str, Any]) -> nn.Module:
    """e.g. ``{"arch": "msrresnet", "scale": 4, "num_feat": 64, "num_block": 16}``; archs: ``sr.GENERATORS``."""
    return build(sr.GENERATORS, config, "sr")


def create_sr_discriminator(config: dict[str, Any]) -> nn.Module:
    """e.g. ``{"arch": "vgg_style", "input_size": 128}``; archs: ``sr.DISCRIMINATORS``."""
    return build(sr.DISCRIMINATORS, config, "sr discriminator")


def create_colorizer(config: dict[str, Any]) -> nn.Module:
    """e.g. ``{"arch": "timm_unet", "encoder": "resnet18"}``; archs: ``color.GENERATORS``."""
    return build(color.GENERATORS, config, "color")


def create_color_discriminator(config: dict[str, Any]) -> nn.Module:
    """e.g. ``{"arch": "patchgan", "n_down": 3}``; archs: ``color.DISCRIMINATORS``."""
    return build(color.DISCRIMINATORS, config, "color discriminator")


def sr_scale(model: nn.Module) -> int:
    """The upscaling factor of an SR generator: the ``scale`` it declares (``sr.models``), its config's, or
    measured on a probe (any other module)."""
    if isinstance(getattr(model, "scale", None), int):
        return model.scale
    config = getattr(model, "arch_config", None)
    if config and "scale" in config:
        return int(config["scale"])
    param = next(model.parameters())
    probe = param.new_zeros(1, 1, 12, 12)
    with torch.no_grad():
        return model(probe).shape[-1] // 12
