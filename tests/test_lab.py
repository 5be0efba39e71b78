import numpy as np
import torch
from skimage.color import lab2rgb

from color.lab import (
    denormalize_lab,
    gray_to_lightness,
    lab_to_rgb,
    lightness_to_gray,
    normalize_lab,
    rgb_to_lab,
    rgb_to_lab_np,
)


def _colors() -> np.ndarray:
    """Every 8-bit gray plus 60k random colors, as a (H, W, 3) uint8 image."""
    rng = np.random.default_rng(0)
    grays = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    rand = rng.integers(0, 256, size=(60000 - 256, 3), dtype=np.uint8)
    return np.concatenate([grays, rand]).reshape(240, 250, 3)


def test_torch_and_skimage_lab_agree():
    rgb = _colors()
    lab_np = rgb_to_lab_np(rgb)
    lab_t = rgb_to_lab(torch.from_numpy(rgb / 255.0).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(lab_np - lab_t).max() < 1e-3
    back_np = lab2rgb(lab_np.astype(np.float64))
    back_t = lab_to_rgb(torch.from_numpy(lab_np.astype(np.float64)).permute(2, 0, 1)[None])[0].permute(
        1, 2, 0
    )
    assert np.abs(back_np - back_t.numpy()).max() < 1e-4


def test_round_trip_is_well_under_one_8bit_level():
    rgb = _colors()
    lab = rgb_to_lab(torch.from_numpy(rgb / 255.0).float().permute(2, 0, 1)[None])  # float32, as in training
    back = lab_to_rgb(lab)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(back - rgb).max() < 0.05  # one 8-bit level is 1.0
    assert np.abs(lab2rgb(rgb_to_lab_np(rgb).astype(np.float64)) * 255 - rgb).max() < 0.05


def test_network_ranges():
    lab = rgb_to_lab_np(_colors())
    L, ab = normalize_lab(lab)
    assert L.min() >= -1 and L.max() <= 1 and L.min() < -0.99 and L.max() > 0.99
    assert np.abs(ab).max() <= 1
    np.testing.assert_allclose(denormalize_lab(L, ab), lab, atol=1e-4)
    Lt, abt = normalize_lab(torch.from_numpy(lab).permute(2, 0, 1)[None], channel_axis=1)
    assert Lt.shape == (1, 1, 240, 250) and abt.shape == (1, 2, 240, 250)


def test_gray_lightness_matches_full_conversion():
    g = torch.linspace(0, 1, 256)
    full = rgb_to_lab_np(np.repeat(g.numpy()[None, :, None], 3, axis=2))
    np.testing.assert_allclose(gray_to_lightness(g).numpy(), full[0, :, 0], atol=1e-3)
    assert np.abs(full[..., 1:]).max() < 0.01  # gray has no chroma (to the rounding of the sRGB matrix)


def test_lightness_to_gray_inverts_gray_to_lightness():
    g = torch.linspace(0, 1, 1001)
    np.testing.assert_allclose(lightness_to_gray(gray_to_lightness(g)).numpy(), g.numpy(), atol=1e-5)
