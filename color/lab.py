"""CIE Lab conversion (sRGB, D65, 2-degree observer) and the network ranges of the colorization recipe.

The networks see ``L / 50 - 1`` (so L in [0, 100] maps to [-1, 1]) and predict ``ab / 110`` (a and b of sRGB
colors stay inside about +-110). There are two paths with the same numbers: numpy through ``skimage.color``
for data preparation, and a batched torch path for GPU training and inference. The torch path takes its
constants from skimage so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import color as skcolor
from skimage.color.colorconv import rgb_from_xyz, xyz_from_rgb, xyz_tristimulus_values

L_SCALE, L_SHIFT, AB_SCALE = 50.0, 1.0, 110.0
_WHITE_D65 = xyz_tristimulus_values(illuminant="D65", observer="2")  # (0.95047, 1.0, 1.08883)
_EPS = 0.008856  # (6/29)**3: where CIE's f(t) switches from the cube root to its linear part
_KAPPA = 7.787


def normalize_lab(lab: np.ndarray | torch.Tensor, channel_axis: int = -1):
    """Lab -> (L_norm, ab_norm) in the network ranges; ``channel_axis`` is the Lab axis."""
    L = _take(lab, 0, channel_axis)
    ab = _take(lab, slice(1, 3), channel_axis)
    return L / L_SCALE - L_SHIFT, ab / AB_SCALE


def denormalize_lab(L_norm, ab_norm, channel_axis: int = -1):
    """(L_norm, ab_norm) in the network ranges -> Lab, concatenated along ``channel_axis``."""
    L = (L_norm + L_SHIFT) * L_SCALE
    ab = ab_norm * AB_SCALE
    if isinstance(L, torch.Tensor):
        return torch.cat([L, ab], dim=channel_axis)
    return np.concatenate([L, ab], axis=channel_axis)


def _take(x, index, axis):
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(index, index + 1) if isinstance(index, int) else index
    return x[tuple(idx)]


# --- numpy (skimage) path: images as (H, W, 3) --------------------------------------------------------------


def rgb_to_lab_np(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) sRGB, uint8 or float in [0, 1] -> (H, W, 3) float32 Lab."""
    return skcolor.rgb2lab(rgb).astype(np.float32)


# --- torch path: batches as (B, 3, H, W), on any device --------------------------------------------------------


def _srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c > 0.04045, ((c + 0.055) / 1.055).clamp_min(0) ** 2.4, c / 12.92)


def _linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c > 0.0031308, 1.055 * c.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, 12.92 * c)


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _EPS, t.clamp_min(_EPS) ** (1 / 3), _KAPPA * t + 16 / 116)


def _f_inv(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > 0.2068966, t**3, (t - 16 / 116) / _KAPPA)


def _matmul_channels(m: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.as_tensor(m, dtype=x.dtype, device=x.device), x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> (B, 3, H, W) Lab, as ``skimage.color.rgb2lab``."""
    xyz = _matmul_channels(xyz_from_rgb, _srgb_to_linear(rgb))
    white = torch.as_tensor(_WHITE_D65, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    fx, fy, fz = _f(xyz / white).unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) Lab -> (B, 3, H, W) linear RGB, not clipped: outside [0, 1] where a colour is out of gamut."""
    L, a, b = lab.unbind(1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, (fy - b / 200).clamp_min(0)], dim=1)
    white = torch.as_tensor(_WHITE_D65, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    return _matmul_channels(rgb_from_xyz, _f_inv(f) * white)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) Lab -> (B, 3, H, W) sRGB in [0, 1], as ``skimage.color.lab2rgb`` (out-of-gamut clipped)."""
    return _linear_to_srgb(lab_to_linear_rgb(lab)).clamp(0, 1)


def gray_to_lightness(gray: torch.Tensor) -> torch.Tensor:
    """Gray sRGB values in [0, 1] (any shape) -> CIE L* in [0, 100]; for R = G = B the luminance Y is the
    linearized value itself, because the sRGB-to-Y weights sum to one."""
    return 116 * _f(_srgb_to_linear(gray)) - 16


def lightness_to_gray(L: torch.Tensor) -> torch.Tensor:
    """CIE L* in [0, 100] (any shape) -> the gray sRGB value in [0, 1] with that lightness: the inverse of
    ``gray_to_lightness``, how DDColor's protocol hands a colorizer the ground truth's own L*."""
    return _linear_to_srgb(_f_inv((L + 16) / 116)).clamp(0, 1)
