"""Colour as a classification (Zhang, Isola and Efros, "Colorful Image Colorization", 2016): the a*b* plane cut
into square bins, the network predicting a distribution over the bins in gamut, and an *annealed mean* turning
that distribution back into one colour.

A regression head predicts the mean of the colours a gray patch could have, which is gray-ish wherever the
colour is uncertain. The annealed mean, ``softmax(logits / T) @ centers``, moves from that mean (T = 1) towards
the most likely colour (T -> 0): one knob from conservative to vivid, on the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from color.lab import AB_SCALE, lab_to_linear_rgb

GAMUT_LIGHTNESS = torch.linspace(0.5, 99.5, 200)  # the L* values at which a bin is tried against the gamut


def _in_gamut(ab: torch.Tensor) -> torch.Tensor:
    """(N, 2) a*b* -> (N,) bool: an sRGB colour at some lightness of ``GAMUT_LIGHTNESS``."""
    L = GAMUT_LIGHTNESS.to(ab)
    lab = torch.cat([L[:, None].expand(-1, len(ab))[None], ab.T[:, None, :].expand(-1, len(L), -1)])
    rgb = lab_to_linear_rgb(lab[None])[0]  # (3, len(L), N)
    return ((rgb >= 0) & (rgb <= 1)).all(0).any(0)


def gamut_bin_centers(bin_size: float) -> torch.Tensor:
    """(Q, 2) a*b* centres (Lab units) of the ``bin_size`` square bins, over [-110, 110], that hold an sRGB
    colour (at the centre, a corner or an edge's midpoint, at some lightness): 261 bins for size 10."""
    half = int(AB_SCALE // bin_size)
    # on the CPU whatever the default device: a model built on "meta" (shapes only) needs the bins' count
    axis = torch.arange(-half, half + 1, dtype=torch.float64, device="cpu") * bin_size
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    ab = torch.stack([a.flatten(), b.flatten()], 1)
    offsets = torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64, device="cpu") * bin_size
    keep = torch.zeros(len(ab), dtype=torch.bool, device="cpu")
    for da in offsets:
        for db in offsets:
            keep |= _in_gamut(ab + torch.stack([da, db]))
    return ab[keep].float()


class ChromaBins(nn.Module):
    """The bins, the soft encoding of a target colour over them, and the annealed-mean decoding.

    Args:
        bin_size: side of a bin in a*b* units (10: 261 bins; Zhang et al. had 313 by their gamut).
        sigma: width (a*b* units) of the Gaussian spreading a target colour over its neighbouring bins (Zhang
            et al.: 5), so that near misses cost less than far ones.
        temperature: of the annealed mean: 1 is the distribution's mean, lower values move towards its mode
            (more colour, and more of it wrong); Zhang et al. chose 0.38.
        prior_correction: how much of the training photos' colour frequencies (``log_prior``, saved with the
            weights) is taken out of the prediction before decoding: 0 none; 1 scores each colour by how much
            more likely it is here than in photos at large (post-hoc logit adjustment, Menon et al. 2021: what
            Zhang et al.'s class rebalancing trains in, chosen at inference instead). Near-gray is what most
            pixels are, so a plain cross-entropy's mode is gray wherever the colour is uncertain.
    """

    def __init__(
        self,
        bin_size: float = 10.0,
        sigma: float = 5.0,
        temperature: float = 0.38,
        prior_correction: float = 0.0,
    ):
        super().__init__()
        if bin_size <= 0 or sigma <= 0 or temperature <= 0:
            raise ValueError(
                f"chroma bins: bin_size ({bin_size}), sigma ({sigma}) and temperature ({temperature}) must be > 0"
            )
        centers = gamut_bin_centers(bin_size)
        self.register_buffer("centers", centers / AB_SCALE, persistent=False)
        self.register_buffer("log_prior", torch.zeros(len(centers), device="cpu"))  # uniform until trained
        self.sigma, self.temperature, self.prior_correction = sigma / AB_SCALE, temperature, prior_correction

    def __len__(self) -> int:
        return len(self.centers)

    def encode(self, ab: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W) ab in network units -> (B, Q, H, W) target distributions (each sums to one)."""
        return torch.softmax(-self._distances(ab) / (2 * self.sigma**2), dim=1)

    def _distances(self, ab: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W) -> (B, Q, H, W) squared distances to the bin centres."""
        return ((ab[:, None] - self.centers[None, :, :, None, None]) ** 2).sum(2)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, Q, H, W) logits -> (B, 2, H, W) ab in network units: the annealed mean at ``temperature``."""
        adjusted = logits.float() - self.prior_correction * self.log_prior[:, None, None]
        p = torch.softmax(adjusted / self.temperature, dim=1)
        return torch.einsum("bqhw,qc->bchw", p, self.centers).to(logits.dtype)

    def nearest(self, ab: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W) ab in network units -> (B, H, W) index of the nearest bin."""
        return self._distances(ab).argmin(1)

    def loss(self, logits: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the logits (B, Q, h, w) against the soft-encoded target ab (B, 2, H, W), the
        target averaged down to the logits' resolution first."""
        if ab.shape[-2:] != logits.shape[-2:]:
            ab = F.interpolate(ab, size=logits.shape[-2:], mode="area")
        return -(self.encode(ab) * F.log_softmax(logits.float(), dim=1)).sum(1).mean()

    def frequencies(self, counts: torch.Tensor) -> torch.Tensor:
        """(Q,) counts of target bins -> (Q,) frequencies smoothed by ``sigma`` (no bin exactly 0)."""
        d2 = torch.cdist(self.centers, self.centers) ** 2
        spread = torch.softmax(-d2 / (2 * self.sigma**2), dim=1)  # row q: bin q's mass over its neighbours
        return (counts.to(spread) / counts.sum()) @ spread

    def set_prior(self, counts: torch.Tensor) -> None:
        """Keep the training photos' colour frequencies with the model, for ``prior_correction``."""
        self.log_prior.copy_(self.frequencies(counts).clamp_min(1e-12).log())
