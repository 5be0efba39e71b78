"""The published metrics, computed by the libraries the tables used: basicsr's PSNR, SSIM (MATLAB-exact) and
NIQE; skimage's CIEDE2000; Hasler and Suesstrunk's colorfulness as DDColor computes it (``color.metrics``).

Every function takes (H, W, 3) uint8 RGB images, as they would be written to disk, and returns a float.
"""

from __future__ import annotations

import numpy as np
import torch

from color.lab import rgb_to_lab_np
from color.metrics import colorfulness as _colorfulness

NIQE_BLOCK = 96  # NIQE's patch size; its Gaussian model needs several patches to estimate a covariance


def _bgr(rgb: np.ndarray) -> np.ndarray:
    """basicsr's metrics read images as OpenCV does (BGR): its Y channel weights assume that order."""
    return rgb[..., ::-1]


def psnr_y(out: np.ndarray, gt: np.ndarray, border: int) -> float:
    """PSNR on Y of YCbCr (BT.601, 16-235), ``border`` pixels cropped from each edge: the SR tables' PSNR."""
    from basicsr.metrics import calculate_psnr

    return float(calculate_psnr(_bgr(out), _bgr(gt), crop_border=border, test_y_channel=True))


def ssim_y(out: np.ndarray, gt: np.ndarray, border: int) -> float:
    """SSIM on Y of YCbCr, as MATLAB's reference code (Gaussian window 11, sigma 1.5)."""
    from basicsr.metrics import calculate_ssim

    return float(calculate_ssim(_bgr(out), _bgr(gt), crop_border=border, test_y_channel=True))


def psnr_rgb(out: np.ndarray, gt: np.ndarray, border: int = 0) -> float:
    """PSNR over the three RGB channels together, as the colorization papers report it."""
    from basicsr.metrics import calculate_psnr

    return float(calculate_psnr(out, gt, crop_border=border))


def ssim_rgb(out: np.ndarray, gt: np.ndarray, border: int = 0) -> float:
    """SSIM per RGB channel, averaged."""
    from basicsr.metrics import calculate_ssim

    return float(calculate_ssim(out, gt, crop_border=border))


def ciede2000(out: np.ndarray, gt: np.ndarray, border: int = 0, gt_lab: np.ndarray | None = None) -> float:
    """Mean CIEDE2000 color difference in CIE Lab (D65); about 2.3 is a just noticeable difference.
    ``gt_lab``: the cropped ground truth already in Lab, when several outputs are scored against it."""
    from skimage.color import deltaE_ciede2000

    if border:
        out, gt = out[border:-border, border:-border], gt[border:-border, border:-border]
    if gt_lab is None:
        gt_lab = rgb_to_lab_np(gt)
    return float(deltaE_ciede2000(gt_lab, rgb_to_lab_np(out)).mean())


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colorfulness on the 0-255 scale (0 for gray)."""
    t = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None] / 255  # (1, 3, H, W)
    return float(_colorfulness(t)[0])


def niqe(rgb: np.ndarray, border: int) -> float | None:
    """NIQE (no reference; lower looks more natural) on Y with basicsr's pristine-image model, or None for
    images too small to hold the two 96-pixel patches its statistics need."""
    from basicsr.metrics.niqe import calculate_niqe

    h, w = rgb.shape[0] - 2 * border, rgb.shape[1] - 2 * border
    if (h // NIQE_BLOCK) * (w // NIQE_BLOCK) < 2:
        return None
    return float(calculate_niqe(_bgr(rgb), crop_border=border, input_order="HWC", convert_to="y"))
