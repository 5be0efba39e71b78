"""Time the Pipeline with the full-size default architectures, and measure the peak memory of a large tiled run.

    python bench/pipeline_speed.py [--device cpu] [--out bench/results/pipeline_cpu.json]

The weights are freshly initialised (speed and memory do not depend on their values); the architectures are
those of configs/pipeline_default.yaml: MSRResNet 64x16 x4, then the ResNet-18 UNet colorizer at 256 px.
The large run (2048x2048 -> 8192x8192) happens in a fresh process so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cascade import Pipeline  # noqa: E402
from cascade.config import load_yaml  # noqa: E402
from cascade.models import create_colorizer, create_sr_generator  # noqa: E402


def default_pipeline(device: str, dtype: str, **settings) -> Pipeline:
    cfg = load_yaml(ROOT / "configs" / "pipeline_default.yaml")
    torch.manual_seed(0)
    return Pipeline(
        create_sr_generator(cfg["sr"]),
        create_colorizer(cfg["color"]),
        device=device,
        dtype=dtype,
        render_size=cfg["render_size"],
        trained=False,
        **settings,
    )


def gray_image(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.5 + 0.3 * np.sin(40 * xx) * np.cos(30 * yy) + rng.normal(0, 0.05, (size, size))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_small(device: str, dtype: str, repeats: int) -> dict:
    pipe = default_pipeline(device, dtype)
    img = gray_image(128)
    pipe(img)  # warm-up: allocator, kernels
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        pipe(img)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    stages = {}
    x = torch.from_numpy(img / 255.0).float()[None, None]
    for name, only in (("sr", "sr"), ("color", "color")):
        part = Pipeline(
            pipe.sr if only == "sr" else None,
            pipe.color if only == "color" else None,
            device=device,
            dtype=dtype,
            render_size=pipe.render_size,
        )
        src = (
            x
            if only == "sr"
            else torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic").clamp(0, 1)
        )
        part.restore_tensor(src)
        t = time.perf_counter()
        for _ in range(repeats):
            part.restore_tensor(src)
        stages[name] = (time.perf_counter() - t) / repeats
    return {
        "dtype": dtype,
        "input": "128x128 gray",
        "output": "512x512 RGB",
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": repeats,
        "stage_mean_s": stages,
    }


def large_run(device: str, dtype: str, tile: int) -> dict:
    pipe = default_pipeline(device, dtype, tile=tile)
    base = rss_mib()
    img = gray_image(2048)
    t = time.perf_counter()
    out = pipe(img)
    elapsed = time.perf_counter() - t
    assert out.size == (8192, 8192)
    result = {
        "dtype": dtype,
        "input": "2048x2048 gray",
        "output": "8192x8192 RGB",
        "tile": tile,
        "seconds": elapsed,
        "peak_rss_mib": rss_mib(),
        "rss_after_model_load_mib": base,
        "output_image_mib": 8192 * 8192 * 3 / 2**20,
    }
    if device == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline_cpu.json")
    ap.add_argument("--large-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--dtype", default="fp32", help="precision of the large run")
    args = ap.parse_args()
    if args.large_only:
        print(json.dumps(large_run(args.device, args.dtype, args.tile)))
        return
    results = {
        "machine": {
            "cpu": _cpu_name(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        },
        "architectures": "MSRResNet 64x16 x4 + timm_unet resnet18 (render 256), untrained weights",
        "small": [],
        "large": [],
    }
    for dtype in ("fp32", "bf16"):
        results["small"].append(time_small(args.device, dtype, args.repeats))
        _write(args.out, results)
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--large-only",
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            "--tile",
            str(args.tile),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    results["large"].append(json.loads(child.stdout.strip().splitlines()[-1]))
    _write(args.out, results)


def _write(path: Path, results: dict) -> None:
    """Written after every measurement, so a long run that is stopped keeps what it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2), flush=True)


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
