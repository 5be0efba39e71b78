"""Reading photographs of any kind as gray luminance, and writing results without ever leaving half a file.

Inputs in the wild come as 8- and 16-bit gray, palette, gray+alpha, RGB(A), CMYK, with EXIF rotations, or not
as images at all. Everything is reduced here to one float luminance plane in [0, 1] (and an alpha plane when
there is one), with a note when something was changed that the user should know about. What cannot be used is
refused with one line naming the file and the reason, never guessed at.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cascade.atomic import atomic_path

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
GRAY_TOLERANCE = 2  # 8-bit levels a gray picture's channels may stray from their mean (JPEG noise)
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's decompression-bomb threshold
# The decoders cascade lets Pillow use: raster formats of photographs and scans. Left out on purpose: EPS and
# PostScript (Pillow hands them to Ghostscript, which runs the file as a program, with no time limit), PDF, and
# the rare scientific and legacy formats, whose decoders see little use and little scrutiny.
# (JPEG includes the multi-picture MPO files of cameras; AVIF is there when Pillow was built with it.)
Image.init()
READ_FORMATS = tuple(
    fmt
    for fmt in (
        "PNG",
        "JPEG",
        "TIFF",
        "BMP",
        "DIB",
        "WEBP",
        "GIF",
        "JPEG2000",
        "PPM",
        "TGA",
        "PCX",
        "SGI",
        "AVIF",
    )
    if fmt in Image.OPEN
)
IMAGE_SUFFIXES = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in READ_FORMATS)
# Suffixes of formats Pillow knows but cascade does not read: listed as inputs, so that they are reported as
# refused (with the reason) instead of silently ignored as "not an image".
REFUSED_SUFFIXES = frozenset(Image.registered_extensions()) - IMAGE_SUFFIXES
_RGB_TO_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's convert("L")
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_WITH_ALPHA = {"LA", "La", "PA", "RGBA", "RGBa"}
_FLOAT_SLACK = 1e-3  # float arrays may overshoot [0, 1] by rounding this much; more is a wrong range
# catch_warnings and Pillow's pixel limit are process-wide state: one decoder thread at a time changes them, so
# that each warning names its own file
_DECODE_LOCK = threading.RLock()


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


def open_image(source: str | Path | bytes) -> Image.Image:
    """``Image.open`` restricted to ``READ_FORMATS``: a file of any other kind is not decoded at all."""
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=READ_FORMATS)


def read_gray(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> GrayImage:
    """Decode ``path`` (a format of ``READ_FORMATS``) into luminance; raise ImageError with a one-line reason."""
    path = Path(path)
    _check_regular_file(path)
    return _decode_gray(path, path, max_pixels)


def decode_gray(data: bytes, name: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> GrayImage:
    """``read_gray`` for a file's bytes, read elsewhere (a Ray worker); ``name`` is the file, for messages."""
    if not data:
        raise ImageError(f"{name}: empty file")
    return _decode_gray(data, Path(name), max_pixels)


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes, after the checks ``read_gray`` makes (a FIFO or a device is refused, not read)."""
    path = Path(path)
    _check_regular_file(path)
    try:
        return path.read_bytes()
    except PermissionError:
        raise ImageError(f"{path}: cannot read it (permission denied)") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot be read ({e.strerror or e})") from None


def _decode_gray(source: Path | bytes, path: Path, max_pixels: int) -> GrayImage:
    try:
        with _without_pillow_pixel_limit(), _warnings_as_notes() as warned, open_image(source) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(_too_large(path, w, h, max_pixels))
            img.load()
            gray = pil_to_gray(img)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        if path.suffix.lower() in REFUSED_SUFFIXES:
            raise ImageError(f"{path}: {_refused_format(path)}") from None
        raise ImageError(f"{path}: not an image (no decoder cascade reads recognises it)") from None
    except PermissionError:
        raise ImageError(f"{path}: cannot read it (permission denied)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated data, bad chunks, broken headers
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from None
    gray.notes += [f"the decoder warned: {text}" for text in warned]
    return gray


def _refused_format(path: Path) -> str:
    fmt = Image.registered_extensions()[path.suffix.lower()]
    if fmt == "EPS":
        return (
            "EPS/PostScript is not read: it is a program, and decoding it would run Ghostscript on it; "
            "convert it to PNG or TIFF"
        )
    return f"{fmt} files are not read; convert it to PNG, TIFF or JPEG"


def _check_regular_file(path: Path) -> None:
    """Refuse what is not a regular file before opening it: opening a FIFO or a device can block forever."""
    try:
        st = path.stat()
    except FileNotFoundError:
        reason = "a symbolic link to nothing (its target is missing)" if path.is_symlink() else "no such file"
        raise ImageError(f"{path}: {reason}") from None
    except PermissionError:
        raise ImageError(f"{path}: cannot read it (permission denied)") from None
    except OSError as e:  # ELOOP and friends
        raise ImageError(f"{path}: cannot be opened ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{path}: a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise ImageError(f"{path}: {kind}, not a regular file")
    if st.st_size == 0:
        raise ImageError(f"{path}: empty file")


@contextlib.contextmanager
def _without_pillow_pixel_limit() -> Iterator[None]:
    """Pillow refuses images over twice its own threshold whatever the caller allows; lift that while a file is
    opened, so that cascade's own limit (``max_pixels``, checked as soon as the header is read) decides."""
    with _DECODE_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def _warnings_as_notes() -> Iterator[list[str]]:
    """Collect the warnings a decoder emits (Pillow's "Corrupt EXIF data", ...) so they reach the user as
    notes naming the file, instead of bare lines on stderr."""
    texts: list[str] = []
    with _DECODE_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        try:
            yield texts
        finally:
            texts += sorted({" ".join(str(w.message).split()) for w in caught})


