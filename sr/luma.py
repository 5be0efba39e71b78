"""Folding an RGB super-resolution network into a luminance one.

Our inputs are gray. An RGB network given a gray image replicated to three channels, with its output read as
BT.601 luma, is a 1-in, 1-out network: its first convolution sees the same plane three times (so its filters can
be summed over the input channels), and luma is a fixed linear mix of its last convolution's R, G and B outputs
(which, before a pixel shuffle, are three groups of ``scale**2`` channels). Everything in between is unchanged.

Exact where the first convolution's window lies inside the image. An input shift by a per-channel mean (SPAN's)
becomes one mean plus a bias correction, which differs from the original only where the window overlaps the
zero padding: the outermost pixel ring of the LR image (measured in ``tests/test_ncnn.py``).
"""

from __future__ import annotations

import torch
from einops import einsum, rearrange
from torch import nn

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as cascade reads a color image as gray


def _end_convs(model: nn.Module) -> tuple[str, str]:
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution to fold")
    return convs[0], convs[-1]


def fold_rgb_to_luma(rgb: nn.Module, luma: nn.Module) -> nn.Module:
    """Load into ``luma`` (the same architecture built with one input and one output channel) the weights that
    make it compute ``luma(rgb(gray, gray, gray))``; returns ``luma``."""
    first, last = _end_convs(rgb)
    state = {k: v.detach().clone() for k, v in rgb.state_dict().items()}
    w = state[f"{first}.weight"]  # (F, 3, k, k)
    state[f"{first}.weight"] = w.sum(1, keepdim=True)
    if isinstance(getattr(rgb, "mean", None), torch.Tensor):  # an input shift: (x - mean) * img_range
        shift = luma.mean.view(-1)[0] - rgb.mean.view(-1)  # (3,): the one mean left, less each channel's
        state[f"{first}.bias"] += rgb.img_range * (w * shift.view(1, 3, 1, 1)).sum((1, 2, 3))
    k = torch.tensor(LUMA_WEIGHTS, dtype=w.dtype)
    # A pixel shuffle reads its input channels as (color, sub-pixel): g = scale**2 sub-pixels per color, else 1.
    w_last = rearrange(state[f"{last}.weight"], "(c g) f kh kw -> c g f kh kw", c=3)
    state[f"{last}.weight"] = einsum(k, w_last, "c, c g f kh kw -> g f kh kw")
    if f"{last}.bias" in state:
        state[f"{last}.bias"] = einsum(
            k, rearrange(state[f"{last}.bias"], "(c g) -> c g", c=3), "c, c g -> g"
        )
    for name, buffer in luma.state_dict().items():
        if name not in state:  # buffers the luma model sets itself
            state[name] = buffer
    luma.load_state_dict(state)
    return luma
