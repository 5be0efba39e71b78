"""A U-Net decoder over any timm encoder (``features_only``), optionally ImageNet-pretrained."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from color.chroma_bins import ChromaBins

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")


def pretrained_kwargs(pretrained: bool | str | None) -> dict:
    """timm arguments for ``pretrained``: None/False (random init), True (timm's default hub weights), a local
    weights file, or a Hugging Face hub id such as ``timm/resnet18.a1_in1k``."""
    if not pretrained:
        return {"pretrained": False}
    if pretrained is True:
        return {"pretrained": True}
    path = Path(pretrained).expanduser()
    if path.is_file():
        return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    if path.suffix in _WEIGHT_SUFFIXES or path.is_absolute() or pretrained.startswith("."):
        raise FileNotFoundError(f"pretrained encoder weights not found: {pretrained}")
    return {"pretrained": True, "pretrained_cfg_overlay": {"hf_hub_id": pretrained}}


def create_encoder(name: str, pretrained: bool | str | None = None, in_ch: int = 1) -> nn.Module:
    """A timm encoder returning its feature pyramid; a 1-channel input adapts the pretrained first conv
    (timm sums its RGB filters), which equals feeding the gray image repeated three times."""
    if not timm.is_model(name):
        raise ValueError(f"unknown timm encoder {name!r}; see timm.list_models() for the names")
    kwargs = pretrained_kwargs(pretrained)
    try:
        return timm.create_model(name, features_only=True, in_chans=in_ch, **kwargs)
    except OSError as e:  # a failed hub download (offline, unknown id) surfaces as an OSError subclass
        raise OSError(
            f"could not load pretrained weights for encoder {name!r} ({e.__class__.__name__}: {e}); "
            "offline? give a local weights file as `pretrained: path/to/weights.safetensors`"
        ) from e


class ConvBlock(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class GlobalContext(nn.Module):
    """What the whole photo shows, broadcast over the deepest feature map: the ImageNet classifier's own input
    (the encoder's pretrained head conv, pooled) projected to ``width`` channels. Iizuka et al. (2016) fuse a
    classification network's global features into their colorizer's decoder this way."""

    def __init__(self, head: nn.Module, features: int, width: int):
        super().__init__()
        self.head = head
        self.proj = nn.Sequential(nn.Linear(features, width), nn.ReLU(inplace=True))

    def forward(self, deepest: torch.Tensor) -> torch.Tensor:
        g = self.proj(self.head(deepest).mean((2, 3)))
        return g[:, :, None, None].expand(-1, -1, *deepest.shape[-2:])


def pretrained_head(name: str, pretrained: bool | str | None, in_ch: int) -> tuple[nn.Module, int]:
    """The head conv (and its norm and activation) that a timm EfficientNet puts between its last stage and
    the classifier, with the same pretrained weights as the encoder, and its output width."""
    model = timm.create_model(name, in_chans=in_ch, **pretrained_kwargs(pretrained))
    if not isinstance(getattr(model, "conv_head", None), nn.Module):
        raise ValueError(
            f"global_context needs an encoder with a head conv (EfficientNet family), not {name!r}"
        )
    return nn.Sequential(model.conv_head, model.bn2), model.num_features


class TimmUNet(nn.Module):
    """U-Net whose encoder is a timm model; the decoder sizes itself from ``feature_info`` (channels and
    reductions), so any ``features_only`` encoder fits: resnet18/34, efficientnet, convnext...

    Each decoder level upsamples to the next shallower feature map, concatenates it, and applies two conv-BN-ReLU;
    a last level returns to full resolution with the input itself as the skip, then a 1x1 conv and tanh.

    Args:
        encoder: timm model name.
        pretrained: None, True (timm's hub weights), a local weights file, or a hub id.
        in_ch: input channels (1: L normalized to [-1, 1]).
        out_ch: output channels (2: ab normalized to [-1, 1]).
        decoder_channels: widths of the decoder levels, deepest first, one per encoder feature level
            (extra entries are ignored; missing ones repeat the last).
        chroma_stride: 1 predicts ab at the input's resolution; 2 or 4 stops the decoder that many times
            coarser and upsamples the ab bilinearly: chroma is smooth, and the decoder's last, full-resolution
            levels are its most expensive.
        chroma_bins: 0 regresses ab (tanh); a bin size in a*b* units (10) classifies the colour over the bins
            in gamut instead and returns their annealed mean (``color.chroma_bins``).
        chroma_sigma: width of a target colour's spread over the bins, in a*b* units.
        temperature: the annealed mean's: 1 the mean of the predicted colours, lower towards the likeliest.
        prior_correction: 0 decodes the prediction as it is; up to 1 takes out the training photos' colour
            frequencies first (more colour where the gray of most photos would win).
        global_context: 0, or the width of the photo's pooled ImageNet features fed to the deepest decoder
            level (``GlobalContext``; EfficientNet encoders).
        feature_dropout: channel dropout on the encoder's features while training, so that the decoder cannot
            rely on any one of them to recall a training photo's colours.
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        pretrained: bool | str | None = None,
        in_ch: int = 1,
        out_ch: int = 2,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        chroma_stride: int = 1,
        chroma_bins: float = 0,
        chroma_sigma: float = 5.0,
        temperature: float = 0.38,
        prior_correction: float = 0.0,
        global_context: int = 0,
        feature_dropout: float = 0.0,
    ):
        super().__init__()
        if chroma_stride not in (1, 2, 4):
            raise ValueError(f"chroma_stride must be 1, 2 or 4, not {chroma_stride}")
        self.encoder = create_encoder(encoder, pretrained, in_ch)
        info = self.encoder.feature_info
        enc_ch, reductions = info.channels(), info.reduction()
        # the encoder was (pre)trained on ImageNet-normalized inputs; map L in [-1, 1] onto that scale
        cfg = self.encoder.pretrained_cfg
        mean = sum(cfg.get("mean", (0.5,) * 3)) / 3
        std = sum(cfg.get("std", (0.5,) * 3)) / 3
        self.register_buffer("in_mean", torch.tensor(mean), persistent=False)
        self.register_buffer("in_std", torch.tensor(std), persistent=False)

        if global_context < 0:
            raise ValueError(f"global_context must be 0 (off) or a width > 0, not {global_context}")
        self.context = None
        if global_context:
            self.context = GlobalContext(*pretrained_head(encoder, pretrained, in_ch), global_context)
        if not 0 <= feature_dropout < 1:
            raise ValueError(f"feature_dropout must be in [0, 1), not {feature_dropout}")
        self.dropout = nn.Dropout2d(feature_dropout) if feature_dropout else nn.Identity()

        widths = list(decoder_channels[: len(enc_ch)])
        widths += [widths[-1]] * (len(enc_ch) - len(widths))
        skips = enc_ch[-2::-1] + [in_ch]  # shallower features, then the input itself
        # the decoder's levels end at the reductions of those skips; keep those down to chroma_stride
        self.levels = sum(1 for r in reductions[-2::-1] + [1] if r >= chroma_stride)
        blocks, ch = [], enc_ch[-1] + global_context
        for width, skip in list(zip(widths, skips))[: self.levels]:
            blocks.append(ConvBlock(ch + skip, width))
            ch = width
        self.decoder = nn.ModuleList(blocks)
        self.bins = (
            ChromaBins(chroma_bins, chroma_sigma, temperature, prior_correction) if chroma_bins else None
        )
        if self.bins is not None and out_ch != 2:
            raise ValueError(f"chroma_bins predicts a*b*: out_ch must be 2, not {out_ch}")
        self.head = nn.Conv2d(ch, len(self.bins) if self.bins is not None else out_ch, 1)
        # the facts every cascade network declares: scale, image channels, the multiple its input sides need
        self.scale, self.in_ch, self.out_ch, self.size_multiple = 1, in_ch, out_ch, max(reductions)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """L in [-1, 1] -> the ImageNet-normalised input the encoder was pretrained on."""
        return ((x + 1) / 2 - self.in_mean) / self.in_std

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """(B, in_ch, H, W) -> (B, out_ch, H, W) ab; with ``logits`` (chroma bins only: what training scores)
        the (B, Q, H / chroma_stride, W / chroma_stride) logits over the bins."""
        feats = [self.dropout(f) for f in self.encoder(self.encoder_input(x))]
        skips = feats[-2::-1] + [x]
        y = feats[-1]
        if self.context is not None:
            y = torch.cat([y, self.context(y)], dim=1)
        for block, skip in zip(self.decoder, skips):
            y = F.interpolate(y, size=skip.shape[-2:], mode="nearest")
            y = block(torch.cat([y, skip], dim=1))
        y = self.head(y)
        if logits:
            if self.bins is None:
                raise ValueError("logits=True needs a model with chroma_bins")
            return y
        y = self.bins.decode(y) if self.bins is not None else torch.tanh(y)
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y
