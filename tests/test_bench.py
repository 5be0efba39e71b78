"""`cascade bench` on a tiny pipeline: the JSON it writes, and the FLOP count it relies on."""

import json

import pytest
import torch
from click.testing import CliRunner

from cascade.bench import network_flops, synthetic_gray
from cascade.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_bench_writes_the_expected_json(tiny_weights, tmp_path):
    out = tmp_path / "results" / "bench.json"
    result = invoke(
        "bench", "--weights", tiny_weights, "--sizes", "16", "--images", "1", "--repeats", "1",
        "--device", "cpu", "--large", "40", "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "run/naive" in result.output and f"wrote {out}" in result.output
    data = json.loads(out.read_text())
    machine = data["machine"]
    assert machine["device"] == "cpu" and machine["cpu_cores"] >= 1 and machine["torch"] == torch.__version__
    assert len(machine["load_average_start"]) == 3
    assert data["weights"]["trained"] is False and data["settings"]["images"] == 1
    (row,) = data["results"]
    assert row["input"] == "16x16 gray" and row["output"] == "64x64 RGB"
    assert (
        row["model_gflop_per_image"] > 0 and row["pipeline_gflop_per_image"] >= row["model_gflop_per_image"]
    )
    stages = row["model_gflop_per_image_by_stage"]
    assert stages["sr"] > 0 and stages["color"] > 0
    assert stages["sr"] + stages["color"] == pytest.approx(row["model_gflop_per_image"])
    for path in ("naive", "pipeline", "run"):
        m = row[path]
        assert m["images"] == 1 and len(m["seconds_each"]) == 1 and m["seconds"] > 0
        assert m["images_per_s"] == pytest.approx(1 / m["seconds"])
        assert m["output_mp_per_s"] == pytest.approx(64 * 64 / m["seconds"] / 1e6)
        assert m["achieved_gflop_per_s"] == pytest.approx(row["model_gflop_per_image"] * m["images_per_s"])
        assert m["peak_rss_mib"] > 50
    assert row["speedup_run_vs_naive"] == pytest.approx(
        row["run"]["images_per_s"] / row["naive"]["images_per_s"]
    )
    large = data["large"]
    assert large["output"] == "160x160 RGB" and large["seconds"] > 0 and large["peak_rss_mib"] > 50


def test_bench_against_another_pipeline_reports_the_ratio(tiny_weights, tmp_path):
    out = tmp_path / "vs.json"
    result = invoke(
        "bench", "--weights", tiny_weights, "--vs", tiny_weights, "--sizes", "16", "--images", "1",
        "--repeats", "2", "--device", "cpu", "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["results"][0]
    assert len(row["vs_run"]["seconds_each"]) == 2 and row["speedup_run_vs_other"] > 0
    assert "run is" in result.output


def test_network_flops_of_two_convolutions():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    head = torch.nn.Sequential(torch.nn.Conv2d(8, 2, 1, bias=False))
    x = torch.zeros(1, 3, 10, 12)
    flops = network_flops(lambda: head(conv(x)), conv, head)
    assert flops["sr"] == 2 * 3 * 8 * 9 * 10 * 12  # a multiply and an add per weight and pixel
    assert flops["color"] == 2 * 8 * 2 * 10 * 12 and flops["total"] == flops["sr"] + flops["color"]


def test_synthetic_images_differ_by_seed():
    a, b = synthetic_gray(32, 0), synthetic_gray(32, 1)
    assert a.shape == (32, 32) and a.dtype.name == "uint8" and (a != b).any()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes", "64,abc"], "give whole numbers"),
        (["--sizes", "4"], "8 pixels or more"),
        (["--device", "cuda:7"], "torch sees no CUDA GPU"),
    ],
)
def test_bench_usage_errors_exit_2(tiny_weights, tmp_path, args, message, no_gpu):
    result = invoke("bench", "--weights", tiny_weights, "--json", tmp_path / "b.json", *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "b.json").exists()


def test_bench_without_weights_says_how_to_make_some(tmp_path, monkeypatch):
    monkeypatch.setattr("cascade.pipeline.BUNDLED", tmp_path / "none")  # as if no weights were bundled
    result = invoke("bench", "--json", tmp_path / "b.json", "--sizes", "16")
    assert result.exit_code == 2 and "cascade init configs/pipeline_default.yaml" in result.output
