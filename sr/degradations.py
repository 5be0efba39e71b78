"""Real-ESRGAN's second-order degradation, on gray luminance: what an old print goes through before it is a small,
grainy, blurred, JPEG-compressed scan.

Two rounds of [blur -> resize -> noise -> JPEG], then the final resize to the LR size with a sinc (ringing)
filter before or after a last JPEG, as Real-ESRGAN's training does (Wang et al. 2021). The kernels and noise are
basicsr's (``basicsr.data.degradations``), the JPEG is basicsr's batched ``DiffJPEG``, everything runs batched on
the tensors' device. Every random choice comes from one integer seed per batch (drawn from the caller's generator),
so a resumed run continues the same sequence and a benchmark degrades each image the same way everywhere.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class Round:
    """One round of blur, resize, noise and JPEG; every range is (low, high), every probability in [0, 1].

    Args:
        blur_prob: chance of a blur at all.
        kernel_probs: weights of the kernel kinds, in ``KERNELS`` order (isotropic and anisotropic Gaussian,
            generalised Gaussian, plateau).
        sinc_prob: chance that the blur is a sinc (ringing and overshoot) instead.
        blur_sigma: Gaussian sigma range, in pixels.
        betag: shape of the generalised Gaussian.
        betap: shape of the plateau kernel.
        resize_probs: chances of up, down and keep.
        resize_range: scale range (down below 1, up above).
        gaussian_noise_prob: Gaussian noise, else Poisson (shot) noise.
        noise_sigma: Gaussian noise sigma, in 8-bit levels.
        poisson_scale: Poisson noise scale.
        jpeg_quality: JPEG quality range (100: no JPEG; DiffJPEG's tables vanish there, so 99 is the finest).
    """

    blur_prob: float = 1.0
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)
    betap: tuple[float, float] = (1.0, 2.0)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    jpeg_quality: tuple[float, float] = (30.0, 95.0)


SECOND_ROUND = Round(
    blur_prob=0.8,
    blur_sigma=(0.2, 1.5),
    resize_probs=(0.3, 0.4, 0.3),
    resize_range=(0.3, 1.2),
    noise_sigma=(1.0, 25.0),
    poisson_scale=(0.05, 2.5),
)


@dataclass(frozen=True)
class Degradation:
    """How training LR images are made from HR crops.

    Args:
        kind: ``bicubic`` (MATLAB bicubic, the benchmarks' degradation) or ``realistic`` (the rounds below).
        first: the first round.
        second: the second round.
        kernel_size_range: odd kernel sizes are drawn from this range (Real-ESRGAN: 7 to 21).
        final_sinc_prob: chance of a sinc filter with the final resize.
        clean_prob: chance that an image skips the rounds and gets the benchmarks' MATLAB bicubic instead: a
            share of clean inputs teaches the network that fine structure is not always noise (many scans are
            clean), so that it keeps detail where its input holds it.
    """

    kind: Literal["bicubic", "realistic"] = "bicubic"
    first: Round = Round()
    second: Round = SECOND_ROUND
    kernel_size_range: tuple[int, int] = (7, 21)
    final_sinc_prob: float = 0.8
    clean_prob: float = 0.0

    def check(self) -> list[str]:
        """What is wrong with the ranges (empty when nothing is)."""
        problems = []
        low, high = self.kernel_size_range
        if not (3 <= low <= high) or low % 2 == 0 or high % 2 == 0:
            problems.append(f"kernel_size_range {self.kernel_size_range}: odd sizes from 3, low <= high")
        for name in ("final_sinc_prob", "clean_prob"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} {getattr(self, name)} is not in [0, 1]")
        for name in ("first", "second"):
            r: Round = getattr(self, name)
            for field_name in ("blur_prob", "sinc_prob", "gaussian_noise_prob"):
                if not 0 <= getattr(r, field_name) <= 1:
                    problems.append(f"{name}.{field_name} {getattr(r, field_name)} is not in [0, 1]")
            for field_name in (
                "blur_sigma",
                "betag",
                "betap",
                "resize_range",
                "noise_sigma",
                "poisson_scale",
            ):
                lo, hi = getattr(r, field_name)
                if not 0 <= lo <= hi:
                    problems.append(f"{name}.{field_name} {(lo, hi)}: needs 0 <= low <= high")
            lo, hi = r.jpeg_quality
            if not 1 <= lo <= hi <= 100:
                problems.append(f"{name}.jpeg_quality {(lo, hi)}: needs 1 <= low <= high <= 100")
            if len(r.kernel_probs) != len(KERNELS) or min(r.kernel_probs) < 0 or sum(r.kernel_probs) <= 0:
                problems.append(f"{name}.kernel_probs: {len(KERNELS)} weights >= 0 ({', '.join(KERNELS)})")
            if len(r.resize_probs) != 3 or min(r.resize_probs) < 0 or sum(r.resize_probs) <= 0:
                problems.append(f"{name}.resize_probs: 3 weights >= 0 (up, down, keep)")
        return problems


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Python's, numpy's and torch's global generators (basicsr uses all three) seeded for one block, restored
    after it, so the degradation's draws depend on ``seed`` only and leave the caller's streams alone."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _kernel_size(size_range: tuple[int, int], side: int) -> int:
    """A random odd kernel size, small enough for the reflect padding of an image ``side`` pixels across."""
    k = random.choice(range(size_range[0], size_range[1] + 1, 2))
    return min(k, max(1, side - 1) // 2 * 2 - 1 if side > 2 else 1)


def _kernels(
    r: Round, n: int, size_range: tuple[int, int], side: int, device: torch.device
) -> torch.Tensor | None:
    """(n, k, k) blur kernels of one round, or None when this batch is not blurred."""
    from basicsr.data.degradations import circular_lowpass_kernel, random_mixed_kernels

    if random.random() >= r.blur_prob:
        return None
    k = _kernel_size(size_range, side)
    kernels = []
    for _ in range(n):
        if random.random() < r.sinc_prob:
            cutoff = np.random.uniform(np.pi / 3, np.pi) if k < 13 else np.random.uniform(np.pi / 5, np.pi)
            kernel = circular_lowpass_kernel(cutoff, k, pad_to=False)
        else:
            kernel = random_mixed_kernels(
                list(KERNELS), list(r.kernel_probs), k, r.blur_sigma, r.blur_sigma, [-math.pi, math.pi],
                r.betag, r.betap, noise_range=None,
            )  # fmt: skip
        kernels.append(torch.from_numpy(np.asarray(kernel, np.float32)))
    return torch.stack(kernels).to(device)


def _round(
    x: torch.Tensor, r: Round, size_range: tuple[int, int], base_size: tuple[int, int]
) -> torch.Tensor:
    from basicsr.data.degradations import random_add_gaussian_noise_pt, random_add_poisson_noise_pt
    from basicsr.utils.img_process_util import filter2D

    kernels = _kernels(r, x.shape[0], size_range, min(x.shape[-2:]), x.device)
    if kernels is not None:
        x = filter2D(x, kernels)
    kind = random.choices(["up", "down", "keep"], r.resize_probs)[0]
    factor = {"up": np.random.uniform(1, r.resize_range[1]), "down": np.random.uniform(r.resize_range[0], 1)}
    factor = factor.get(kind, 1.0)
    if factor != 1.0:
        size = (max(4, round(base_size[0] * factor)), max(4, round(base_size[1] * factor)))
        if x.shape[-2:] != size:
            x = _resize(x, size, random.choice(RESIZE_MODES))
    if random.random() < r.gaussian_noise_prob:
        x = random_add_gaussian_noise_pt(x, sigma_range=r.noise_sigma, clip=True, rounds=False)
    else:
        x = random_add_poisson_noise_pt(x, scale_range=r.poisson_scale, clip=True, rounds=False)
    return _jpeg(x.clamp(0, 1), r.jpeg_quality)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    antialias = {"antialias": True} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(x, size=size, mode=mode, **antialias).clamp(0, 1)


_JPEG = {}  # one DiffJPEG per device: its tables are buffers


def _jpeg(x: torch.Tensor, quality_range: tuple[float, float]) -> torch.Tensor:
    """JPEG at a random quality per image; gray goes in as three equal channels (so Cb = Cr = 0) and comes out
    as their mean."""
    from basicsr.utils.diffjpeg import DiffJPEG

    if quality_range[0] >= 100:
        return x
    if x.device not in _JPEG:
        _JPEG[x.device] = DiffJPEG(differentiable=False).to(x.device)
    quality = x.new_empty(x.shape[0]).uniform_(*quality_range).clamp_(max=99)
    out = _JPEG[x.device](x.expand(-1, 3, -1, -1).contiguous(), quality=quality)
    return out.mean(1, keepdim=True).clamp(0, 1)


def realistic_downscale(hr: torch.Tensor, scale: int, cfg: Degradation, seed: int) -> torch.Tensor:
    """(B, 1, H, W) gray HR in [0, 1] -> (B, 1, H / scale, W / scale) LR through two degradation rounds and the
    final resize (with a sinc before or after a last JPEG), or by MATLAB bicubic alone for a ``clean_prob`` share
    of the images, stored as 8-bit levels; the same ``seed`` gives the same LR on the same device."""
    H, W = hr.shape[-2:]
    if H % scale or W % scale:
        raise ValueError(f"image size {H}x{W} is not a multiple of the scale {scale}")
    x = hr.float()
    with torch.no_grad(), _seeded(seed, hr.device):
        if cfg.clean_prob == 0:  # no draw for the mask: the benchmark's fixed-seed images stay as they were
            lr = _degrade(x, scale, cfg)
        else:
            from sr.degrade import matlab_downscale

            clean = torch.rand(len(x), device=hr.device) < cfg.clean_prob  # only the others are degraded
            lr = x.new_empty(*x.shape[:2], H // scale, W // scale)
            if clean.any():
                lr[clean] = matlab_downscale(x[clean], scale)
            if not clean.all():
                lr[~clean] = _degrade(x[~clean], scale, cfg)
    return ((lr.clamp(0, 1) * 255).round() / 255).to(hr.dtype)


def _degrade(x: torch.Tensor, scale: int, cfg: Degradation) -> torch.Tensor:
    """The two rounds and the final resize, drawing from the seeded global generators."""
    from basicsr.utils.img_process_util import filter2D

    H, W = x.shape[-2:]
    target = (H // scale, W // scale)
    x = _round(x, cfg.first, cfg.kernel_size_range, (H, W))
    x = _round(x, cfg.second, cfg.kernel_size_range, target)
    sinc = None
    if random.random() < cfg.final_sinc_prob:
        k = _kernel_size(cfg.kernel_size_range, min(target))
        from basicsr.data.degradations import circular_lowpass_kernel

        kernel = circular_lowpass_kernel(np.random.uniform(np.pi / 3, np.pi), k, pad_to=False)
        sinc = torch.from_numpy(np.asarray(kernel, np.float32))[None].to(x.device)

    def resize_and_sinc(t: torch.Tensor) -> torch.Tensor:
        t = _resize(t, target, random.choice(RESIZE_MODES))
        return filter2D(t, sinc).clamp(0, 1) if sinc is not None else t

    if random.random() < 0.5:  # Real-ESRGAN's two orders of the last steps
        return _jpeg(resize_and_sinc(x), cfg.second.jpeg_quality)
    return resize_and_sinc(_jpeg(x, cfg.second.jpeg_quality))
