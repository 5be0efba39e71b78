"""The SR degradation: MATLAB-style bicubic downscaling, batched, on any device.

``basicsr.utils.matlab_functions.imresize`` is the reference (the published x4 tables were made with MATLAB's
``imresize``), but it loops over output rows in Python, one image at a time: far too slow to make LR patches on
the fly. Its weights and symmetric padding are linear in the input, so each axis is one (out, in) matrix built
from basicsr's own ``calculate_weights_indices``; a batch is then two matrix products.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=32)
def bicubic_matrix(in_len: int, out_len: int, scale: float) -> torch.Tensor:
    """(out_len, in_len) float64 matrix doing along one axis what basicsr's ``imresize`` does (antialiased)."""
    from basicsr.utils.matlab_functions import calculate_weights_indices

    weights, indices, sym_start, _ = calculate_weights_indices(in_len, out_len, scale, "cubic", 4, True)
    # basicsr reads from the input mirrored at both ends: padded index p holds input index src(p).
    padded = indices.long()
    src = padded - sym_start
    src = torch.where(src < 0, -src - 1, src)  # mirror at the start (edge pixel repeated)
    src = torch.where(src >= in_len, 2 * in_len - 1 - src, src)  # mirror at the end
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64)
    matrix.scatter_add_(1, src, weights.double())
    return matrix


def matlab_downscale(x: torch.Tensor, scale: int, quantize: bool = True) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B, C, H / scale, W / scale), as MATLAB's ``imresize(x, 1 / scale)``.

    ``quantize`` rounds to 8-bit levels, as an LR image saved to disk is, so that training sees what inference
    will. H and W must be multiples of ``scale``.
    """
    H, W = x.shape[-2:]
    if H % scale or W % scale:
        raise ValueError(f"image size {H}x{W} is not a multiple of the scale {scale}")
    rows = bicubic_matrix(H, H // scale, 1 / scale).to(x.device, torch.float32)  # (h, H)
    cols = bicubic_matrix(W, W // scale, 1 / scale).to(x.device, torch.float32)  # (w, W)
    out = rows @ x.float() @ cols.T
    out = out.clamp(0, 1)
    if quantize:
        out = (out * 255).round() / 255
    return out.to(x.dtype)
