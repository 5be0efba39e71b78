"""What differs between training the two stages: how a batch is made, the generator's loss terms, what the
discriminator judges, and how validation scores the result. The loop in ``loop.py`` is the same for both."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cascade.config import ConfigError
from cascade.models import sr_scale
from cascade.training.config import LossConfig, TrainConfig
from cascade.training.data import CropSampler
from color.chroma_bins import ChromaBins
from color.lab import denormalize_lab, lab_to_rgb, normalize_lab, rgb_to_lab
from color.metrics import colorfulness
from sr.losses import grid_loss


def build_perceptual(loss: LossConfig, cache_dir: Path) -> nn.Module:
    """The recipe's perceptual loss over VGG19 or a timm network, with its ImageNet weights."""
    from sr.losses import PerceptualLoss, TimmFeatures, VGG19Features

    if loss.perceptual_net == "vgg19":
        features = VGG19Features(list(loss.perceptual_layers), loss.perceptual_weights)
        return PerceptualLoss(features, loss.perceptual_layers, jitter=loss.perceptual_jitter)
    import timm

    from cascade.imagenet_weights import resolve_pretrained
    from color.timm_unet import pretrained_kwargs

    if not timm.is_model(loss.perceptual_net):
        raise ConfigError(
            f"loss.perceptual_net: {loss.perceptual_net!r} is neither vgg19 nor a timm model name"
        )
    weights = resolve_pretrained(loss.perceptual_weights, cache_dir)
    net = timm.create_model(loss.perceptual_net, features_only=True, **pretrained_kwargs(weights or True))
    features = TimmFeatures(net, list(loss.perceptual_layers))
    return PerceptualLoss(features, loss.perceptual_layers, jitter=loss.perceptual_jitter)


def pixel_loss(out: torch.Tensor, target: torch.Tensor, loss: LossConfig) -> torch.Tensor:
    """The recipe's pixel term, unweighted: L1, MSE or Huber, averaged over pixels or (``pixel_per_image:
    log``) as the mean over images of the log of each image's own loss."""
    if loss.pixel_loss == "mse":
        per_pixel = F.mse_loss(out, target, reduction="none")
    elif loss.pixel_loss == "huber":
        per_pixel = F.huber_loss(out, target, delta=loss.huber_delta, reduction="none")
    else:
        per_pixel = F.l1_loss(out, target, reduction="none")
    if loss.pixel_per_image == "log":
        return torch.log(loss.pixel_log_floor + per_pixel.flatten(1).mean(1)).mean()
    return per_pixel.mean()


