"""The speed benchmark behind ``cascade bench``: throughput of the Pipeline and of ``cascade run`` end to end
against a naive loop, with FLOPs, memory and GPU utilisation, written as JSON with the machine's description.

For each input size the same synthetic gray photographs go through three paths:

- ``naive``: what one writes first: decode, SR and colorization on the whole image in fp32, one image at a
  time, eager, contiguous tensors, encode; nothing overlaps.
- ``pipeline``: ``Pipeline.restore`` on decoded images (networks only, with the pipeline's tiling, batching,
  dtype and memory format).
- ``run``: ``Pipeline.run_dir``, what ``cascade run`` does: decoding and encoding in background threads
  overlap the networks.

Weights do not change speed, so untrained full-size pipelines (``cascade init configs/pipeline_default.yaml``)
measure the real architectures.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cascade.imageio import GrayImage, read_gray
from cascade.inference import join_chroma, predict_chroma, upscale
from cascade.measure import machine, measure, rss_mib
from cascade.pipeline import Pipeline, bundled_config
from cascade.weights import load_pipeline

NAIVE = "decode, whole-image fp32 eager forward passes one image at a time, encode; nothing overlaps"


def _rates(m: dict[str, Any], n: int, out_pixels: int, flops: float) -> dict[str, Any]:
    s = m["seconds"]
    return {
        "images": n,
        "images_per_s": n / s,
        "output_mp_per_s": n * out_pixels / s / 1e6,
        "achieved_gflop_per_s": n * flops / s / 1e9,
        **m,
    }


# --- the paths compared -------------------------------------------------------------------------------------------


def naive_restore(src: Path, dst: Path, sr: nn.Module, color: nn.Module, pipe: Pipeline) -> None:
    """One image from file to file in fp32 with whole-image forward passes of ``sr`` and ``color``: the
    baseline, doing ``pipe``'s work (its scale and render size, the colorizer's mirror averaging and levels)."""
    device = next(sr.parameters()).device
    x = torch.from_numpy(read_gray(src).luma)[None, None].to(device)  # (1, 1, h, w)
    with torch.no_grad():
        big = upscale(x, sr, pipe.scale, tile=None, device=device)  # (1, 1, H, W)
        ab = predict_chroma(
            big,
            color,
            render_size=pipe.render_size,
            tile=None,
            device=device,
            flip=pipe.color_flip,
            levels=pipe.color_levels,
        )
        rgb = join_chroma(big, ab)[0].cpu().numpy()  # (H, W, 3) uint8
    Image.fromarray(rgb).save(dst)


def network_flops(fn: Callable[[], Any], sr: nn.Module, color: nn.Module) -> dict[str, int]:
    """FLOPs (2 per multiply-add) ``fn`` spends inside each network, by matrix products and convolutions (not
    in the Lab conversion or resizing around them)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    flops = {"sr": per_module.get(type(sr).__name__, 0), "color": per_module.get(type(color).__name__, 0)}
    return {**flops, "total": flops["sr"] + flops["color"]}


