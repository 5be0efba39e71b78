"""`cascade eval`: the published bicubic numbers reproduced on the shipped benchmark copies, each mode end to end
through the CLI on a tiny pipeline, and the metrics checked against independent computations."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cascade.cli import cli
from cascade.evaluation import metrics
from cascade.evaluation.protocol import matlab_resize, mod_crop

BENCH = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "bench"
CASCADE = shutil.which("cascade") or str(Path(sys.executable).parent / "cascade")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def color_photo(w: int, h: int, seed: int) -> np.ndarray:
    """(h, w, 3) uint8: smooth colored areas, an edge and grain, different for each seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(xx / (4 + seed) + seed) * np.cos(yy / 6)
    img = np.stack([base, 0.6 * base + 0.3 * (xx > w / 2), 1 - base], axis=2)
    img += rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_set(folder: Path, sizes: list[tuple[int, int]], gray: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(color_photo(w, h, i)).save(folder / f"img{i}.png")
    if gray:
        Image.fromarray(color_photo(64, 64, 9)).convert("L").save(folder / "zz_gray.png")
    return folder


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def check_means(data: dict, method: str, metric: str) -> None:
    """The mean in the JSON is the mean of the per-image values."""
    values = [img[method][metric] for img in data["images"] if img[method][metric] is not None]
    assert data["mean"][method][metric] == pytest.approx(np.mean(values))


# --- the published protocol -----------------------------------------------------------------------------------


def test_matlab_resize_is_basicsr_imresize():
    from basicsr.utils.matlab_functions import imresize

    rng = np.random.default_rng(0)
    for shape, scale in [
        ((17, 23), 1 / 4),
        ((17, 23, 3), 4),
        ((120, 80, 3), 1 / 4),
        ((9, 7), 1 / 3),
        ((5, 6), 2),
    ]:
        x = rng.random(shape)
        np.testing.assert_allclose(matlab_resize(x, scale), imresize(x, scale), atol=1e-5)


@pytest.mark.parametrize(
    "name, psnr, ssim", [("Set5", 28.42, 0.8104), ("BSD100", 25.96, 0.6675)]
)  # bicubic x4, as printed in the SRResNet/EDSR/SwinIR tables
def test_bicubic_reproduces_the_published_x4_numbers(tmp_path, name, psnr, ssim):
    if not (BENCH / name).is_dir():
        pytest.skip(f"benchmark images not found at {BENCH / name} (the repo is checked out beside shared/)")
    result = invoke(
        "eval", "sr", "--data", BENCH / name, "--baseline-only", "--no-niqe", "--json", tmp_path / "r.json"
    )
    assert result.exit_code == 0, result.output
    data = load(tmp_path / "r.json")
    assert data["dataset"]["images"] == len(list((BENCH / name).glob("*.png")))
    assert data["mean"]["bicubic"]["psnr_y"] == pytest.approx(psnr, abs=0.02)
    assert data["mean"]["bicubic"]["ssim_y"] == pytest.approx(ssim, abs=0.002)
    assert data["weights"] is None and list(data["methods"]) == ["bicubic"]


# --- each mode end to end ----------------------------------------------------------------------------------------


def test_eval_sr_end_to_end(tiny_weights, tmp_path):
    data = make_set(tmp_path / "set", [(200, 208), (203, 210), (120, 96)])
    out = tmp_path / "images"
    done = subprocess.run(
        [CASCADE, "eval", "sr", "--data", data, "--weights", tiny_weights, "--json", tmp_path / "sr.json"]
        + ["--save-images", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "sr (untrained)" in done.stdout and "bicubic" in done.stdout
    report = load(tmp_path / "sr.json")
    assert (
        report["mode"] == "sr" and report["settings"]["scale"] == 4 and report["settings"]["crop_border"] == 4
    )
    assert report["weights"]["trained"] is False and report["weights"]["sr"]["arch"] == "msrresnet"
    assert report["methods"]["sr"]["untrained"] and not report["methods"]["bicubic"]["model"]
    assert [img["name"] for img in report["images"]] == ["img0", "img1", "img2"]
    assert (report["images"][1]["width"], report["images"][1]["height"]) == (200, 208)  # cropped to x4
    for img in report["images"]:
        for method in ("bicubic", "sr"):
            assert 10 < img[method]["psnr_y"] < 60 and 0 < img[method]["ssim_y"] <= 1
    assert report["images"][0]["sr"]["niqe"] > 0 and report["images"][0]["ground_truth"]["niqe"] > 0
    assert report["images"][2]["sr"]["niqe"] is None  # 120x96: too small for NIQE's patches
    check_means(report, "sr", "psnr_y")
    check_means(report, "bicubic", "ssim_y")
    sheet = Image.open(out / "sheets" / "img1.png")
    assert sheet.width == 4 * 200 and sheet.height > 208  # input | bicubic | sr | ground truth, captioned
    assert Image.open(out / "sr" / "img1.png").size == (200, 208)
    assert Image.open(out / "input" / "img1.png").size == (50, 52)


def test_eval_color_end_to_end(tiny_weights, tmp_path):
    data = make_set(tmp_path / "set", [(80, 60), (64, 64), (50, 90)], gray=True)
    result = invoke(
        "eval", "color", "--data", data, "--weights", tiny_weights, "--size", "64",
        "--json", tmp_path / "c.json", "--save-images", tmp_path / "images",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "colorizer (untrained)" in result.output and "left out" in result.output
    report = load(tmp_path / "c.json")
    assert report["dataset"]["left_out"] == ["zz_gray.png"] and report["dataset"]["images"] == 3
    assert report["settings"]["size"] == 64
    for img in report["images"]:
        assert (img["width"], img["height"]) == (64, 64)
        assert img["gray"]["colorfulness"] == pytest.approx(0, abs=1e-3)
        assert img["ground_truth"]["colorfulness"] > 5
        assert img["gray"]["abs_delta_colorfulness"] == pytest.approx(
            img["ground_truth"]["colorfulness"], abs=1e-3
        )
        assert img["gray"]["ciede2000"] > 0 and 5 < img["gray"]["psnr"] < 60
        assert math.isfinite(img["colorizer"]["psnr"]) and 0 <= img["colorizer"]["ssim"] <= 1
    mean = report["mean"]
    assert mean["gray"]["delta_colorfulness"] == pytest.approx(mean["ground_truth"]["colorfulness"], abs=1e-3)
    check_means(report, "colorizer", "ciede2000")
    assert len(list((tmp_path / "images" / "sheets").glob("*.png"))) == 3
    assert Image.open(tmp_path / "images" / "colorizer" / "img0.png").mode == "RGB"


def test_eval_color_lightness_protocol_keeps_the_ground_truths_lightness(tiny_weights, tmp_path):
    from cascade.evaluation.protocol import lightness_gray
    from color.lab import rgb_to_lab_np

    data = make_set(tmp_path / "set", [(64, 64), (50, 90)])
    scores = {}
    for protocol in ("luma", "lightness"):
        result = invoke(
            "eval", "color", "--data", data, "--weights", tiny_weights, "--size", "64", "--gray-from", protocol,
            "--saturation", "0.5", "--no-color-flip", "--no-color-levels", "--json", tmp_path / f"{protocol}.json",
            "--save-images", tmp_path / protocol,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = load(tmp_path / f"{protocol}.json")
        assert report["settings"]["gray_from"] == protocol and report["settings"]["saturation"] == 0.5
        assert report["settings"]["color_flip"] is False and report["settings"]["color_levels"] is False
        scores[protocol] = report["mean"]["gray"]["psnr"]
    assert scores["luma"] != scores["lightness"]  # BT.601 luma is not CIE lightness on colored pixels
    gt = np.asarray(Image.open(data / "img0.png").convert("RGB").resize((64, 64), Image.Resampling.BICUBIC))
    out = np.asarray(Image.open(tmp_path / "lightness" / "colorizer" / "img0.png"))
    assert (
        np.abs(rgb_to_lab_np(out)[..., 0] - rgb_to_lab_np(gt)[..., 0]).mean() < 1.0
    )  # L* kept (8-bit, gamut)
    assert lightness_gray(gt).dtype == np.float32


def test_eval_cascade_end_to_end(tiny_weights, tmp_path):
    data = make_set(tmp_path / "set", [(96, 80), (98, 83)])
    result = invoke(
        "eval", "cascade", "--data", data, "--weights", tiny_weights, "--json", tmp_path / "k.json",
        "--save-images", tmp_path / "images", "--tile", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = load(tmp_path / "k.json")
    assert list(report["methods"]) == ["bicubic_gray", "bicubic_colorizer", "sr_gray", "cascade"]
    assert report["settings"]["tile"] is None
    for img in report["images"]:
        assert img["width"] % 4 == 0 and img["height"] % 4 == 0
        for method in report["methods"]:
            scores = img[method]
            assert set(scores) >= {"psnr", "ssim", "psnr_y", "ssim_y", "ciede2000", "colorfulness"}
            assert 5 < scores["psnr"] < 60 and 5 < scores["psnr_y"] < 60
        assert img["bicubic_gray"]["colorfulness"] == pytest.approx(0, abs=1e-3)
        assert img["sr_gray"]["colorfulness"] == pytest.approx(0, abs=1e-3)
        # gray outputs have the right luminance only: Y scores better than RGB
        assert img["bicubic_gray"]["psnr_y"] > img["bicubic_gray"]["psnr"]
    sheet = Image.open(tmp_path / "images" / "sheets" / "img1.png")
    assert sheet.width == 4 * 96  # input | bicubic_gray | cascade | ground truth
    assert Image.open(tmp_path / "images" / "cascade" / "img1.png").size == (96, 80)


def test_without_weights_only_the_baselines_run(tmp_path, monkeypatch):
    monkeypatch.setattr("cascade.pipeline.BUNDLED", tmp_path / "none")  # as if no weights were bundled
    data = make_set(tmp_path / "set", [(64, 48)])
    result = invoke("eval", "cascade", "--data", data, "--json", tmp_path / "k.json")
    assert result.exit_code == 0 and "baselines only" in result.output
    assert list(load(tmp_path / "k.json")["methods"]) == ["bicubic_gray"]


def test_a_stage_missing_from_the_bundle_leaves_its_baselines(tiny_weights, tmp_path, monkeypatch):
    from cascade.pipeline import Pipeline

    Pipeline.from_pretrained(tiny_weights, only="sr").save(tmp_path / "bundle")  # SR bundled, no colorizer
    monkeypatch.setattr("cascade.pipeline.BUNDLED", tmp_path / "bundle")
    data = make_set(tmp_path / "set", [(64, 48)])
    result = invoke("eval", "color", "--data", data, "--json", tmp_path / "c.json")
    assert result.exit_code == 0 and "no trained color weights are bundled" in result.output
    assert list(load(tmp_path / "c.json")["methods"]) == ["gray"]
    result = invoke("eval", "color", "--data", data, "--weights", tmp_path / "bundle")
    assert result.exit_code == 2 and "no 'color' stage" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["sr", "--scale", "3"], "upscales x4, not x3; pass --scale 4"),
        (["color", "--dtype", "fp16", "--device", "cpu"], "fp16 runs only on a GPU"),
    ],
)
def test_eval_usage_errors_exit_2(tiny_weights, tmp_path, args, message):
    data = make_set(tmp_path / "set", [(64, 48)])
    result = invoke("eval", args[0], "--data", data, "--weights", tiny_weights, *args[1:])
    assert result.exit_code == 2 and message in result.output


def test_an_empty_folder_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("eval", "sr", "--data", tmp_path / "empty", "--baseline-only")
    assert result.exit_code == 2 and "no images in this folder" in result.output


# --- the metrics against independent computations ------------------------------------------------------------


def test_psnr_ssim_and_ciede_against_skimage():
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.metrics import peak_signal_noise_ratio

    gt = color_photo(64, 48, 0)
    gray = np.repeat((gt @ [0.299, 0.587, 0.114]).round().astype(np.uint8)[..., None], 3, axis=2)
    assert metrics.psnr_rgb(gray, gt) == pytest.approx(peak_signal_noise_ratio(gt, gray, data_range=255))
    assert metrics.ciede2000(gt, gt) == 0
    expected = deltaE_ciede2000(rgb2lab(gt[4:-4, 4:-4]), rgb2lab(gray[4:-4, 4:-4])).mean()
    assert metrics.ciede2000(gray, gt, 4) == pytest.approx(expected, rel=1e-5)
    assert metrics.ssim_rgb(gt, gt) == pytest.approx(1)


def test_psnr_y_is_bt601_studio_range_with_border():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    out = np.clip(gt.astype(int) + rng.integers(-9, 10, gt.shape), 0, 255).astype(np.uint8)

    def y(img):  # ITU-R BT.601, 16-235 (MATLAB's rgb2ycbcr), on [0, 255]
        return 16 + img[2:-2, 2:-2].astype(np.float64) @ [65.481, 128.553, 24.966] / 255

    expected = 10 * np.log10(255**2 / np.mean((y(out) - y(gt)) ** 2))
    assert metrics.psnr_y(out, gt, border=2) == pytest.approx(expected, rel=1e-6)


def test_colorfulness():
    gray = np.full((20, 30, 3), 120, np.uint8)
    assert metrics.colorfulness(gray) == 0
    rgb = color_photo(30, 20, 3).astype(np.float64)
    rg = np.abs(rgb[..., 0] - rgb[..., 1])
    yb = np.abs((rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2])
    expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    assert metrics.colorfulness(rgb.astype(np.uint8)) == pytest.approx(expected, rel=1e-4)


def test_mod_crop():
    assert mod_crop(np.zeros((83, 98, 3)), 4).shape == (80, 96, 3)
