"""Hostile but fair inputs: every one ends with a clear line naming the file and the reason, the right exit
status, the rest of the run unharmed; nothing hangs, nothing is skipped without a word, no garbage comes out."""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from cascade import Pipeline
from cascade.atomic import TEMP_SUFFIX, _temp_prefix, atomic_path, remove_abandoned_temps
from cascade.cli import cli
from cascade.config import ConfigError, load_yaml
from cascade.folder import RunError
from cascade.imageio import ImageError, array_to_gray, read_gray
from cascade.weights import load_pipeline, save_pipeline
from tests.conftest import photo, save_gray, tiny_sr

ROOT = os.geteuid() == 0  # root reads files whatever their permissions say


@pytest.fixture
def sr_pipe():
    return Pipeline(tiny_sr(), None, device="cpu")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims ``w`` x ``h`` pixels and holds none."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def _float_tiff(path: Path, bad: float) -> None:
    arr = np.full((16, 16), 0.5, np.float32)
    arr[3, 4] = bad
    Image.fromarray(arr, mode="F").save(path)


def _make(kind: str, folder: Path) -> str:
    """Write one hostile input named for its case into ``folder``; returns its file name."""
    good = folder / "good_source.png"
    save_gray(good, size=(24, 20))
    data = good.read_bytes()
    good.unlink()
    makers = {
        "truncated.png": lambda p: p.write_bytes(data[: len(data) // 3]),
        "random.png": lambda p: p.write_bytes(np.random.default_rng(0).bytes(600)),
        "empty.jpg": lambda p: p.write_bytes(b""),
        "loop.eps": lambda p: p.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\n"),
        "eps_inside.png": lambda p: p.write_text(
            "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\n"
        ),
        "nan.tif": lambda p: _float_tiff(p, float("nan")),
        "inf.tif": lambda p: _float_tiff(p, float("inf")),
        "dangling.png": lambda p: p.symlink_to(folder / "missing-target.png"),
        "fifo.png": lambda p: os.mkfifo(p),
        "device.png": lambda p: p.symlink_to("/dev/zero"),
        "selfloop.png": lambda p: p.symlink_to(p),
        "bomb.png": lambda p: p.write_bytes(_png_header_only(30000, 30000)),
        "folder.png": lambda p: p.mkdir(),
    }
    makers[kind](folder / kind)
    return kind


# case -> the reason the run gives for it
REFUSED = {
    "truncated.png": "corrupt or truncated",
    "random.png": "not an image",
    "empty.jpg": "empty file",
    "loop.eps": "EPS/PostScript is not read",
    "eps_inside.png": "not an image",
    "nan.tif": "NaN or infinite",
    "inf.tif": "NaN or infinite",
    "dangling.png": "a symbolic link to nothing",
    "fifo.png": "a FIFO, not a regular file",
    "device.png": "a device or socket, not a regular file",
    "selfloop.png": "symbolic links",
    "bomb.png": "900 megapixels, over the 89.5 MP limit",
}


@pytest.mark.parametrize("recursive", [False, True], ids=["flat", "recursive"])
def test_every_hostile_file_is_reported_and_the_rest_is_done(tmp_path, sr_pipe, recursive):
    src = tmp_path / "in"
    src.mkdir()
    for kind in REFUSED:
        _make(kind, src)
    save_gray(src / "good.png")
    report = sr_pipe.run_dir(src, tmp_path / "out", recursive=recursive, progress=False)
    reasons = {str(p): r for p, r in report.failed}
    assert set(reasons) == set(REFUSED)
    for name, expected in REFUSED.items():
        assert expected in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    assert [str(p) for p in report.processed] == ["good.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


def test_a_hostile_file_fails_alone_through_the_cli(tmp_path, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    for kind in ("loop.eps", "fifo.png", "nan.tif"):
        _make(kind, src)
    save_gray(src / "good.png")
    result = CliRunner().invoke(
        cli, ["run", str(src), str(tmp_path / "out"), "--weights", tiny_weights, "--only", "sr", "-q"]
    )
    assert result.exit_code == 1, result.output
    assert "failed loop.eps: EPS/PostScript is not read" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "out" / "good.png").is_file()


def test_a_gray_png_with_a_trns_chunk_keeps_its_transparency(tmp_path, sr_pipe):
    arr = photo((24, 20))
    arr[:5] = 7  # the value the tRNS chunk makes transparent
    Image.fromarray(arr).save(tmp_path / "in.png", transparency=7)
    gray = read_gray(tmp_path / "in.png")
    assert gray.alpha is not None and gray.alpha[:5].max() == 0 and gray.alpha[5:].min() == 1
    out = sr_pipe(tmp_path / "in.png")
    assert out.mode == "RGBA" and np.asarray(out)[:16, :, 3].max() == 0


def test_decoder_warnings_become_notes_naming_the_file(tmp_path, sr_pipe):
    (tmp_path / "in").mkdir()
    Image.fromarray(photo((24, 20))).save(
        tmp_path / "in" / "exif.jpg",
        exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00",
    )
    report = sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", progress=False)
    assert report.ok and [str(p) for p, _ in report.notes] == ["exif.jpg"]
    assert "Corrupt EXIF data" in report.notes[0][1]


def test_max_megapixels_can_go_past_pillows_own_cap(tmp_path):
    (tmp_path / "big.png").write_bytes(_png_header_only(15000, 15000))  # 225 MP: over Pillow's 179 MP refusal
    with pytest.raises(ImageError, match="corrupt or truncated"):  # read past the header: no bomb refusal
        read_gray(tmp_path / "big.png", max_pixels=300_000_000)
    with pytest.raises(ImageError, match="225 megapixels, over the 89.5 MP limit"):
        read_gray(tmp_path / "big.png")


@pytest.mark.skipif(ROOT, reason="root reads unreadable files")
def test_permission_denied_is_called_so(tmp_path, sr_pipe):
    save_gray(tmp_path / "in" / "locked.png")
    (tmp_path / "in" / "locked.png").chmod(0)
    save_gray(tmp_path / "in" / "sub" / "b.png")
    (tmp_path / "in" / "sub").chmod(0)
    try:
        report = sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", recursive=True, progress=False)
    finally:
        (tmp_path / "in" / "sub").chmod(0o755)
    reasons = {str(p): r for p, r in report.failed}
    assert "permission denied" in reasons["locked.png"]
    assert "could not list this folder" in reasons["sub"]


# --- the folder run as a whole ------------------------------------------------------------------------------


def test_a_symlink_loop_among_folders_is_not_followed_and_said(tmp_path, sr_pipe):
    save_gray(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "loop").symlink_to(tmp_path / "in")
    report = sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", recursive=True, progress=False)
    assert [str(p) for p in report.processed] == ["a.png"]
    assert ("loop", "a symbolic link to a folder: not followed (it could loop)") in [
        (str(p), r) for p, r in report.notes
    ]


def test_sub_folders_not_searched_are_counted(tmp_path, tiny_weights):
    save_gray(tmp_path / "in" / "a.png")
    save_gray(tmp_path / "in" / "1950s" / "b.png")
    (tmp_path / "in" / "out").mkdir()
    args = [
        "run",
        str(tmp_path / "in"),
        str(tmp_path / "in" / "out"),
        "--weights",
        tiny_weights,
        "--only",
        "sr",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0
    assert "processed 1, skipped 0, failed 0; 1 sub-folder(s) not searched (pass -r" in result.output


def test_an_output_folder_inside_the_input_is_said_to_be_left_out(tmp_path, sr_pipe):
    save_gray(tmp_path / "in" / "a.png")
    save_gray(tmp_path / "in" / "sub" / "b.png")
    report = sr_pipe.run_dir(tmp_path / "in", tmp_path / "in" / "sub", recursive=True, progress=False)
    assert [str(p) for p in report.processed] == ["a.png"]
    assert any(str(p) == "sub" and "not read as input" in r for p, r in report.notes)


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_lowres_dir_must_be_a_folder_or_a_file(tmp_path, sr_pipe, target):
    path = tmp_path / "fifo"
    if target == "fifo":
        os.mkfifo(path)
    else:
        path = Path(target)
    with pytest.raises(RunError, match="neither a folder nor a regular file"):
        sr_pipe.run_dir(path, tmp_path / "out", progress=False)


def test_an_unwritable_output_is_a_usage_error_before_any_work(tmp_path, sr_pipe, monkeypatch):
    save_gray(tmp_path / "in" / "a.png")
    (tmp_path / "out").write_text("a file where the output folder should be")
    monkeypatch.setattr(Pipeline, "restore", lambda *a, **k: pytest.fail("the networks ran"))
    with pytest.raises(RunError, match="cannot write into .*out: it exists and is not a folder"):
        sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", progress=False)


def test_an_output_another_run_wrote_meanwhile_is_kept(tmp_path, sr_pipe, monkeypatch):
    save_gray(tmp_path / "in" / "a.png")
    restore = Pipeline.restore

    def racing(self, images, scale=None):  # another run finishes a.png while this one works on it
        (tmp_path / "out").mkdir(exist_ok=True)
        (tmp_path / "out" / "a.png").write_bytes(b"theirs")
        return restore(self, images, scale)

    monkeypatch.setattr(Pipeline, "restore", racing)
    report = sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", progress=False)
    assert "already exists" in report.failed[0][1]
    assert (tmp_path / "out" / "a.png").read_bytes() == b"theirs"
    (tmp_path / "out" / "a.png").unlink()
    report = sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", skip_existing=True, progress=False)
    assert [str(p) for p in report.skipped] == ["a.png"] and report.ok


def test_a_legal_long_name_is_written(tmp_path, sr_pipe):
    stem = "x" * 250
    save_gray(tmp_path / "in" / f"{stem}.png")
    report = sr_pipe.run_dir(tmp_path / "in", tmp_path / "out", progress=False)
    assert report.ok and (tmp_path / "out" / f"{stem}.png").is_file()
    assert len(_temp_prefix(tmp_path / f"{'é' * 200}.png").encode()) + 8 + len(TEMP_SUFFIX) <= 255


def test_temporary_files_of_a_killed_run_are_removed_and_live_ones_kept(tmp_path, sr_pipe):
    save_gray(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    dead = 2**22 + 12345  # above the default pid_max: no process has it
    live_name = Path(_temp_prefix(out / "b.png") + "abcdefgh" + TEMP_SUFFIX).name
    (out / live_name).write_bytes(b"being written by this process")
    stale_name = live_name.replace(f"-{os.getpid()}-", f"-{dead}-")
    (out / stale_name).write_bytes(b"partial")
    (out / ".notes.tmp").write_text("the user's, not ours")
    report = sr_pipe.run_dir(tmp_path / "in", out, progress=False)
    assert report.ok
    assert sorted(p.name for p in out.iterdir()) == sorted([".notes.tmp", live_name, "a.png"])
    assert any("interrupted run" in r for _, r in report.notes)
    assert remove_abandoned_temps(out) == []


def test_atomic_path_removes_its_file_when_the_write_fails(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


# --- the command line -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scale", "nan"], "is not a finite number"),
        (["--scale", "inf"], "is not a finite number"),
        (["--max-megapixels", "nan"], "is not a finite number"),
        (["--max-megapixels", "inf"], "is not a finite number"),
        (["--device", "xla"], "unknown device 'xla'"),
        (["--device", "meta"], "unknown device 'meta'"),
    ],
)
def test_bad_numbers_and_devices_are_usage_errors(tmp_path, tiny_weights, args, message):
    save_gray(tmp_path / "in" / "a.png")
    result = CliRunner().invoke(
        cli, ["run", str(tmp_path / "in"), str(tmp_path / "out"), "--weights", tiny_weights, *args]
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["model.pth", "sr.safetensors"])
def test_a_weights_file_instead_of_a_folder_is_named(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x80\x04\x95binary weights\xff\xfe")
    save_gray(tmp_path / "in" / "a.png")
    result = CliRunner().invoke(
        cli, ["run", str(tmp_path / "in"), str(tmp_path / "out"), "--weights", str(tmp_path / name)]
    )
    assert result.exit_code == 2
    assert f"{name}: a pipeline is a folder holding pipeline.yaml" in result.output


def test_a_single_file_onto_itself_is_a_usage_error(tmp_path, tiny_weights):
    save_gray(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    result = CliRunner().invoke(
        cli, ["run", str(tmp_path / "a.png"), str(tmp_path), "--weights", tiny_weights]
    )
    assert result.exit_code == 2 and "would overwrite the input" in result.output
    assert (tmp_path / "a.png").read_bytes() == before


# --- pipeline.yaml ----------------------------------------------------------------------------------------------


@pytest.fixture
def sr_folder(tmp_path):
    folder = tmp_path / "pipe"
    save_pipeline(folder, tiny_sr(), None, trained=False)
    return folder


def _set(key: str, value):
    def edit(cfg: dict) -> None:
        section, _, leaf = key.rpartition(".")
        node = cfg
        for part in filter(None, section.split(".")):
            node = node[part]
        node[leaf] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("sr.model", 5), "model must be a mapping with an 'arch' name"),
        (_set("sr.model.arch", ["msrresnet"]), "model must be a mapping with an 'arch' name"),
        (_set("sr.weights", 5), "weights must name a .safetensors file"),
        (_set("sr.weights", ["a", "b"]), "weights must name a .safetensors file"),
        (_set("sr.weights", "../sr.safetensors"), "must be a file inside the pipeline folder"),
        (_set("sr.model.num_feat", 200000), "parameters, over the 500 M"),
        (_set("sr.model.num_feat", 9), "does not fit the msrresnet model"),
        (_set("trained", "maybe"), "trained must be a bool"),
        (_set("description", ["a"]), "description must be a str"),
        (_set("color", {"render_size": "abc"}), "needs 'model'"),
        (_set("sr.base", "../../evil"), "base must be one of span, realesrgan, not '../../evil'"),
    ],
    ids=[
        "model-int", "arch-list", "weights-int", "weights-list", "weights-escapes", "huge", "shape", "trained",
        "description", "color-without-model", "base-unknown",
    ],
)  # fmt: skip
def test_bad_pipeline_files_are_config_errors(sr_folder, edit, message):
    cfg_path = sr_folder / "pipeline.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    edit(cfg)
    cfg_path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_pipeline(sr_folder)


def test_yaml_aliases_are_refused(sr_folder):
    cfg_path = sr_folder / "pipeline.yaml"
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 12))
    cfg_path.write_text("l0: &l0 lol\n" + laughs + cfg_path.read_text())
    with pytest.raises(ConfigError, match=re.escape("YAML aliases (*name) are not allowed")):
        load_pipeline(sr_folder)


@pytest.mark.parametrize("value", ["abc", -5, 1.5, 0, True, 10**6])
def test_render_size_is_checked_on_load(tmp_path, value):
    from tests.conftest import tiny_color

    folder = tmp_path / "pipe"
    save_pipeline(folder, None, tiny_color(), render_size=64, trained=False)
    cfg = folder / "pipeline.yaml"
    cfg.write_text(cfg.read_text().replace("render_size: 64", f"render_size: {value}"))
    with pytest.raises(ConfigError, match="render_size must be a whole number from 8 to 16384 or null"):
        load_pipeline(folder)


def test_config_files_that_are_not_text_or_too_large(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="not a text"):
        load_yaml(tmp_path / "bin.yaml")
    (tmp_path / "big.yaml").write_text("a: " + "x" * (2 << 20))
    with pytest.raises(ConfigError, match="too large for a config file"):
        load_yaml(tmp_path / "big.yaml")


# --- the Python API -------------------------------------------------------------------------------------------


def test_integer_arrays_of_8_bit_values_read_as_8_bit():
    values = photo((24, 20))
    np.testing.assert_array_equal(array_to_gray(values.astype(np.int64)).luma, array_to_gray(values).luma)
    np.testing.assert_array_equal(array_to_gray(np.asarray(values.tolist())).luma, array_to_gray(values).luma)


@pytest.mark.parametrize(
    "arr, error, message",
    [
        (np.full((8, 8), 1000, np.int64), ValueError, "values from 1000 to 1000"),
        (np.full((8, 8), -3, np.int32), ValueError, "values from -3"),
        (np.full((8, 8), 200.0), ValueError, r"divide by 255"),
        (np.full((8, 8), np.nan, np.float32), ValueError, "NaN or infinite"),
        (np.zeros((0, 5), np.uint8), ValueError, "an empty image"),
        (np.zeros((3, 20, 4), np.uint8), ValueError, "could be channels-first"),
        (np.zeros((3, 20, 30), np.uint8), ValueError, r"expected an \(H, W\) gray"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "cannot read an array of <U1"),
        (np.zeros((8, 8), complex), TypeError, "cannot read an array of complex"),
    ],
)
def test_arrays_that_cannot_be_images_are_refused(sr_pipe, arr, error, message):
    with pytest.raises(error, match=message):
        sr_pipe(arr)


def test_an_empty_pil_image_is_refused(sr_pipe):
    with pytest.raises(ValueError, match=r"an empty image \(0x5 pixels\)"):
        sr_pipe(Image.new("L", (0, 5)))


def test_tensors_in_bf16_and_channel_first_layouts(sr_pipe):
    x = torch.from_numpy(photo((24, 20))).float() / 255
    expected = np.asarray(sr_pipe(x.numpy()))
    for t in (x.bfloat16().float(), x[None], x[None, None], x[None].expand(3, -1, -1)):
        assert np.abs(np.asarray(sr_pipe(t)).astype(int) - expected).max() <= 1
    assert sr_pipe(x.bfloat16()).size == (96, 80)


@pytest.mark.parametrize(
    "scale, error",
    [(0, ValueError), (-2, ValueError), (float("nan"), ValueError), ("4", TypeError), (True, TypeError)],
)
def test_bad_scales_are_refused(sr_pipe, scale, error):
    with pytest.raises(error, match="scale must be"):
        sr_pipe(photo((24, 20)), scale=scale)


def test_bad_settings_and_stage_names_are_refused(sr_pipe, sr_folder):
    with pytest.raises(ValueError, match="only must be one of sr, color"):
        Pipeline.from_pretrained(sr_folder, only="both")
    with pytest.raises(ValueError, match="unknown stage 'both'"):
        sr_pipe.only("both")
    for kwargs in ({"render_size": -5}, {"render_size": 1.5}, {"tile": "256"}, {"batch_size": 0}):
        with pytest.raises(ValueError, match="must be a whole number"):
            Pipeline(tiny_sr(), None, device="cpu", **kwargs)
