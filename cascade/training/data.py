"""Training images: decoded once into memory (or from a pack), then cropped and augmented on the device.

A training step never touches a file: every image is decoded when the run starts and kept as a uint8 tensor
on the training device, so crops, flips, the SR degradation and the Lab conversion are a few batched kernels.
A *pack* is the same set of decoded-and-prepared images in one safetensors file (PNG or JPEG encoded inside),
small enough to carry to a GPU machine, and quick to load there.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torchvision.transforms.v2.functional import resized_crop

from cascade.atomic import atomic_path
from cascade.config import ConfigError
from cascade.imageio import is_gray, open_image
from cascade.listing import find_inputs
from cascade.models import STAGES

PACK_FORMAT = "cascade-pack/1"
PACK_SUFFIX = ".pack"


@dataclass
class ImageSet:
    """Decoded training images, each (C, H, W) uint8, with where they came from."""

    images: list[torch.Tensor]
    names: list[str]


def prepare(img: Image.Image, mode: str, short_side: int | None, upscale: bool = True) -> np.ndarray | None:
    """EXIF-rotate, convert and resize one image; (H, W, C) uint8, or None for a gray photo in RGB mode
    (a colorizer learns nothing from it but to leave things gray)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = Image.fromarray((np.asarray(img, np.float32) / 257).round().astype(np.uint8))
    img = img.convert(mode)
    if short_side is not None and (upscale or min(img.size) > short_side):
        f = short_side / min(img.size)
        size = (max(short_side, round(img.width * f)), max(short_side, round(img.height * f)))
        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if mode == "RGB" and is_gray(arr):
        return None
    return arr


def _decode(source: Path | bytes, mode: str, short_side: int | None, upscale: bool) -> np.ndarray | str:
    """An image prepared for training, or the reason it cannot be used."""
    try:
        with open_image(source) as img:
            arr = prepare(img, mode, short_side, upscale)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        return f"not a readable image ({type(e).__name__})"
    return "a gray photograph (no colors to learn)" if arr is None else arr


def _decode_all(
    sources: Sequence[Path | bytes],
    names: list[str],
    mode: str,
    short_side: int | None,
    workers: int,
    upscale: bool,
) -> tuple[list[np.ndarray], list[str], list[str]]:
    with ThreadPoolExecutor(max(1, workers)) as pool:  # Pillow decodes without holding the GIL
        results = list(pool.map(lambda s: _decode(s, mode, short_side, upscale), sources))
    arrays, kept, skipped = [], [], []
    for name, result in zip(names, results):
        if isinstance(result, str):
            skipped.append(f"{name}: {result}")
        else:
            arrays.append(result)
            kept.append(name)
    return arrays, kept, skipped


def _warn_skipped(skipped: list[str], where: str) -> None:
    if skipped:
        shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(f"{where}: skipped {len(skipped)} file(s): {shown}", stacklevel=3)


def list_images(folders: Sequence[Path]) -> list[Path]:
    """Image files under each folder, recursively (hidden files left out), sorted for a stable split."""
    found = []
    for folder in folders:
        if not folder.exists():
            raise ConfigError(f"{folder}: no such folder")
        found += find_inputs(folder, None, recursive=True).images
    return found


def load_images(
    sources: Sequence[str | Path], stage: str, short_side: int | None, workers: int = 4
) -> ImageSet:
    """Images for ``stage`` from folders (decoded now) or from one pack (checked against the recipe)."""
    paths = [Path(s).expanduser() for s in sources]
    mode = STAGES[stage].image_mode
    if len(paths) == 1 and paths[0].is_file():
        return _load_pack(paths[0], mode, short_side, workers)
    files = list_images(paths)
    names = [str(f) for f in files]
    arrays, kept, skipped = _decode_all(files, names, mode, short_side, workers, upscale=True)
    _warn_skipped(skipped, ", ".join(map(str, paths)))
    if not arrays:
        raise ConfigError(f"{', '.join(map(str, paths))}: no usable training images")
    return ImageSet([_to_tensor(a) for a in arrays], kept)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).contiguous()  # (C, H, W) uint8


def write_pack(
    sources: Sequence[str | Path],
    out: str | Path,
    stage: str,
    short_side: int | None,
    codec: str = "png",
    quality: int = 95,
    workers: int = 4,
) -> dict:
    """Pack the images of folders for ``stage`` into one file; returns a summary (count, bytes, skipped).

    Images are brought down to ``short_side`` (never up: that happens when the pack is loaded, so small images
    stay small on disk) and re-encoded with ``codec``: png is lossless (SR targets must be), jpeg is smaller.
    """
    paths = [Path(s).expanduser() for s in sources]
    mode = STAGES[stage].image_mode
    files = list_images(paths)
    arrays, kept, skipped = _decode_all(files, [str(f) for f in files], mode, short_side, workers, False)
    _warn_skipped(skipped, ", ".join(map(str, paths)))
    if not arrays:
        raise ConfigError(f"{', '.join(map(str, paths))}: no usable training images")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        blobs = list(pool.map(lambda a: _encode(a, codec, quality), arrays))
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    tensors = {
        "bytes": torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8),
        "offsets": torch.from_numpy(offsets.astype(np.int64)),
    }
    meta = {"format": PACK_FORMAT, "mode": mode, "short_side": short_side, "codec": codec}
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file(tensors, tmp, metadata={"meta": json.dumps(meta), "names": json.dumps(kept)})
    return {"images": len(kept), "bytes": out.stat().st_size, "skipped": skipped}


