import pytest
import torch
import torch.nn.functional as F

from cascade import inference
from cascade.inference import upscale
from cascade.tiling import axis_weights, tile_starts, tiled_apply, window_size
from color.lab import gray_to_lightness, lab_to_rgb
from tests.conftest import photo, tiny_sr


@pytest.mark.parametrize("length, tile, overlap", [(100, 32, 8), (257, 64, 16), (64, 64, 16), (65, 64, 16)])
def test_windows_cover_and_weights_sum_to_one(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # neighbours overlap enough
    total = torch.zeros(length)
    for s, w in zip(starts, axis_weights(starts, tile, length)):
        total[s : s + tile] += w
    torch.testing.assert_close(total, torch.ones(length))


def test_tiles_reassemble_a_pointwise_function_exactly():
    x = torch.rand(2, 1, 70, 90)
    out = tiled_apply(
        lambda t: (t * 2).repeat_interleave(2, -1).repeat_interleave(2, -2),
        x,
        2,
        tile=32,
        overlap=8,
        batch_size=3,
    )
    torch.testing.assert_close(out, (x * 2).repeat_interleave(2, -1).repeat_interleave(2, -2))


def test_tiled_sr_shows_no_seams():
    model = tiny_sr(num_feat=16, num_block=4).eval()
    for m in model.modules():  # torch's default init: a strong residual, unlike basicsr's 0.1-scaled one
        if isinstance(m, torch.nn.Conv2d):
            m.reset_parameters()
    x = torch.from_numpy(photo((120, 100))).float()[None, None] / 255
    whole = upscale(x, model, 4, tile=None)
    tiled = upscale(x, model, 4, tile=48, overlap=16, batch_size=4)
    assert tiled.shape == whole.shape == (1, 1, 400, 480)
    diff = (tiled - whole).abs()
    assert diff.max() < 0.25 / 255  # a quarter of an 8-bit level at worst
    abutting = upscale(x, model, 4, tile=40, overlap=0)  # windows meet edge to edge along x: seams show
    assert (abutting - whole).abs().max() > 10 * diff.max()


def test_padding_to_the_network_multiple():
    seen = []

    def fn(t):
        seen.append(tuple(t.shape[-2:]))
        return t

    out = tiled_apply(fn, torch.rand(1, 1, 50, 70), 1, tile=None, multiple=32)
    assert seen == [(64, 96)] and out.shape == (1, 1, 50, 70)


def test_chroma_join_in_strips_equals_the_whole_image_at_once(monkeypatch):
    gray = torch.rand(2, 1, 75, 61)
    ab = (torch.rand(2, 2, 19, 16) - 0.5) * 120
    whole = lab_to_rgb(
        torch.cat([gray_to_lightness(gray), F.interpolate(ab, size=(75, 61), mode="bilinear")], 1)
    )
    expected = (whole * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    monkeypatch.setattr(inference, "JOIN_ROWS", 16)
    joined = inference.join_chroma(gray, ab)
    assert (joined.int() - expected.int()).abs().max() <= 1  # float summation order only


@pytest.mark.parametrize(
    "length, tile, overlap, multiple, expected",
    [(512, 256, 16, 1, 182), (200, 256, 16, 1, 200), (257, 256, 16, 1, 137), (512, 256, 16, 32, 192)],
)
def test_windows_are_no_larger_than_needed(length, tile, overlap, multiple, expected):
    size = window_size(length, tile, overlap, multiple)
    assert size == expected and size % multiple == 0 or size == length
    starts = tile_starts(length, size, overlap)
    assert len(starts) == len(tile_starts(length, tile, overlap))  # as few windows as full-size ones
    assert starts[-1] + size == length and all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))


def test_self_ensemble_undoes_each_flip_and_rotation():
    from cascade.inference import upscale

    class ShiftLeft(torch.nn.Module):  # not equivariant: each symmetry sees it shift in another direction
        def forward(self, x):
            return torch.nn.functional.pad(x[..., 1:], (0, 1))

    x = torch.rand(1, 1, 12, 14)
    out = upscale(x, ShiftLeft(), 1, tile=None, ensemble=True)
    shifts = [torch.roll(x, s, d) for s, d in ((-1, -1), (1, -1), (-1, -2), (1, -2))]
    expected = torch.stack(shifts).mean(0)  # the four directions, each twice (flipped and not)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1])
    plain = upscale(x, torch.nn.Identity(), 1, tile=None, ensemble=True)
    torch.testing.assert_close(plain, x)
