"""Tiled inference: run a network over overlapping windows and blend them, so that memory depends on the tile
size and not on the image size, and the seams do not show.

Windows overlap by ``overlap`` input pixels. Inside each overlap the outer quarter of a window gets weight 0
(it is context only: pixels near a window's edge see zero padding instead of their neighbours), the middle half
ramps linearly to 1, so the two windows' weights sum to one everywhere. Weights are separable (rows x columns),
which keeps them normalised without a second full-size accumulator.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cascade.defaults import TILE, TILE_OVERLAP

Fn = Callable[[torch.Tensor], torch.Tensor]  # (N, C, h, w) -> (N, C', h * scale, w * scale)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of windows of size ``tile`` covering ``length`` with overlaps of at least ``overlap``."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (n - 1)
    return [round(i * step) for i in range(n)]


def window_size(length: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The smallest window (at most ``tile``, rounded up to ``multiple``) that covers ``length`` with as few
    windows as ``tile`` itself would. Without this, 512 pixels in windows of 256 overlapping by 16 take three
    windows of 256 per axis, 2.25 times the work of the whole image; three windows of 182 take 1.14 times."""
    if length <= tile:
        return length
    n = math.ceil((length - overlap) / (tile - overlap))
    size = max(math.ceil((length + (n - 1) * overlap) / n), 2 * overlap)  # room for both blending ramps
    return min(tile, -(-size // multiple) * multiple)


def axis_weights(starts: list[int], tile: int, length: int) -> list[torch.Tensor]:
    """One 1-D blending weight per window along an axis; at every position the weights sum to 1."""
    raw = []
    for i, s in enumerate(starts):
        w = torch.ones(tile)
        if i > 0:
            w[: starts[i - 1] + tile - s] = _ramp(starts[i - 1] + tile - s)
        if i < len(starts) - 1:
            ov = s + tile - starts[i + 1]
            w[tile - ov :] = torch.minimum(w[tile - ov :], _ramp(ov).flip(0))
        raw.append(w)
    total = torch.zeros(length)
    for s, w in zip(starts, raw):
        total[s : s + tile] += w
    return [w / total[s : s + tile] for s, w in zip(starts, raw)]


def _ramp(n: int) -> torch.Tensor:
    """0 over the first quarter, linear to 1 over the middle half, 1 over the last quarter (never all zero)."""
    t = (torch.arange(n) + 0.5) / n
    return ((t - 0.25) / 0.5).clamp(0, 1).clamp_min(1e-3)


def run_padded(fn: Fn, x: torch.Tensor, scale: int, multiple: int) -> torch.Tensor:
    """Run ``fn`` on ``x`` padded (edge-replicated) up to a multiple of ``multiple``, then crop the result."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    y = fn(x)
    return y[..., : h * scale, : w * scale]


def tiled_apply(
    fn: Fn,
    x: torch.Tensor,
    scale: int = 1,
    tile: int | None = TILE,
    overlap: int = TILE_OVERLAP,
    batch_size: int = 1,
    multiple: int = 1,
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` (B, C, H, W) window by window; returns (B, C', H * scale, W * scale) float32 on
    ``x``'s device. ``tile=None`` runs whole images. Windows of all images are batched ``batch_size`` at a time."""
    B, _, H, W = x.shape
    if tile is None or (H <= tile and W <= tile):
        parts = [run_padded(fn, x[i : i + batch_size], scale, multiple) for i in range(0, B, batch_size)]
        return torch.cat([p.float().to(x.device) for p in parts])
    if overlap * 2 > tile:
        raise ValueError(f"tile overlap {overlap} must be at most half the tile size {tile}")
    th, tw = window_size(H, tile, overlap, multiple), window_size(W, tile, overlap, multiple)
    ys, xs = tile_starts(H, th, overlap), tile_starts(W, tw, overlap)
    wy = axis_weights([s * scale for s in ys], th * scale, H * scale)
    wx = axis_weights([s * scale for s in xs], tw * scale, W * scale)
    windows = [(b, i, j) for b in range(B) for i in range(len(ys)) for j in range(len(xs))]
    out = None
    for k in range(0, len(windows), batch_size):
        chunk = windows[k : k + batch_size]
        inp = torch.stack([x[b, :, ys[i] : ys[i] + th, xs[j] : xs[j] + tw] for b, i, j in chunk])
        res = run_padded(fn, inp, scale, multiple).float().to(x.device)
        if out is None:
            out = torch.zeros(B, res.shape[1], H * scale, W * scale, device=x.device)
        for r, (b, i, j) in zip(res, chunk):
            y0, x0 = ys[i] * scale, xs[j] * scale
            weight = wy[i].to(x.device)[:, None] * wx[j].to(x.device)[None, :]
            out[b, :, y0 : y0 + th * scale, x0 : x0 + tw * scale] += r * weight
    return out
