"""Every network of both stages, built by name from config dicts (see ``configs/``), and the stage table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import color
import sr
from cascade.config import build


@dataclass(frozen=True)
class Stage:
    """What cascade needs to know about one stage, as data: its networks by arch name, the image mode it
    trains on, and the settings its ``pipeline.yaml`` section may hold besides ``model`` and ``weights``.

    Args:
        name: the stage's key in ``pipeline.yaml``, in recipes (``stage:``) and on the command line.
        generators: arch name -> network factory (``sr.GENERATORS``, ``color.GENERATORS``).
        discriminators: arch name -> discriminator factory.
        image_mode: what its training images are read as: ``L`` (SR: luminance) or ``RGB`` (the colors to learn).
        settings: extra ``pipeline.yaml`` keys of the stage.
        encoder_option: the generator option naming pretrained encoder weights, which saved weights replace.
    """

    name: str
    generators: dict[str, Callable[..., nn.Module]]
    discriminators: dict[str, Callable[..., nn.Module]]
    image_mode: str
    settings: tuple[str, ...] = ()
    encoder_option: str | None = None

    def create(self, config: dict[str, Any]) -> nn.Module:
        return build(self.generators, config, self.name)

    def create_discriminator(self, config: dict[str, Any]) -> nn.Module:
        return build(self.discriminators, config, f"{self.name} discriminator")

    def without_encoder_weights(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with its pretrained-encoder option cleared: for weights that will be loaded over it."""
        if self.encoder_option is None or self.encoder_option not in config:
            return dict(config)
        return {**config, self.encoder_option: None}


SR = Stage("sr", sr.GENERATORS, sr.DISCRIMINATORS, image_mode="L")
COLOR = Stage(
    "color",
    color.GENERATORS,
    color.DISCRIMINATORS,
    image_mode="RGB",
    settings=("render_size", "saturation"),
    encoder_option="pretrained",
)
STAGES = {stage.name: stage for stage in (SR, COLOR)}  # in the order a pipeline runs them


def create_sr_generator(config: dict[str, Any]) -> nn.Module:
    """e.g. ``{"arch": "msrresnet", "scale": 4, "num_feat": 64, "num_block": 16}``; archs: ``sr.GENERATORS``."""
    return SR.create(config)


def create_sr_discriminator(config: dict[str, Any]) -> nn.Module:
    """e.g. ``{"arch": "vgg_style", "input_size": 128}``; archs: ``sr.DISCRIMINATORS``."""
    return SR.create_discriminator(config)


def create_colorizer(config: dict[str, Any]) -> nn.Module:
    """e.g. ``{"arch": "timm_unet", "encoder": "resnet18"}``; archs: ``color.GENERATORS``."""
    return COLOR.create(config)


def create_color_discriminator(config: dict[str, Any]) -> nn.Module:
    """e.g. ``{"arch": "patchgan", "n_down": 3}``; archs: ``color.DISCRIMINATORS``."""
    return COLOR.create_discriminator(config)


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
