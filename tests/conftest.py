"""Shared fixtures: tiny untrained models and pipeline folders made by the tests themselves."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never let a test wait on the network for a model hub
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from cascade import Pipeline
from cascade.models import create_colorizer, create_sr_generator
from cascade.weights import save_pipeline

TINY_SR = {"arch": "msrresnet", "scale": 4, "num_feat": 8, "num_block": 1}
TINY_COLOR = {"arch": "timm_unet", "encoder": "test_resnet", "decoder_channels": [32, 16, 16, 8, 8]}


def tiny_sr(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_sr_generator({**TINY_SR, **overrides})


def tiny_color() -> torch.nn.Module:
    torch.manual_seed(1)
    return create_colorizer(TINY_COLOR)


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as one without CUDA or MPS, whatever it has: device choices and refusals are then known."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def tiny_pipe() -> Pipeline:
    return Pipeline(tiny_sr(), tiny_color(), device="cpu", render_size=64, trained=False)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    """A saved tiny pipeline folder, as `cascade run --weights` takes it."""
    folder = tmp_path_factory.mktemp("weights") / "tiny pipeline"
    save_pipeline(
        folder, tiny_sr(), tiny_color(), render_size=64, trained=False, description="tiny test model"
    )
    return str(folder)


def photo(size: tuple[int, int] = (48, 40), seed: int = 0) -> np.ndarray:
    """A smooth gray test picture with some edges: (H, W) uint8 of ``size`` (W, H)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    img = 0.5 + 0.3 * np.sin(xx / 5 + seed) * np.cos(yy / 7) + 0.2 * (xx > w / 2)
    img += rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def save_gray(path, size=(48, 40), seed=0, mode="L", **kw) -> Image.Image:
    img = Image.fromarray(photo(size, seed))
    if mode != "L":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return img