def _batched(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


class SRStage:
    """Luminance HR crops -> (MATLAB-bicubic LR, HR); L1 (+ perceptual) loss; PSNR/SSIM on Y.

    Args:
        cfg: the recipe.
        scale: the generator's upscaling factor.
        cache_dir: where ImageNet weights converted from a pip package are kept (the run folder).
    """

    best_metric = "psnr_y"
    val_metrics = ["psnr_y", "ssim_y"]

    def __init__(self, cfg: TrainConfig, scale: int, cache_dir: Path):
        self.cfg = cfg
        self.scale = scale
        self.perceptual = None
        self.loss_terms = ["pixel"]
        if cfg.loss.perceptual > 0:
            self.perceptual = build_perceptual(cfg.loss, cache_dir)
            self.loss_terms.append("perceptual")
        if cfg.loss.grid > 0:
            self.loss_terms.append("grid")

    @classmethod
    def build(cls, cfg: TrainConfig, generator: nn.Module, cache_dir: Path) -> SRStage:
        return cls(cfg, sr_scale(generator), cache_dir)

    def to(self, device: torch.device) -> SRStage:
        if self.perceptual is not None:
            self.perceptual.to(device)
        return self

    def make_batch(
        self, crops: torch.Tensor, rng: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, P, P) uint8 -> LR (B, 1, P/s, P/s) and HR (B, 1, P, P), floats in [0, 1]. The realistic
        degradation draws its seed from ``rng`` (the sampler's: checkpointed), or uses ``data.seed``."""
        from sr.degrade import matlab_downscale

        hr = crops.float() / 255
        degradation = self.cfg.data.degradation
        if degradation.kind == "realistic":
            from sr.degradations import realistic_downscale

            seed = (
                int(torch.randint(2**31 - 1, (1,), generator=rng)) if rng is not None else self.cfg.data.seed
            )
            return realistic_downscale(hr, self.scale, degradation, seed), hr
        return matlab_downscale(hr, self.scale, self.cfg.data.quantize_lr), hr

    def prepare(self, sampler: CropSampler, models: list[nn.Module]) -> None:
        """Nothing to learn from the training images before the first step."""

    def generate(self, generator: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        return generator(inp)

    def losses(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"pixel": self.cfg.loss.pixel * pixel_loss(out, target, self.cfg.loss)}
        if self.perceptual is not None:
            terms["perceptual"] = self.cfg.loss.perceptual * self.perceptual(out.float(), target)
        if self.cfg.loss.grid > 0:
            terms["grid"] = self.cfg.loss.grid * grid_loss(out.float(), target, self.scale)
        return terms

    def judged(self, inp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        return img  # the discriminator tells real HR from generated HR

    @torch.no_grad()
    def validate(
        self, model: nn.Module, crops: torch.Tensor, batch_size: int, n_show: int
    ) -> tuple[dict[str, float], torch.Tensor]:
        """PSNR/SSIM on Y (BT.601, 16-235) with ``scale`` border pixels cropped, as ``cascade eval sr``
        reports them; and the (N*3, 1, P, P) rows of a sample grid: bicubic-size input | output | target."""
        from basicsr.metrics.psnr_ssim import calculate_psnr_pt, calculate_ssim_pt

        lr, hr = self.make_batch(crops)
        out = _batched(lambda x: model(x).float().clamp(0, 1), lr, batch_size)
        out = (out * 255).round() / 255  # scored as the saved 8-bit image
        rgb = (out.expand(-1, 3, -1, -1), hr.expand(-1, 3, -1, -1))
        metrics = {
            "psnr_y": calculate_psnr_pt(*rgb, crop_border=self.scale, test_y_channel=True).mean().item(),
            "ssim_y": calculate_ssim_pt(*rgb, crop_border=self.scale, test_y_channel=True).mean().item(),
        }
        shown = F.interpolate(lr[:n_show], scale_factor=self.scale, mode="nearest")
        grid = torch.stack([shown, out[:n_show], hr[:n_show]], 1).flatten(0, 1)
        return metrics, grid


class ColorStage:
    """RGB crops -> (L, ab) in the network ranges; lambda * L1 on ab, or for a generator that classifies the
    colour over chroma bins, lambda * the cross-entropy of its logits; PSNR on RGB and colorfulness.

    Args:
        cfg: the recipe.
        bins: the generator's chroma bins (``color.chroma_bins``), or None for a regression generator.
    """

    best_metric = "psnr"
    val_metrics = ["psnr", "psnr_gray", "colorfulness", "colorfulness_gt", "delta_colorfulness"]
    scale = 1

    def __init__(self, cfg: TrainConfig, bins: ChromaBins | None = None):
        self.cfg = cfg
        self.bins = bins
        self.loss_terms = ["pixel"] if bins is None else ["chroma_ce"]
        if bins is not None and cfg.loss.gan > 0:
            raise ConfigError(
                "loss.gan: the GAN phase needs a regression colorizer; this one has chroma_bins"
            )

    @classmethod
    def build(cls, cfg: TrainConfig, generator: nn.Module, cache_dir: Path) -> ColorStage:
        bins = getattr(generator, "bins", None)
        return cls(cfg, copy.deepcopy(bins) if bins is not None else None)

    def to(self, device: torch.device) -> ColorStage:
        if self.bins is not None:
            self.bins.to(device)
        return self

    def prepare(self, sampler: CropSampler, models: list[nn.Module]) -> None:
        """For a colorizer with chroma bins: count how often each bin is the colour of a pixel of the training
        photos (at a quarter of their size, each photo counted by its sampling weight) and keep the frequencies
        in ``models`` (the generator and its EMA), for the ``prior_correction`` of inference."""
        if self.bins is None:
            return
        counts = torch.zeros(len(self.bins), dtype=torch.float64, device=self.bins.centers.device)
        weights = sampler.weights if sampler.weights is not None else torch.ones(len(sampler.images))
        for img, weight in zip(sampler.images, weights.tolist()):
            small = F.interpolate(img[None].float() / 255, scale_factor=0.25, mode="area")
            _, ab = normalize_lab(rgb_to_lab(small), channel_axis=1)
            nearest = self.bins.nearest(ab.to(self.bins.centers)).flatten()
            counts += torch.bincount(nearest, minlength=len(self.bins)) * (weight / nearest.numel())
        for model in models:
            model.bins.set_prior(counts)

    def generate(self, generator: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        """What the loss scores: ab, or the logits over the chroma bins."""
        return generator(inp) if self.bins is None else generator(inp, logits=True)

    def make_batch(
        self, crops: torch.Tensor, rng: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, P, P) uint8 RGB -> L (B, 1, P, P) in [-1, 1] and ab (B, 2, P, P) in about [-1, 1]."""
        lab = rgb_to_lab(crops.float() / 255)
        return normalize_lab(lab, channel_axis=1)

    def losses(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.bins is not None:
            return {"chroma_ce": self.cfg.loss.pixel * self.bins.loss(out, target)}
        return {"pixel": self.cfg.loss.pixel * pixel_loss(out, target, self.cfg.loss)}

    def judged(self, inp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        return torch.cat([inp, img.to(inp.dtype)], 1)  # the PatchGAN sees the whole Lab image

    @torch.no_grad()
    def validate(
        self, model: nn.Module, crops: torch.Tensor, batch_size: int, n_show: int
    ) -> tuple[dict[str, float], torch.Tensor]:
        """PSNR on RGB (and the gray input's, the baseline to beat), colorfulness of outputs and of ground
        truth; grid rows: gray | output | target."""
        from basicsr.metrics.psnr_ssim import calculate_psnr_pt

        L, _ = self.make_batch(crops)
        ab = _batched(lambda x: model(x).float(), L, batch_size)
        out = lab_to_rgb(denormalize_lab(L, ab, channel_axis=1))
        out = (out * 255).round() / 255
        target = crops.float() / 255
        cf_out, cf_target = colorfulness(out), colorfulness(target)
        gray = lab_to_rgb(denormalize_lab(L, torch.zeros_like(ab), channel_axis=1))
        gray = (gray * 255).round() / 255
        metrics = {
            "psnr": calculate_psnr_pt(out, target, crop_border=0).mean().item(),
            "psnr_gray": calculate_psnr_pt(gray, target, crop_border=0).mean().item(),
            "colorfulness": cf_out.mean().item(),
            "colorfulness_gt": cf_target.mean().item(),
            "delta_colorfulness": (cf_out - cf_target).abs().mean().item(),
        }
        grid = torch.stack([gray[:n_show], out[:n_show], target[:n_show]], 1).flatten(0, 1)
        return metrics, grid


TRAINING_STAGES = {"sr": SRStage, "color": ColorStage}  # keyed like cascade.models.STAGES
