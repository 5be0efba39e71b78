"""The `cascade` command end to end: the real console script in a subprocess for the main paths, click's
CliRunner (in-process, faster) for options and usage errors."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cascade.cli import cli
from tests.conftest import save_gray

EXAMPLES = Path(__file__).parent.parent / "examples"
CASCADE = shutil.which("cascade") or str(Path(sys.executable).parent / "cascade")


def cascade(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([CASCADE, *map(str, args)], capture_output=True, text=True, timeout=300, **kw)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_run_examples_end_to_end(tiny_weights, tmp_path):
    result = cascade("run", EXAMPLES, tmp_path / "out", "--weights", tiny_weights)
    assert result.returncode == 0, result.stderr
    assert f"processed {len(list(EXAMPLES.glob('*.png')))}, skipped 0, failed 0" in result.stderr
    assert "marked untrained" in result.stderr
    inputs = sorted(EXAMPLES.glob("*.png"))
    assert len(inputs) >= 3
    for src in inputs:
        out = Image.open(tmp_path / "out" / src.name)
        assert out.mode == "RGB"
        assert out.size == (Image.open(src).width * 4, Image.open(src).height * 4)


def test_some_failures_exit_1_and_the_rest_is_done(tiny_weights, tmp_path):
    save_gray(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_text("not a png")
    result = cascade("run", tmp_path / "in", tmp_path / "out", "--weights", tiny_weights, "--only", "sr")
    assert result.returncode == 1
    assert "processed 1, skipped 0, failed 1" in result.stderr
    assert "failed bad.png: not an image" in result.stderr
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()


def test_a_killed_run_leaves_no_partial_image_and_resumes(tiny_weights, tmp_path):
    for i in range(16):
        save_gray(tmp_path / "in" / f"{i:02d}.png", size=(256, 256), seed=i)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            CASCADE,
            "run",
            tmp_path / "in",
            out,
            "--weights",
            tiny_weights,
            "--only",
            "sr",
            "--tile",
            "0",
            "--quiet",
        ],
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and any(p.suffix == ".png" for p in out.iterdir())):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    assert 1 <= len(done) < 16  # killed part-way
    for p in done:  # every image under a final name is complete
        with Image.open(p) as img:
            img.load()
            assert img.size == (1024, 1024)
    result = cascade(
        "run", tmp_path / "in", out, "--weights", tiny_weights, "--only", "sr", "--skip-existing"
    )
    assert result.returncode == 0, result.stderr
    assert f"processed {16 - len(done)}, skipped {len(done)}, failed 0" in result.stderr
    assert len([p for p in out.iterdir() if p.suffix == ".png" and not p.name.startswith(".")]) == 16


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sr-model", "psnr"], "sr_model and color_model pick among the bundled weights"),
        (["--color-model", "vivid"], "sr_model and color_model pick among the bundled weights"),
        (["--dtype", "fp16", "--device", "cpu"], "fp16 runs only on a GPU"),
        (["--skip-existing", "--overwrite"], "contradict each other"),
        (["--device", "cuda:7"], "torch sees no CUDA GPU"),
        (["--format", "gif"], "Invalid value for '--format'"),
    ],
)
def test_usage_errors_exit_2(tiny_weights, tmp_path, args, message, no_gpu):
    save_gray(tmp_path / "in" / "a.png")
    result = invoke("run", tmp_path / "in", tmp_path / "out", "--weights", tiny_weights, *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_existing_outputs_skip_or_overwrite(tiny_weights, tmp_path):
    save_gray(tmp_path / "in" / "a.png")
    args = ["run", tmp_path / "in", tmp_path / "out", "--weights", tiny_weights, "--only", "sr"]
    assert invoke(*args).exit_code == 0
    result = invoke(*args)
    assert result.exit_code == 2 and "already exist" in result.output
    result = invoke(*args, "--skip-existing")
    assert result.exit_code == 0 and "processed 0, skipped 1" in result.output
    mtime = (tmp_path / "out" / "a.png").stat().st_mtime_ns
    time.sleep(0.01)
    assert invoke(*args, "--overwrite").exit_code == 0
    assert (tmp_path / "out" / "a.png").stat().st_mtime_ns != mtime


def test_recursive_keeps_relative_paths_and_formats(tiny_weights, tmp_path):
    save_gray(tmp_path / "in" / "top.png")
    save_gray(tmp_path / "in" / "1950s" / "wedding.tif")
    save_gray(tmp_path / "in" / "1950s" / "deep" / "x.jpg")
    flat = invoke("run", tmp_path / "in", tmp_path / "flat", "--weights", tiny_weights, "--format", "jpg")
    assert flat.exit_code == 0 and sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["top.jpg"]
    deep = invoke(
        "run",
        tmp_path / "in",
        tmp_path / "deep",
        "--weights",
        tiny_weights,
        "-r",
        "--format",
        "webp",
        "--batch-size",
        "2",
    )
    assert deep.exit_code == 0, deep.output
    found = sorted(str(p.relative_to(tmp_path / "deep")) for p in (tmp_path / "deep").rglob("*.*"))
    assert found == ["1950s/deep/x.webp", "1950s/wedding.webp", "top.webp"]
    assert Image.open(tmp_path / "deep" / "top.webp").size == (192, 160)


def test_only_one_stage_scale_tile_and_render_size(tiny_weights, tmp_path):
    save_gray(tmp_path / "in" / "a.png", size=(48, 40))
    sr = invoke(
        "run", tmp_path / "in", tmp_path / "sr", "--weights", tiny_weights, "--only", "sr", "--tile", "0"
    )
    arr = np.asarray(Image.open(tmp_path / "sr" / "a.png"))
    assert sr.exit_code == 0 and arr.shape == (160, 192, 3) and (arr[..., 0] == arr[..., 2]).all()
    color = invoke(
        "run",
        tmp_path / "in",
        tmp_path / "c",
        "--weights",
        tiny_weights,
        "--only",
        "color",
        "--render-size",
        "0",
    )
    assert color.exit_code == 0 and Image.open(tmp_path / "c" / "a.png").size == (48, 40)
    half = invoke(
        "run",
        tmp_path / "in",
        tmp_path / "x2",
        "--weights",
        tiny_weights,
        "--scale",
        "2",
        "--dtype",
        "bf16",
        "--tile",
        "64",
    )
    assert half.exit_code == 0 and Image.open(tmp_path / "x2" / "a.png").size == (96, 80)


def test_quiet_prints_nothing_on_success(tiny_weights, tmp_path):
    save_gray(tmp_path / "in" / "a.png")
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 1] = 180
    Image.fromarray(rgb).save(tmp_path / "in" / "green.png")
    loud = invoke("run", tmp_path / "in", tmp_path / "o1", "--weights", tiny_weights)
    assert "green.png: color input (RGB) converted to luminance" in loud.output
    quiet = invoke("run", tmp_path / "in", tmp_path / "o2", "--weights", tiny_weights, "-q")
    assert quiet.exit_code == 0 and "converted" not in quiet.output and "processed" not in quiet.output


def test_init_writes_an_untrained_pipeline(tmp_path):
    config = Path(__file__).parent.parent / "configs" / "pipeline_tiny.yaml"
    result = invoke("init", config, tmp_path / "p")
    assert result.exit_code == 0
    text = (tmp_path / "p" / "pipeline.yaml").read_text()
    assert "trained: false" in text and "arch: msrresnet" in text and "encoder: test_resnet" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("sr: {arch: msrresnet, blocks: 3}\n")
    result = invoke("init", bad, tmp_path / "q")
    assert result.exit_code == 2 and "unknown option blocks" in result.output


def test_every_bundled_config_builds():
    from cascade.config import load_yaml
    from cascade.models import create_colorizer, create_sr_generator

    for path in sorted((Path(__file__).parent.parent / "configs").glob("pipeline_*.yaml")):
        cfg = load_yaml(path)
        create_sr_generator(cfg["sr"])
        create_colorizer(cfg["color"])


def test_cli_dtype_choices_match_the_library():
    from cascade.defaults import DTYPE_NAMES
    from cascade.devices import DTYPES

    assert DTYPE_NAMES == list(DTYPES)
