"""Inputs in the wild: every kind of file a photo archive holds, through read_gray and through a folder run."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cascade import Pipeline
from cascade.folder import RunError
from cascade.imageio import ImageError, read_gray, write_image
from tests.conftest import photo, save_gray, tiny_sr


@pytest.fixture
def sr_pipe():
    return Pipeline(tiny_sr(), None, device="cpu")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".webp", ".gif", ".ppm", ".jp2"])
def test_any_pillow_format(tmp_path, sr_pipe, suffix):
    save_gray(tmp_path / "in" / f"photo{suffix}", size=(32, 24))
    gray = read_gray(tmp_path / "in" / f"photo{suffix}")
    assert gray.luma.shape == (24, 32) and gray.notes == []
    error = np.abs(gray.luma * 255 - photo((32, 24)))
    if suffix in (".jpg", ".webp", ".jp2"):  # lossy formats
        assert error.mean() < 4
    else:
        assert error.max() < 0.01
    report = sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", progress=False)
    assert report.ok and Image.open(tmp_path / "out" / "photo.png").size == (128, 96)


def test_color_input_becomes_luminance_with_a_note(tmp_path, sr_pipe):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 50
    Image.fromarray(rgb).save(tmp_path / "red.png")
    gray = read_gray(tmp_path / "red.png")
    np.testing.assert_allclose(gray.luma, (0.299 * 200 + 0.114 * 50) / 255, atol=1e-6)
    assert "color input (RGB) converted to luminance" in gray.notes[0]
    report = sr_pipe.run_dir(tmp_path / "red.png", tmp_path / "out", progress=False)
    assert report.ok and "converted to luminance" in report.notes[0][1]


def test_gray_stored_as_rgb_gives_no_note(tmp_path):
    save_gray(tmp_path / "g.jpg", mode="RGB", quality=90)
    assert read_gray(tmp_path / "g.jpg").notes == []


def test_16bit_gray_keeps_its_precision(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 16).reshape(16, 64)).astype(np.uint16)
    for name in ("i16.tif", "png16.png"):
        img = Image.frombytes("I;16", (64, 16), ramp.tobytes())
        img.save(tmp_path / name)
        gray = read_gray(tmp_path / name)
        np.testing.assert_allclose(gray.luma, ramp / 65535, atol=1e-6)
        assert len(np.unique(gray.luma)) > 256  # finer than 8 bits survived


def test_palette_la_rgba_and_cmyk(tmp_path):
    base = Image.fromarray(photo((40, 30)))
    pal = base.convert("P")
    pal.save(tmp_path / "palette.png")
    assert np.abs(read_gray(tmp_path / "palette.png").luma * 255 - photo((40, 30))).max() <= 1

    alpha = Image.fromarray(np.where(np.arange(40)[None, :] < 20, 0, 255).astype(np.uint8).repeat(30, 0))
    la = Image.merge("LA", (base, alpha))
    la.save(tmp_path / "la.png")
    g = read_gray(tmp_path / "la.png")
    assert g.alpha is not None and g.alpha[:, :20].max() == 0 and g.alpha[:, 20:].min() == 1

    Image.merge("RGBA", (base, base, base, alpha)).save(tmp_path / "rgba.png")
    g = read_gray(tmp_path / "rgba.png")
    assert g.alpha is not None and g.notes == []

    base.convert("CMYK").save(tmp_path / "cmyk.jpg")
    g = read_gray(tmp_path / "cmyk.jpg")
    assert np.abs(g.luma * 255 - photo((40, 30)).astype(float)).mean() < 4

    trans = base.convert("P")
    trans.info["transparency"] = 0
    trans.save(tmp_path / "ptrans.png", transparency=0)
    assert read_gray(tmp_path / "ptrans.png").alpha is not None


def test_alpha_is_upscaled_and_reattached(tmp_path, sr_pipe):
    base = Image.fromarray(photo((40, 30)))
    alpha = Image.fromarray(np.where(np.arange(40)[None, :] < 20, 0, 255).astype(np.uint8).repeat(30, 0))
    Image.merge("RGBA", (base, base, base, alpha)).save(tmp_path / "in.png")
    out = sr_pipe(tmp_path / "in.png")
    assert out.mode == "RGBA" and out.size == (160, 120)
    a = np.asarray(out)[..., 3]
    assert a[:, :70].max() == 0 and a[:, 90:].min() == 255
    for fmt in ("png", "webp"):
        report = sr_pipe.run_dir(tmp_path / "in.png", tmp_path / fmt, fmt=fmt, progress=False)
        assert report.ok and Image.open(tmp_path / fmt / f"in.{fmt}").mode == "RGBA"
    report = sr_pipe.run_dir(tmp_path / "in.png", tmp_path / "jpg", fmt="jpg", progress=False)
    assert Image.open(tmp_path / "jpg" / "in.jpg").mode == "RGB"
    assert "transparency dropped" in report.notes[0][1]


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(photo((40, 20)))  # 40 wide, 20 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    img.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    gray = read_gray(tmp_path / "rotated.jpg")
    assert gray.luma.shape == (40, 20)  # viewed upright: 20 wide, 40 high
    expected = np.asarray(img.transpose(Image.Transpose.ROTATE_270), np.float32)
    assert np.abs(gray.luma * 255 - expected).mean() < 3


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with one empty data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [10_000, 100_000])  # over our limit; over Pillow's own bomb limit
def test_decompression_bomb_gets_a_clear_error(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageError, match=r"bomb\.png: .*(decompression bomb)"):
        read_gray(path)


def test_max_pixels_is_adjustable(tmp_path):
    save_gray(tmp_path / "a.png", size=(48, 40))
    with pytest.raises(ImageError, match=r"48x40 is 0.00192 megapixels, over the 0.001 MP limit"):
        read_gray(tmp_path / "a.png", max_pixels=1000)


def test_bad_files_are_reported_and_skipped(tmp_path, sr_pipe):
    src = tmp_path / "in"
    save_gray(src / "good.png")
    (src / "empty.png").write_bytes(b"")
    (src / "text.jpg").write_text("this is not a photograph")
    good = (src / "good.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    jpeg = src / "corrupt.jpg"
    save_gray(jpeg, size=(64, 64), quality=90)
    data = bytearray(jpeg.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # scan data zeroed, no end marker
    jpeg.write_bytes(bytes(data[: len(data) - 200]))
    (src / "notes.txt").write_text("scanned 1962")
    report = sr_pipe.run_dir(src, tmp_path / "out", progress=False)
    assert [str(p) for p in report.processed] == ["good.png"]
    reasons = {str(p): r for p, r in report.failed}
    assert set(reasons) == {"empty.png", "text.jpg", "truncated.png", "corrupt.jpg"}
    assert reasons["empty.png"] == "empty file"
    assert "not an image" in reasons["text.jpg"]
    assert "truncated" in reasons["truncated.png"]
    assert [p.name for p in report.ignored] == ["notes.txt"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


def test_unicode_and_space_names(tmp_path, sr_pipe):
    src = tmp_path / "Fotos de la abuela"
    save_gray(src / "Großmutter 1932 – été.png")
    save_gray(src / "写真 (2).jpg")
    report = sr_pipe.run_dir(src, tmp_path / "sortie à 4x", progress=False)
    assert report.ok and len(report.processed) == 2
    assert (tmp_path / "sortie à 4x" / "Großmutter 1932 – été.png").is_file()
    assert (tmp_path / "sortie à 4x" / "写真 (2).png").is_file()


def test_output_folder_inside_input_is_not_read_back(tmp_path, sr_pipe):
    src = tmp_path / "in"
    save_gray(src / "a.png")
    save_gray(src / "sub" / "b.png")
    report = sr_pipe.run_dir(src, src / "restored", recursive=True, progress=False)
    assert sorted(map(str, report.processed)) == ["a.png", "sub/b.png"]
    again = sr_pipe.run_dir(src, src / "restored", recursive=True, skip_existing=True, progress=False)
    assert again.processed == [] and sorted(map(str, again.skipped)) == ["a.png", "sub/b.png"]


def test_inputs_are_never_overwritten(tmp_path, sr_pipe):
    src = tmp_path / "in"
    save_gray(src / "a.png")
    before = (src / "a.png").read_bytes()
    with pytest.raises(RunError, match="output folder is the input folder"):
        sr_pipe.run_dir(src, src, progress=False)
    # one file whose output would land on itself: a usage error, before any work
    save_gray(tmp_path / "a.png")
    with pytest.raises(RunError, match="would overwrite the input"):
        sr_pipe.run_dir(tmp_path / "a.png", tmp_path, overwrite=True, progress=False)
    assert (src / "a.png").read_bytes() == before


def test_existing_outputs_need_a_decision(tmp_path, sr_pipe):
    save_gray(tmp_path / "in" / "a.png")
    assert sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", progress=False).ok
    with pytest.raises(RunError, match="already exist.*--skip-existing.*--overwrite"):
        sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", progress=False)
    assert sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", overwrite=True, progress=False).processed


def test_same_stem_twice_is_a_reported_collision(tmp_path, sr_pipe):
    save_gray(tmp_path / "in" / "a.png")
    save_gray(tmp_path / "in" / "a.tif")
    report = sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", progress=False)
    assert len(report.processed) == 1 and "same output name a.png" in report.failed[0][1]


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    img = Image.fromarray(photo((64, 64))).convert("RGB")

    def broken_save(self, fp, format=None, **kw):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(img, tmp_path / "out.png", "png")
    assert list(tmp_path.iterdir()) == []