def _too_large(path: Path, w: int, h: int, max_pixels: int) -> str:
    return (
        f"{path}: {w}x{h} is {w * h / 1e6:.3g} megapixels, over the {max_pixels / 1e6:.3g} MP limit "
        "that guards against decompression bombs (raise it with --max-megapixels if the image is genuine)"
    )


def is_gray(rgb: np.ndarray, peak: float = 255) -> bool:
    """Whether an (H, W, 3) picture with values in [0, ``peak``] has no color: every channel within
    ``GRAY_TOLERANCE`` 8-bit levels of the pixel's mean (JPEG noise aside)."""
    rgb = np.asarray(rgb, np.float32)
    return float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max()) <= GRAY_TOLERANCE * peak / 255


def pil_to_gray(img: Image.Image) -> GrayImage:
    """Any PIL image -> luminance in [0, 1] (+ alpha), with EXIF orientation applied."""
    if img.width == 0 or img.height == 0:
        raise ValueError(f"an empty image ({img.width}x{img.height} pixels)")
    img = ImageOps.exif_transpose(img)
    notes = []
    if "transparency" in img.info and img.mode in ("P", "L", "RGB"):  # a tRNS chunk: transparency by value
        img = img.convert("LA" if img.mode == "L" else "RGBA")
    elif img.mode == "P":
        img = img.convert("RGB")
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
        if not is_gray(rgb):
            notes.append(
                f"color input ({img.mode}) converted to luminance: the model expects gray photographs"
            )
    return GrayImage(np.clip(luma, 0, 1).astype(np.float32), alpha, notes)


def _high_bit_depth(arr: np.ndarray) -> np.ndarray:
    """16-bit (or 32-bit int / float) gray -> [0, 1]; 'I' and 'F' carry no range, so guess it from the values:
    up to 1 (floats), up to 255 (8-bit values), else 16 bits. NaN or infinite values are refused."""
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("it holds NaN or infinite pixel values")
    peak = float(arr.max())
    if peak <= 1.0:
        return arr
    return arr / (255.0 if peak <= 255 else 65535.0)


def array_to_gray(arr: np.ndarray, *, channels_last: bool = True) -> GrayImage:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) arrays: uint8 (0-255), uint16 (0-65535), other integers in
    0-255, bool, or floats in [0, 1]. Anything else is a ValueError or TypeError that says what was expected;
    ``channels_last=False`` skips the check for channel-first look-alikes (the caller has transposed)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected an (H, W) gray or (H, W, 3|4) color array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"an empty image (array of shape {arr.shape})")
    if channels_last and arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
        raise ValueError(
            f"array of shape {arr.shape} could be channels-first (C, H, W); numpy images are (H, W, C): "
            "transpose it (arr.transpose(1, 2, 0)), or pass a PIL image or a (C, H, W) torch tensor"
        )
    arr = _to_unit_range(arr)
    notes, alpha = [], None
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr, alpha = arr[..., :3], arr[..., 3]
        if not is_gray(arr, peak=1):
            notes.append("color input converted to luminance: the model expects gray photographs")
        arr = arr @ _RGB_TO_LUMA
    return GrayImage(np.clip(arr, 0, 1).astype(np.float32), alpha, notes)


def _to_unit_range(arr: np.ndarray) -> np.ndarray:
    """Pixel values as float32 in [0, 1], by the rules of ``array_to_gray``."""
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535
    if kind == "b":
        return arr.astype(np.float32)
    if kind in "iu":  # NumPy's default integer (int64) holding 8-bit values, as np.array(list) makes it
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{arr.dtype} array with values from {low} to {high}: give uint8 (0-255), uint16 (0-65535) "
                "or floats in [0, 1]; other integer arrays must hold values in 0-255"
            )
        return arr.astype(np.float32) / 255
    if kind != "f":
        raise TypeError(f"cannot read an array of {arr.dtype} as an image; give integers or floats in [0, 1]")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("the array holds NaN or infinite values")
    low, high = float(arr.min()), float(arr.max())
    if low < -_FLOAT_SLACK or high > 1 + _FLOAT_SLACK:
        hint = " (divide by 255 for 8-bit values)" if high <= 255 else ""
        raise ValueError(f"float arrays must hold values in [0, 1]; this one spans {low:g} to {high:g}{hint}")
    return arr


def check_scale(scale: object) -> float | None:
    """An output scale as the Pipeline takes it: None (the model's), or a finite number above 0."""
    if scale is None:
        return None
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"scale must be a number, not {type(scale).__name__} {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number above 0, not {scale}")
    return float(scale)


def write_image(
    img: Image.Image, path: str | Path, fmt: str, quality: int = 95, overwrite: bool = True
) -> list[str]:
    """Write ``img`` to ``path`` through a temporary file, so a killed run never leaves a truncated image under
    the final name; with ``overwrite=False`` an existing ``path`` (even one written a moment ago by another run)
    raises FileExistsError and is left alone. Returns notes for the user (e.g. alpha dropped)."""
    notes = []
    if fmt == "jpg" and img.mode == "RGBA":
        img = img.convert("RGB")
        notes.append("jpg has no alpha channel: transparency dropped (use --format png or webp to keep it)")
    options = {"quality": quality} if fmt in ("jpg", "webp") else {}
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format=FORMATS[fmt], **options)
    return notes


def is_writable_folder(folder: Path) -> str | None:
    """None if files can be created in ``folder`` (made if missing), else the reason they cannot."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return "it exists and is not a folder"
    except OSError as e:
        return e.strerror or str(e)
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    return None