def _encode(arr: np.ndarray, codec: str, quality: int) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    if codec == "png":
        img.save(buf, "PNG", compress_level=6)
    elif codec == "jpeg":
        img.save(buf, "JPEG", quality=quality, subsampling=0)
    else:
        raise ValueError(f"unknown codec {codec!r}; choose png or jpeg")
    return buf.getvalue()


def _load_pack(path: Path, mode: str, short_side: int | None, workers: int) -> ImageSet:
    try:
        tensors = load_file(path)
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            header = f.metadata() or {}
        meta = json.loads(header["meta"])
        names = json.loads(header["names"])
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise ConfigError(f"{path}: not a cascade training pack ({type(e).__name__})") from None
    if meta.get("format") != PACK_FORMAT:
        raise ConfigError(f"{path}: pack format {meta.get('format')!r}, this cascade reads {PACK_FORMAT!r}")
    if meta["mode"] != mode:
        raise ConfigError(f"{path}: packed as {meta['mode']} images, this stage trains on {mode}")
    packed_side = meta["short_side"]
    if packed_side is not None and (short_side is None or short_side > packed_side):
        raise ConfigError(
            f"{path}: images were packed at short side {packed_side} px, the recipe wants "
            f"{short_side or 'full-size'} images; pack again with the recipe's data.short_side"
        )
    data, offsets = tensors["bytes"].numpy(), tensors["offsets"].tolist()
    blobs = [data[a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]
    arrays, kept, skipped = _decode_all(blobs, names, mode, short_side, workers, upscale=True)
    _warn_skipped(skipped, str(path))
    return ImageSet([_to_tensor(a) for a in arrays], kept)


def split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A fixed random (train, val) split of ``n`` images."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return sorted(order[n_val:]), sorted(order[:n_val])


def image_weights(names: Sequence[str], set_weights: dict[str, float]) -> list[float] | None:
    """Each image's sampling weight: that of the first key of ``set_weights`` its name contains (1 if none),
    or None when every weight is 1 (uniform sampling)."""
    if not set_weights:
        return None
    return [next((w for key, w in set_weights.items() if key in name), 1.0) for name in names]


class CropSampler:
    """Random square crops from in-memory images; all randomness from one CPU generator, so a checkpoint
    that saves its state resumes the exact same sequence. With ``weights``, an image is picked in proportion
    to its weight (a mix of sets rebalanced without repacking), else uniformly."""

    def __init__(
        self,
        images: list[torch.Tensor],
        crop: int,
        seed: int,
        weights: Sequence[float] | None = None,
        zoom: tuple[float, float] | None = None,
    ):
        self.images = images
        self.crop = crop
        self.zoom = zoom
        self.generator = torch.Generator().manual_seed(seed)
        self.weights = None if weights is None else torch.tensor(weights, dtype=torch.float64)

    def _picks(self, n: int) -> list[int]:
        if self.weights is None:
            return torch.randint(len(self.images), (n,), generator=self.generator).tolist()
        return torch.multinomial(self.weights, n, replacement=True, generator=self.generator).tolist()

    def sample(self, n: int) -> torch.Tensor:
        """(n, C, crop, crop) uint8 on the images' device. With ``zoom`` (lo, hi), each crop is cut as a square
        of ``crop * z`` px, z uniform in [lo, hi] (at most the image's short side), and resized to ``crop``: the
        same photo at other scales and framings, so that a network cannot learn a photo by its one framing."""
        picks = self._picks(n)
        where = torch.rand(n, 2, generator=self.generator).tolist()
        sides = [self.crop] * n
        if self.zoom is not None:
            lo, hi = self.zoom
            sides = [
                round(self.crop * (lo + (hi - lo) * z))
                for z in torch.rand(n, generator=self.generator).tolist()
            ]
        crops = []
        for i, (fy, fx), c in zip(picks, where, sides):
            img = self.images[i]
            c = min(c, *img.shape[1:])
            y = int(fy * (img.shape[1] - c + 1))
            x = int(fx * (img.shape[2] - c + 1))
            crops.append(resized_crop(img, y, x, c, c, [self.crop], antialias=True))
        return torch.stack(crops)

    def augment(self, x: torch.Tensor, flips: bool, rotations: bool) -> torch.Tensor:
        """Random horizontal flips, and with ``rotations`` the rest of the 8 square symmetries, per sample."""
        flags = (torch.rand(x.shape[0], 3, generator=self.generator) < 0.5).to(x.device)[
            :, :, None, None, None
        ]
        if flips:
            x = torch.where(flags[:, 0], x.flip(-1), x)
        if rotations:
            x = torch.where(flags[:, 1], x.flip(-2), x)
            x = torch.where(flags[:, 2], x.transpose(-1, -2), x)
        return x


def center_crops(images: list[torch.Tensor], size: int, limit: int) -> torch.Tensor:
    """(N, C, size, size) center crops of the first ``limit`` images at least ``size`` px on each side."""
    crops = []
    for img in images:
        H, W = img.shape[1:]
        if min(H, W) >= size:
            y, x = (H - size) // 2, (W - size) // 2
            crops.append(img[:, y : y + size, x : x + size])
        if len(crops) == limit:
            break
    if not crops:
        raise ConfigError(f"no validation image is at least {size} px on each side: lower data.val_crop")
    return torch.stack(crops)
