"""The realistic SR degradation (Real-ESRGAN's two rounds, on gray): shapes, ranges, seeding, the recipe section's
checks, and the fixed-seed degraded benchmark."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from cascade.config import ConfigError
from cascade.training.config import parse_config
from cascade.training.stages import SRStage
from sr.degradations import Degradation, Round, realistic_downscale
from tests.conftest import photo

REALISTIC = Degradation(kind="realistic")


@pytest.fixture(scope="module")
def hr():
    imgs = [photo((64, 48), seed=i).astype(np.float32) / 255 for i in range(3)]
    return torch.from_numpy(np.stack(imgs))[:, None]  # (3, 1, 48, 64)


def test_shapes_ranges_and_8_bit_levels(hr):
    lr = realistic_downscale(hr, 4, REALISTIC, seed=3)
    assert lr.shape == (3, 1, 12, 16) and lr.dtype == torch.float32
    assert 0 <= lr.min() and lr.max() <= 1
    torch.testing.assert_close(lr * 255, (lr * 255).round())
    assert (lr - torch.nn.functional.avg_pool2d(hr, 4)).abs().mean() > 0.01  # degraded, not just shrunk


def test_the_seed_decides_everything(hr):
    torch.manual_seed(123)
    a = realistic_downscale(hr, 4, REALISTIC, seed=5)
    torch.manual_seed(999)  # the caller's global streams do not matter ...
    b = realistic_downscale(hr, 4, REALISTIC, seed=5)
    c = realistic_downscale(hr, 4, REALISTIC, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    state = torch.get_rng_state()
    realistic_downscale(hr, 4, REALISTIC, seed=7)
    assert torch.equal(state, torch.get_rng_state())  # ... and are left alone


def test_each_step_of_a_round_can_be_turned_off(hr):
    quiet = Round(
        blur_prob=0,
        resize_probs=(0, 0, 1),
        gaussian_noise_prob=1,
        noise_sigma=(0, 0),
        jpeg_quality=(100, 100),
    )
    cfg = Degradation(kind="realistic", first=quiet, second=quiet, final_sinc_prob=0)
    lr = realistic_downscale(hr, 2, cfg, seed=0)
    area = torch.nn.functional.interpolate(hr, scale_factor=0.5, mode="area")
    # left: the final resize (area, bilinear or bicubic) and two JPEGs at quality 100
    assert (lr - area).abs().mean() < 0.02


def test_a_clean_share_gets_the_benchmarks_bicubic(hr):
    from sr.degrade import matlab_downscale

    bicubic = matlab_downscale(hr, 4)
    assert torch.equal(
        realistic_downscale(hr, 4, Degradation(kind="realistic", clean_prob=1), seed=2), bicubic
    )
    batch = hr.repeat(4, 1, 1, 1)  # 12 images: some clean, some degraded, drawn by the seed
    lr = realistic_downscale(batch, 4, Degradation(kind="realistic", clean_prob=0.5), seed=2)
    clean = [torch.equal(lr[i], bicubic[i % 3]) for i in range(12)]
    assert 0 < sum(clean) < 12
    assert torch.equal(
        lr, realistic_downscale(batch, 4, Degradation(kind="realistic", clean_prob=0.5), seed=2)
    )


def test_tiny_images_get_kernels_that_fit(hr):
    small = hr[:, :, :16, :16]
    assert realistic_downscale(small, 4, REALISTIC, seed=1).shape == (3, 1, 4, 4)


SR_RECIPE = {"stage": "sr", "model": {"arch": "span", "num_feat": 8, "num_block": 1}}


def test_the_recipe_section_is_checked_on_load():
    cfg = parse_config(
        {**SR_RECIPE, "data": {"degradation": {"kind": "realistic", "second": {"blur_prob": 0.5}}}}, "r"
    )
    assert cfg.data.degradation.second.blur_prob == 0.5 and cfg.data.degradation.first.blur_prob == 1.0
    # the rest of the section keeps the second round's own defaults, not the first's
    assert (
        cfg.data.degradation.second.noise_sigma == REALISTIC.second.noise_sigma != REALISTIC.first.noise_sigma
    )
    assert cfg.to_dict()["data"]["degradation"]["second"]["blur_prob"] == 0.5
    assert parse_config(cfg.to_dict(), "again") == cfg  # a checkpoint's config rebuilds the same recipe
    bad = [
        ({"kind": "jpeg"}, "one of 'bicubic', 'realistic'"),
        ({"first": {"blur_sigmaa": [1, 2]}}, "unknown option blur_sigmaa"),
        (
            {"first": {"jpeg_quality": [90, 120]}},
            "first.jpeg_quality (90.0, 120.0): needs 1 <= low <= high <= 100",
        ),
        ({"second": {"blur_prob": 2}}, "second.blur_prob 2.0 is not in [0, 1]"),
        ({"clean_prob": -0.1}, "clean_prob -0.1 is not in [0, 1]"),
        ({"kernel_size_range": [8, 21]}, "kernel_size_range"),
    ]
    for section, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_config({**SR_RECIPE, "data": {"degradation": section}}, "r")
    with pytest.raises(ConfigError, match="data.degradation is for the SR stage"):
        parse_config(
            {
                "stage": "color",
                "model": {"arch": "pix2pix_unet"},
                "data": {"degradation": {"kind": "realistic"}},
            },
            "r",
        )


def test_a_resumed_run_continues_the_same_degradations(tmp_path):
    cfg = parse_config({**SR_RECIPE, "data": {"degradation": {"kind": "realistic"}}}, "r")
    stage = SRStage(cfg, 4, tmp_path)
    crops = torch.from_numpy(np.stack([photo((32, 32), seed=i) for i in range(2)]))[:, None]
    g = torch.Generator().manual_seed(1)
    stage.make_batch(crops, g)
    saved = g.get_state()
    second = stage.make_batch(crops, g)[0]
    g.set_state(saved)  # what a checkpoint restores
    torch.testing.assert_close(stage.make_batch(crops, g)[0], second, rtol=0, atol=0)


def test_the_degraded_benchmark_is_the_same_twice(tmp_path):
    from cascade.evaluation.modes import evaluate_sr

    for i in range(2):
        Image.fromarray(np.stack([photo((64, 48), seed=i)] * 3, axis=2)).save(tmp_path / f"img{i}.png")
    runs = [evaluate_sr(tmp_path, None, niqe=False, degradation="realistic", seed=0) for _ in range(2)]
    assert runs[0].images == runs[1].images
    other = evaluate_sr(tmp_path, None, niqe=False, degradation="realistic", seed=1)
    assert other.images != runs[0].images
    clean = evaluate_sr(tmp_path, None, niqe=False)
    assert clean.means()["bicubic"]["psnr_y"] > runs[0].means()["bicubic"]["psnr_y"] + 1
    assert runs[0].settings["degradation"] == "realistic" and runs[0].settings["seed"] == 0
