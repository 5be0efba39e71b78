"""Reading photographs of any kind as gray luminance, and writing results without ever leaving half a file.

Inputs in the wild come as 8- and 16-bit gray, palette, gray+alpha, RGB(A), CMYK, with EXIF rotations, or not
as images at all. Everything is reduced here to one float luminance plane in [0, 1] (and an alpha plane when
there is one), with a note when something was changed that the user should know about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cascade.atomic import atomic_path

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's decompression-bomb threshold
_RGB_TO_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's convert("L")
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_WITH_ALPHA = {"LA", "La", "PA", "RGBA", "RGBa"}


class ImageError(Exception):
    """An input that cannot be used; ``str(e)`` is one line naming the file and the reason."""


@dataclass
class GrayImage:
    luma: np.ndarray  # (H, W) float32 in [0, 1]
    alpha: np.ndarray | None = None  # (H, W) float32 in [0, 1]
    notes: list[str] = field(default_factory=list)  # things the user should hear about (color input, ...)

    @property
    def size(self) -> tuple[int, int]:
        return self.luma.shape[1], self.luma.shape[0]  # (W, H), as PIL


def read_gray(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> GrayImage:
    """Decode ``path`` (any Pillow format) into luminance; raise ImageError with a one-line reason."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file")
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(_too_large(path, w, h, max_pixels))
            img.load()
            return pil_to_gray(img)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (no Pillow decoder recognises it)") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, bad chunks, broken headers
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from None


def _too_large(path: Path, w: int, h: int, max_pixels: int) -> str:
    return (
        f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the {max_pixels / 1e6:.0f} MP limit "
        "that guards against decompression bombs (raise it with --max-megapixels if the image is genuine)"
    )


def pil_to_gray(img: Image.Image) -> GrayImage:
    """Any PIL image -> luminance in [0, 1] (+ alpha), with EXIF orientation applied."""
    img = ImageOps.exif_transpose(img)
    notes = []
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    alpha = None
    if img.mode in _WITH_ALPHA:
        alpha = np.asarray(img.getchannel("A"), np.float32) / 255
    if img.mode in _SIXTEEN_BIT:
        luma = _high_bit_depth(np.asarray(img))
    elif img.mode in ("L", "LA", "La", "1"):
        luma = np.asarray(img.convert("L"), np.float32) / 255
    else:  # RGB, RGBA, CMYK, YCbCr, LAB, HSV...
        rgb = np.asarray(img.convert("RGB"), np.float32)
        luma = rgb @ _RGB_TO_LUMA / 255
        if np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() > 2:  # JPEG noise aside, the channels differ
            notes.append(
                f"color input ({img.mode}) converted to luminance: the model expects gray photographs"
            )
    return GrayImage(np.clip(luma, 0, 1).astype(np.float32), alpha, notes)


def _high_bit_depth(arr: np.ndarray) -> np.ndarray:
    """16-bit (or 32-bit int / float) gray -> [0, 1]; 'I' and 'F' carry no range, so guess it from the values."""
    arr = arr.astype(np.float32)
    peak = float(arr.max()) if arr.size else 0.0
    if peak <= 1.0:
        return arr
    return arr / (255.0 if peak <= 255 else 65535.0)


def array_to_gray(arr: np.ndarray) -> GrayImage:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) arrays; uint8, uint16, or float in [0, 1]."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected an (H, W) gray or (H, W, 3|4) color array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535
    else:
        arr = arr.astype(np.float32)
    notes, alpha = [], None
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr, alpha = arr[..., :3], arr[..., 3]
        if np.abs(arr - arr.mean(axis=2, keepdims=True)).max() > 2 / 255:
            notes.append("color input converted to luminance: the model expects gray photographs")
        arr = arr @ _RGB_TO_LUMA
    return GrayImage(np.clip(arr, 0, 1), alpha, notes)


def write_image(img: Image.Image, path: str | Path, fmt: str, quality: int = 95) -> list[str]:
    """Write ``img`` to ``path`` through a temporary file, so a killed run never leaves a truncated image under
    the final name. Returns notes for the user (e.g. alpha dropped)."""
    notes = []
    if fmt == "jpg" and img.mode == "RGBA":
        img = img.convert("RGB")
        notes.append("jpg has no alpha channel: transparency dropped (use --format png or webp to keep it)")
    options = {"quality": quality} if fmt in ("jpg", "webp") else {}
    with atomic_path(path) as tmp:
        img.save(tmp, format=FORMATS[fmt], **options)
    return notes
