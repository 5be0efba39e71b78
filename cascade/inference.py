"""The two stages as pure functions on tensors: ``upscale`` (gray -> larger gray), ``predict_chroma`` (gray ->
a*b* at the render size) and ``join_chroma`` (full-size gray + chroma -> RGB). The Pipeline composes them; none
keeps state."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cascade.defaults import COLOR_TILE, LEVELS_CLIP, LEVELS_MAX_GAIN, RENDER_SIZE, TILE, TILE_OVERLAP
from cascade.tiling import tiled_apply
from color.lab import AB_SCALE, L_SCALE, L_SHIFT, gray_to_lightness, lab_to_rgb

CPU = torch.device("cpu")
JOIN_ROWS = 256  # full-resolution rows converted Lab -> RGB at a time, to bound memory on huge outputs


def _runner(model: nn.Module, device: torch.device, dtype: torch.dtype):
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x.to(device=device, dtype=dtype, memory_format=torch.channels_last))

    return run


def upscale(
    gray: torch.Tensor,
    model: nn.Module,
    scale: int,
    *,
    tile: int | None = TILE,
    overlap: int = TILE_OVERLAP,
    batch_size: int = 1,
    device: torch.device = CPU,
    dtype: torch.dtype = torch.float32,
    ensemble: bool = False,
) -> torch.Tensor:
    """(B, 1, H, W) gray in [0, 1] -> (B, 1, H * scale, W * scale) float32 in [0, 1], on ``gray``'s device;
    tiles are padded to the model's ``size_multiple``. ``ensemble`` averages the outputs of the 8 flips and
    rotations of the input, each undone (EDSR's self-ensemble): 8x the work, usually a little sharper."""
    multiple = getattr(model, "size_multiple", 1)
    if tile is not None:
        tile = max(multiple, tile // multiple * multiple)
    run = _runner(model, device, dtype)
    if not ensemble:
        return tiled_apply(run, gray, scale, tile, overlap, batch_size, multiple).clamp_(0, 1)
    out = None
    for k in range(4):
        for flip in (False, True):
            x = torch.rot90(gray.flip(-1) if flip else gray, k, dims=(-2, -1))
            y = torch.rot90(
                tiled_apply(run, x, scale, tile, overlap, batch_size, multiple), -k, dims=(-2, -1)
            )
            y = y.flip(-1) if flip else y
            out = y if out is None else out.add_(y)
    return out.div_(8).clamp_(0, 1)


def render_shape(h: int, w: int, render_size: int | None) -> tuple[int, int]:
    """The size the colorizer sees: the short side brought down to ``render_size`` (never up)."""
    if render_size is None or min(h, w) <= render_size:
        return h, w
    f = render_size / min(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def stretch_levels(
    gray: torch.Tensor, clip: float = LEVELS_CLIP, max_gain: float = LEVELS_MAX_GAIN
) -> torch.Tensor:
    """(B, 1, H, W) gray in [0, 1] with each image's darkest and brightest ``clip`` fraction of pixels mapped to
    0 and 1, linearly; its contrast is raised at most ``max_gain`` times, about its middle gray (a flat image's
    noise stays noise). The whole batch at once, on its own device."""
    flat = gray.flatten(1)
    n = flat.shape[1]
    lo = flat.kthvalue(max(1, math.ceil(clip * n)), dim=1).values
    hi = flat.kthvalue(max(1, math.ceil((1 - clip) * n)), dim=1).values
    mid, span = (lo + hi) / 2, (hi - lo).clamp(min=1 / max_gain)
    return ((gray - mid[:, None, None, None]) / span[:, None, None, None] + 0.5).clamp_(0, 1)


def predict_chroma(
    gray: torch.Tensor,
    model: nn.Module,
    *,
    render_size: int | None = RENDER_SIZE,
    tile: int | None = COLOR_TILE,
    batch_size: int = 1,
    device: torch.device = CPU,
    dtype: torch.dtype = torch.float32,
    flip: bool = False,
    levels: bool = False,
) -> torch.Tensor:
    """(B, 1, H, W) gray in [0, 1] -> (B, 2, h, w) ab (Lab units) at the render size. ``flip`` averages the
    prediction with that for the mirror image, mirrored back (a colorizer's guess at an object's colour should
    not depend on which way it faces): twice the work. ``levels`` shows the colorizer each image through
    ``stretch_levels`` (a faded print as it was before it faded)."""
    h, w = render_shape(*gray.shape[-2:], render_size)
    if (h, w) != tuple(gray.shape[-2:]):
        gray = F.interpolate(gray, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    gray = stretch_levels(gray.clamp(0, 1)) if levels else gray.clamp(0, 1)
    L_norm = gray_to_lightness(gray) / L_SCALE - L_SHIFT
    multiple = getattr(model, "size_multiple", 1)
    if tile is not None:
        tile = max(multiple, tile // multiple * multiple)
    if flip:  # the mirror images join the batch: one pass, fuller batches on a GPU
        L_norm = torch.cat([L_norm, L_norm.flip(-1)])
    ab = tiled_apply(
        _runner(model, device, dtype),
        L_norm,
        1,
        tile,
        min(64, tile // 4) if tile else 0,
        batch_size,
        multiple,
    )
    if flip:
        ab, mirrored = ab.chunk(2)
        ab = (ab + mirrored.flip(-1)) / 2
    return ab * AB_SCALE


def _row_interpolation(src: int, dst: int) -> torch.Tensor:
    """(dst, src) matrix that does what bilinear F.interpolate does along one axis."""
    eye = torch.eye(src)[None, None]  # (1, 1, src, src)
    return F.interpolate(eye, size=(dst, src), mode="bilinear", align_corners=False)[0, 0]


def join_chroma(gray: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Full-resolution L from ``gray`` (B, 1, H, W) joined with low-resolution ``ab`` (B, 2, h, w), upsampled
    bilinearly, as DeOldify and DDColor do. Returns (B, H, W, 3) uint8 RGB, built ``JOIN_ROWS`` rows at a time."""
    B, _, H, W = gray.shape
    ab = ab.to(gray.device, torch.float32)
    ab_w = F.interpolate(ab, size=(ab.shape[-2], W), mode="bilinear", align_corners=False)  # (B, 2, h, W)
    rows = _row_interpolation(ab.shape[-2], H).to(gray.device)  # (H, h)
    out = torch.empty(B, H, W, 3, dtype=torch.uint8, device=gray.device)
    for r0 in range(0, H, JOIN_ROWS):
        r1 = min(H, r0 + JOIN_ROWS)
        L = gray_to_lightness(gray[:, :, r0:r1].float())
        ab_rows = torch.einsum("rh,bchw->bcrw", rows[r0:r1], ab_w)
        rgb = lab_to_rgb(torch.cat([L, ab_rows], dim=1))
        out[:, r0:r1] = (rgb * 255).round_().to(torch.uint8).permute(0, 2, 3, 1)
    return out


def gray_to_rgb8(gray: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) gray in [0, 1] -> (B, H, W, 3) uint8 RGB, for pipelines without a colorizer."""
    g = (gray[:, 0] * 255).round().to(torch.uint8)
    return g[..., None].expand(*g.shape, 3).contiguous()
