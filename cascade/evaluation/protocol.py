"""How the published tables made their inputs: ground truth read as 8-bit RGB, cropped to a multiple of the
scale, shrunk with MATLAB's bicubic ``imresize`` and stored as 8-bit images; luminance as the model sees it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from cascade.imageio import IMAGE_SUFFIXES, array_to_gray, open_image
from cascade.listing import find_inputs

# What each mode does, recorded in every report: the protocols of the published tables.
SR_PROTOCOL = (
    "HR read as 8-bit RGB, cropped to a multiple of the scale; LR = MATLAB bicubic imresize (antialiased) of "
    "the HR by 1/scale, stored as 8-bit RGB; the model and the bicubic baseline see the LR's BT.601 luminance; "
    "outputs stored as 8 bits; PSNR and SSIM (basicsr) on Y of YCbCr (BT.601, 16-235), scale pixels of "
    "border cropped; NIQE (basicsr, Y, same border) of outputs and HR"
)
REALISTIC_FROM = "LR = MATLAB bicubic imresize (antialiased) of the HR by 1/scale, stored as 8-bit RGB"
REALISTIC_TO = (
    "LR = the HR's BT.601 luminance through the realistic training degradation (sr.degradations, Real-ESRGAN's "
    "two rounds of blur, resize, noise and JPEG at its default ranges), seeded by --seed and the image's name, "
    "stored as 8 bits"
)
COLOR_PROTOCOL = (
    "ground truth read as 8-bit RGB and resized to size x size (PIL bicubic, antialiased; 0: native size); "
    "input = {gray_from}; PSNR and SSIM (basicsr) on RGB, mean CIEDE2000 (skimage) in Lab D65, "
    "colorfulness (Hasler and Suesstrunk, as DDColor computes it); dCF = |mean CF - mean CF of ground truth|; "
    "gray ground-truth images are left out (no color to score)"
)
GRAY_FROM = {
    "luma": "its BT.601 luminance stored as 8 bits, as a gray photograph or `cascade run` gives it",
    "lightness": "the gray of its own CIE L* (unrounded), so the output keeps the ground truth's L* (DDColor's "
    "protocol)",
}
CASCADE_PROTOCOL = (
    "ground truth = color HR cropped to a multiple of the scale; input = its BT.601 luminance shrunk by "
    "MATLAB bicubic imresize, stored as 8 bits; outputs compared with the ground truth with scale pixels of "
    "border cropped: PSNR and SSIM on RGB and on Y of YCbCr (basicsr), mean CIEDE2000 (skimage), "
    "colorfulness as DDColor; gray ground-truth images are left out"
)


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name; hidden files left out."""
    listing = find_inputs(Path(folder), None, recursive=False)
    return [p for p in listing.images if p.suffix.lower() in IMAGE_SUFFIXES]


def read_rgb(path: str | Path) -> np.ndarray:
    """Ground truth as (H, W, 3) uint8 RGB; gray files become three equal channels, EXIF rotation applied."""
    with open_image(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right edges so both sides are multiples of ``scale`` (basicsr's ``mod_crop``)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def luma(rgb8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float32 luminance in [0, 1] (BT.601), as ``cascade run`` reads a color file."""
    return array_to_gray(rgb8).luma


def lightness_gray(rgb8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float32 gray whose CIE L* is the picture's own (DDColor's protocol input)."""
    from color.lab import lightness_to_gray, rgb_to_lab_np

    return lightness_to_gray(torch.from_numpy(rgb_to_lab_np(rgb8)[..., 0])).numpy()


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 as an image file would store them (rounded, clipped)."""
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def stored_8bit(x: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] as they come back from an 8-bit image file."""
    return to_uint8(x).astype(np.float32) / 255


def gray_rgb8(gray: np.ndarray) -> np.ndarray:
    """(H, W) float in [0, 1] -> (H, W, 3) uint8 with R = G = B: how gray results are written and scored."""
    return np.repeat(to_uint8(gray)[..., None], 3, axis=2)


# --- MATLAB's bicubic imresize, as matrices ---------------------------------------------------------------------


def matlab_resize(x: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(x, scale, 'bicubic')`` with antialiasing, on (H, W) or (H, W, C) floats in [0, 1];
    the output is not rounded. Same numbers as basicsr's ``imresize`` (which loops over output rows in
    Python) as two matrix products, which makes BSD100 x4 take a second instead of ten. The matrices are the
    ones the SR training degradation uses (``sr.degrade``), so training and evaluation shrink images alike."""
    from sr.degrade import bicubic_matrix

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    planes = t[None] if t.ndim == 2 else t.permute(2, 0, 1)  # (C, H, W)
    (h, w), (out_h, out_w) = planes.shape[1:], _out_size(planes.shape[1:], scale)
    rows = bicubic_matrix(h, out_h, scale)  # (H', H) float64
    cols = bicubic_matrix(w, out_w, scale)  # (W', W)
    out = rows @ planes @ cols.T  # (C, H', W')
    out = out[0] if t.ndim == 2 else out.permute(1, 2, 0)
    return out.float().numpy()


def _out_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """MATLAB's output size: each side times the scale, rounded up."""
    return math.ceil(size[0] * scale), math.ceil(size[1] * scale)


def downscale_rgb(hr: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H / scale, W / scale, 3) uint8: the standard SR benchmark's LR image."""
    return to_uint8(matlab_resize(hr / 255.0, 1 / scale))


def downscale_gray(hr: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 color -> (H / scale, W / scale) float32 gray: the luminance shrunk, then stored as
    8 bits, as an old gray photograph scanned small would be."""
    return stored_8bit(matlab_resize(luma(hr), 1 / scale))


def realistic_lr(hr: np.ndarray, scale: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H / scale, W / scale) float32 gray: the luminance through the realistic training
    degradation at its default ranges, on the CPU (so the same seed gives the same LR on every machine)."""
    from sr.degradations import Degradation, realistic_downscale

    gray = torch.from_numpy(luma(hr))[None, None]
    return realistic_downscale(gray, scale, Degradation(kind="realistic"), seed)[0, 0].numpy()


def bicubic_up(gray: np.ndarray, scale: int) -> np.ndarray:
    """(h, w) gray float -> (h * scale, w * scale) float in [0, 1]: the bicubic baseline."""
    return np.clip(matlab_resize(gray, scale), 0, 1)


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, bicubic with antialiasing: the colorization papers' 256 x 256
    evaluation images (aspect ratio not kept, as their data loaders do)."""
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))
