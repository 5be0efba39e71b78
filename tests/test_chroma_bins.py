"""Colour as a classification over a*b* bins: the gamut's bins, the soft targets, the annealed mean, and the
UNet that predicts them."""

from __future__ import annotations

import pytest
import torch

from cascade.config import ConfigError
from cascade.models import create_colorizer
from color.chroma_bins import ChromaBins, gamut_bin_centers
from color.lab import AB_SCALE, rgb_to_lab
from tests.conftest import TINY_COLOR


def gray_bin_of(bins: ChromaBins) -> int:
    return (bins.centers * AB_SCALE).tolist().index([0.0, 0.0])


def test_the_bins_cover_the_srgb_gamut_and_nothing_far_outside_it():
    centers = gamut_bin_centers(10)
    assert len(centers) == 261 and centers.abs().max() <= 110
    kept = {tuple(c.tolist()) for c in centers}
    assert {(0.0, 0.0), (80.0, 70.0), (-80.0, 80.0)} <= kept  # gray, red, green
    assert (110.0, -110.0) not in kept and (-110.0, -110.0) not in kept  # no sRGB colour is that far out
    # every 8-bit sRGB colour falls within half a bin's diagonal of a centre
    rgb = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ab = rgb_to_lab(rgb)[0, 1:].flatten(1).T
    assert torch.cdist(ab, centers).min(1).values.max() <= 5 * 2**0.5 + 1e-4


def test_soft_targets_peak_at_the_nearest_bin_and_decode_back_to_the_colour():
    bins = ChromaBins(10, sigma=5, temperature=1.0)
    ab = torch.tensor([[[[0.0, 23.0 / AB_SCALE]], [[0.0, -41.0 / AB_SCALE]]]])  # (1, 2, 1, 2): gray and blue
    q = bins.encode(ab)
    assert torch.allclose(q.sum(1), torch.ones(1, 1, 2))
    nearest = bins.centers[q.argmax(1)[0, 0]] * AB_SCALE
    assert nearest.tolist() == [[0.0, 0.0], [20.0, -40.0]]
    decoded = bins.decode(torch.log(1e-6 + q)) * AB_SCALE
    assert torch.allclose(decoded, ab * AB_SCALE, atol=0.5)


def test_a_lower_temperature_moves_the_colour_from_the_mean_towards_the_mode():
    bins = ChromaBins(10, temperature=1.0)
    logits = torch.full((1, len(bins), 1, 1), -20.0)
    gray, red = (
        (bins.centers * AB_SCALE).tolist().index([0.0, 0.0]),
        (bins.centers * AB_SCALE).tolist().index([60.0, 50.0]),
    )
    logits[0, gray], logits[0, red] = 0.0, 0.5  # red a little more likely than gray
    chroma = {}
    for t in (1.0, 0.38, 0.05):
        bins.temperature = t
        chroma[t] = (bins.decode(logits) * AB_SCALE).norm().item()
    assert chroma[1.0] < chroma[0.38] < chroma[0.05]
    assert chroma[1.0] == pytest.approx(78.1 * torch.sigmoid(torch.tensor(0.5)).item(), rel=1e-3)
    assert chroma[0.05] == pytest.approx(78.1, rel=1e-3)  # the mode: |(60, 50)|


def test_the_loss_is_lowest_for_logits_that_match_the_target():
    bins = ChromaBins(10)
    ab = (torch.rand(2, 2, 16, 16) - 0.5) * 0.8
    right = torch.log(1e-6 + bins.encode(torch.nn.functional.interpolate(ab, size=(4, 4), mode="area")))
    wrong = right.roll(7, dims=1)
    assert bins.loss(right, ab) < bins.loss(wrong, ab)
    assert bins.loss(torch.zeros_like(right), ab) == pytest.approx(torch.log(torch.tensor(len(bins))).item())


def test_the_unet_returns_ab_or_its_logits_at_the_chroma_stride():
    torch.manual_seed(0)
    model = create_colorizer({**TINY_COLOR, "chroma_bins": 10, "chroma_stride": 4}).eval()
    x = torch.rand(2, 1, 64, 96) * 2 - 1
    ab = model(x)
    assert ab.shape == (2, 2, 64, 96) and ab.abs().max() < 1
    assert model(x, logits=True).shape == (2, 261, 16, 24)
    assert model.arch_config["chroma_bins"] == 10 and model.out_ch == 2
    with pytest.raises(ValueError, match="needs a model with chroma_bins"):
        create_colorizer(TINY_COLOR)(x, logits=True)
    with pytest.raises(ValueError, match="must be > 0"):
        create_colorizer({**TINY_COLOR, "chroma_bins": 10, "temperature": 0})


def test_the_training_stage_counts_the_photos_colours_once_before_the_first_step():
    from cascade.training.config import load_config
    from cascade.training.data import CropSampler
    from cascade.training.stages import ColorStage

    cfg = load_config("configs/color_lite0_unet_cpu_bins.yaml")
    red = torch.tensor([200, 30, 30], dtype=torch.uint8)[:, None, None].expand(3, 16, 16).clone()
    gray = torch.full((3, 16, 16), 128, dtype=torch.uint8)
    stage = ColorStage(cfg, ChromaBins(10))
    model = create_colorizer({**TINY_COLOR, "chroma_bins": 10})
    stage.prepare(CropSampler([red, gray, gray, gray], 16, seed=0), [model])
    prior = model.bins.log_prior.exp()
    red_ab = rgb_to_lab(red[None].float() / 255)[:, 1:, :1, :1] / AB_SCALE
    red_bin, gray_bin = stage.bins.nearest(red_ab).item(), gray_bin_of(stage.bins)
    assert prior.sum().item() == pytest.approx(1.0)
    assert prior[gray_bin].item() == pytest.approx(3 * prior[red_bin].item(), rel=0.05)  # gray: 3 photos of 4
    assert prior[red_bin] > 100 * prior.min()  # the rest in none
    assert stage.losses(torch.zeros(1, len(prior), 2, 2), torch.zeros(1, 2, 8, 8))["chroma_ce"] > 0
    with pytest.raises(ConfigError, match="needs a regression colorizer"):
        ColorStage(load_config("configs/color_lite0_unet_cpu_gan.yaml"), ChromaBins(10))


def test_the_prior_correction_takes_the_training_photos_gray_out_of_an_uncertain_prediction():
    bins = ChromaBins(10, temperature=1.0)
    centers = (bins.centers * AB_SCALE).tolist()
    gray, blue = centers.index([0.0, 0.0]), centers.index([20.0, -40.0])
    counts = torch.ones(len(bins))
    counts[gray] = 500.0  # gray is what most training pixels were
    bins.set_prior(counts)
    assert bins.log_prior.exp().sum().item() == pytest.approx(1.0)
    logits = torch.full((1, len(bins), 1, 1), -30.0)
    logits[0, gray], logits[0, blue] = 1.0, 0.0  # gray likelier than blue, as gray is in photos at large
    chroma = {}
    for alpha in (0.0, 0.5, 1.0):
        bins.prior_correction = alpha
        chroma[alpha] = (bins.decode(logits) * AB_SCALE).norm().item()
    assert chroma[0.0] < 20 < chroma[0.5] < chroma[1.0] <= 44.8  # towards blue's |(20, -40)| = 44.7
    fresh = ChromaBins(10, temperature=1.0, prior_correction=1.0)  # no prior kept: uniform, no change
    assert (fresh.decode(logits) * AB_SCALE).norm().item() == pytest.approx(chroma[0.0], rel=1e-5)