def synthetic_gray(size: int, seed: int) -> np.ndarray:
    """A (size, size) uint8 picture with smooth areas, edges and grain, different for each seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    f = rng.uniform(10, 40, 2)
    img = 0.5 + 0.3 * np.sin(f[0] * xx + seed) * np.cos(f[1] * yy) + 0.15 * (xx + yy > 1)
    img += rng.normal(0, 0.04, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def bench_size(
    pipe: Pipeline,
    naive: tuple[nn.Module, nn.Module],
    size: int,
    images: int,
    repeats: int,
    workdir: Path,
    other: Pipeline | None = None,
) -> dict[str, Any]:
    """All three paths on ``images`` gray ``size`` x ``size`` pictures (and ``cascade run`` with ``other``,
    interleaved with them, when given)."""
    src, out, naive_out = workdir / f"in{size}", workdir / f"out{size}", workdir / f"naive{size}"
    src.mkdir()
    naive_out.mkdir()
    files = []
    for i in range(images):
        files.append(src / f"{i:03d}.png")
        Image.fromarray(synthetic_gray(size, i)).save(files[-1])
    grays = [read_gray(f) for f in files]
    sr, color = naive
    out_side = size * pipe.scale

    def run_naive() -> None:
        for f in files:
            naive_restore(f, naive_out / f.name, sr, color, pipe)

    def run_pipeline() -> None:
        pipe.restore(grays)

    def run_folder() -> None:
        report = pipe.run_dir(src, out, overwrite=True, progress=False)
        if not report.ok:
            raise RuntimeError(f"cascade run failed on the benchmark images: {report.failed[0]}")

    model = network_flops(
        lambda: naive_restore(files[0], naive_out / "flops.png", sr, color, pipe),
        sr,
        color,
    )
    tiled = network_flops(lambda: pipe.restore(grays[:1]), sr, color)  # with tile overlaps and padding
    model_flops = model["total"]
    result: dict[str, Any] = {
        "input": f"{size}x{size} gray",
        "output": f"{out_side}x{out_side} RGB",
        "model_gflop_per_image": model_flops / 1e9,
        "model_gflop_per_image_by_stage": {k: model[k] / 1e9 for k in ("sr", "color")},
        "pipeline_gflop_per_image": tiled["total"] / 1e9,
    }
    paths = {"naive": run_naive, "pipeline": run_pipeline, "run": run_folder}
    if other is not None:
        other_out = workdir / f"other{size}"

        def run_other() -> None:
            other.run_dir(src, other_out, overwrite=True, progress=False)

        paths["vs_run"] = run_other
    for fn in paths.values():
        fn()  # warm-up: allocator, kernel selection, page cache
    for name, m in measure(paths, repeats, pipe.device).items():
        result[name] = _rates(m, images, out_side**2, model_flops)
    result["speedup_run_vs_naive"] = result["run"]["images_per_s"] / result["naive"]["images_per_s"]
    result["speedup_pipeline_vs_naive"] = result["pipeline"]["images_per_s"] / result["naive"]["images_per_s"]
    if other is not None:
        # pass by pass: both were timed in turn, so a drift in the machine's speed cancels in each ratio
        pairs = zip(result["run"]["seconds_each"], result["vs_run"]["seconds_each"])
        result["speedup_run_vs_other"] = statistics.median(b / a for a, b in pairs)
    return result


def bench_large(pipe: Pipeline, size: int) -> dict[str, Any]:
    """One large picture through the tiled Pipeline: time and the memory tiling keeps bounded."""
    gray = GrayImage(synthetic_gray(size, 0).astype(np.float32) / 255)
    before = rss_mib()
    m = measure({"large": lambda: pipe.restore([gray])}, 1, pipe.device)["large"]
    side = size * pipe.scale
    return {
        "input": f"{size}x{size} gray",
        "output": f"{side}x{side} RGB",
        "tile": pipe.tile,
        "rss_before_mib": round(before, 1),
        "output_image_mib": side * side * 3 / 2**20,
        **m,
    }


# --- the whole run --------------------------------------------------------------------------------------------------


def run_benchmark(
    weights: str | Path | None,
    *,
    sizes: list[int],
    images: int | None,
    repeats: int,
    settings: dict[str, Any],
    json_path: str | Path | None = None,
    large: int = 0,
    vs: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Benchmark the pipeline folder ``weights`` (None: bundled) with Pipeline ``settings`` on ``images``
    pictures per size (None: 2 on the CPU, 16 on a GPU, enough to fill its batches); with ``vs``, a second
    pipeline folder's ``cascade run`` is timed in turn with it on the same pictures. The JSON is rewritten after
    each size, so a long run that is stopped keeps what it measured."""
    from cascade import __version__
    from cascade.evaluation.report import write_json

    pipe = Pipeline.from_pretrained(weights, **settings)
    if pipe.sr is None or pipe.color is None:
        raise ValueError("the benchmark needs a pipeline with both stages (sr and color)")
    images = images or (2 if pipe.device.type == "cpu" else 16)
    # fp32 copies for the naive path
    loaded = load_pipeline(weights if weights is not None else bundled_config())
    naive = (loaded.sr.to(pipe.device), loaded.color.to(pipe.device))
    other = Pipeline.from_pretrained(vs, **settings) if vs is not None else None
    results: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cascade_version": __version__,
        "machine": machine(pipe.device),
        "weights": {
            "path": str(weights) if weights is not None else "bundled",
            "trained": pipe.trained,
            "sr": pipe.sr.arch_config,
            "color": pipe.color.arch_config,
        },
        "vs": None
        if other is None
        else {"path": str(vs), "sr": other.sr.arch_config, "color": other.color.arch_config},
        "settings": {
            "dtype": str(pipe.dtype).removeprefix("torch."),
            "tile": pipe.tile,
            "batch_size": pipe.batch_size,
            "render_size": pipe.render_size,
            "color_flip": pipe.color_flip,
            "color_levels": pipe.color_levels,
            "images": images,
            "repeats": repeats,
        },
        "naive": NAIVE,
        "results": [],
        "large": None,
    }
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        for size in sizes:
            log(f"{size}x{size} gray -> {size * pipe.scale}x{size * pipe.scale} RGB ...")
            results["results"].append(bench_size(pipe, naive, size, images, repeats, Path(tmp), other))
            if json_path:
                write_json(results, json_path)
    if large:
        log(f"large: {large}x{large} gray, tile {pipe.tile} ...")
        results["large"] = bench_large(pipe, large)
    if hasattr(os, "getloadavg"):
        results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if json_path:
        write_json(results, json_path)
    return results


def table(results: dict[str, Any]) -> str:
    """The figures to quote, one row per size."""
    head = (
        f"{'input':>7} {'naive img/s':>12} {'pipeline img/s':>15} {'run img/s':>10} {'run MP/s':>9} "
        f"{'run/naive':>10} {'GFLOP/img':>10} {'run GFLOP/s':>12} {'peak RSS MiB':>13}"
    )
    lines = [head]
    for r in results["results"]:
        run = r["run"]
        lines.append(
            f"{r['input'].split()[0]:>7} {r['naive']['images_per_s']:>12.3f} "
            f"{r['pipeline']['images_per_s']:>15.3f} {run['images_per_s']:>10.3f} {run['output_mp_per_s']:>9.2f} "
            f"{r['speedup_run_vs_naive']:>10.2f} {r['model_gflop_per_image']:>10.1f} "
            f"{run['achieved_gflop_per_s']:>12.1f} {run['peak_rss_mib']:>13.0f}"
        )
        if "speedup_run_vs_other" in r:
            lines[-1] += (
                f"  vs: {r['vs_run']['images_per_s']:.3f} img/s, run is {r['speedup_run_vs_other']:.2f}x"
            )
        if "gpu_util_percent" in run:
            lines[-1] += f"  GPU {run['gpu_util_percent']}% busy, peak {run['peak_gpu_mib']:.0f} MiB"
    if results.get("large"):
        lg = results["large"]
        lines.append(
            f"large {lg['input']} -> {lg['output']}: {lg['seconds']:.1f} s, peak RSS {lg['peak_rss_mib']:.0f} MiB"
        )
    return "\n".join(lines)
