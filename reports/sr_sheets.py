"""Sheets of SR models, to look at: bicubic | each model (| ground truth).

    python reports/sr_sheets.py --set14 ../shared/data/bench/Set14 --out reports/sr_x4 \
        --model "SPAN x4 (bundled)=bundled" --model "Real-ESRGAN x4plus=RUN_OR_PIPELINE_FOLDER" \
        --degraded --old ../shared/data/bench/OldPhotos12

One sheet of the example images (gray low-resolution inputs as shipped), one of Set14 crops (a 64x64
low-resolution window from each image, made by the `cascade eval sr` protocol), gray as the models see them;
with ``--degraded`` the same crops through the realistic degradation (`cascade eval sr --degradation realistic
--seed 0`), and with ``--old`` a 96x96 window from the middle of each real old photograph at its own
resolution (grain, scratches and JPEG as scanned). Also prints each method's 4-pixel grid amplitude on the full
Set14 images (see ``grid_amplitude``).
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from cascade.evaluation.protocol import (
    bicubic_up,
    downscale_gray,
    list_images,
    mod_crop,
    read_rgb,
    realistic_lr,
    to_uint8,
)
from cascade.evaluation.report import sheet, stack
from cascade.pipeline import Pipeline

CROP = 64  # low-resolution pixels per Set14 crop
OLD_CROP = 96  # pixels of each old photograph, at its own resolution


def grid_amplitude(gray8: np.ndarray, period: int = 4) -> float:
    """The part of an x4 output that repeats with the LR pixel grid, in 8-bit levels: the high-pass image
    (minus a 3-px Gaussian blur) averaged over all cells of ``period`` pixels, as a ``period`` x ``period``
    pattern, and that pattern's standard deviation. About 0 for photographs; a checkerboard or stripes an
    upscaler adds on its grid raise it."""
    from scipy.ndimage import gaussian_filter

    y = gray8.astype(np.float64)
    high = y - gaussian_filter(y, 3)
    h, w = (s - s % period for s in high.shape)
    cells = high[:h, :w].reshape(h // period, period, w // period, period)
    return float(cells.mean(axis=(0, 2)).std())


def upscale(pipe: Pipeline, gray: np.ndarray) -> np.ndarray:
    return np.asarray(pipe(to_uint8(gray)).convert("L"))


def rows(pipes: dict[str, Pipeline], inputs: list[tuple[np.ndarray, np.ndarray | None]]) -> Image.Image:
    sheets = []
    for gray, truth in inputs:
        panels = [("bicubic", to_uint8(bicubic_up(gray, 4)))]
        panels += [(name, upscale(pipe, gray)) for name, pipe in pipes.items()]
        if truth is not None:
            panels.append(("ground truth", truth))
        sheets.append(sheet([(c, np.stack([p] * 3, -1) if p.ndim == 2 else p) for c, p in panels]))
    return stack(sheets)


def set14_crops(folder: Path, lr_of) -> list[tuple[np.ndarray, np.ndarray]]:
    """(a CROP x CROP LR window from the middle, the HR window under it) of each Set14 image."""
    crops = []
    for path in list_images(folder):
        hr = mod_crop(read_rgb(path), 4)
        lr = lr_of(path, hr)
        y, x = (max(0, side - CROP) // 2 for side in lr.shape)  # comic is 62 px wide
        truth = np.asarray(Image.fromarray(hr).convert("L"))[4 * y : 4 * (y + CROP), 4 * x : 4 * (x + CROP)]
        crops.append((lr[y : y + CROP, x : x + CROP], truth))
    return crops


def old_crops(folder: Path) -> list[tuple[np.ndarray, None]]:
    crops = []
    for path in list_images(folder):
        gray = np.asarray(Image.open(path).convert("L"), np.float32) / 255
        y, x = (max(0, side - OLD_CROP) // 2 for side in gray.shape)
        crops.append((gray[y : y + OLD_CROP, x : x + OLD_CROP], None))
    return crops


def load_models(items: list[str]) -> dict[str, Pipeline]:
    """``NAME=FOLDER`` (``bundled``: the bundled pipeline) -> SR-only pipelines on the CPU."""
    pipes = {}
    for item in items or ["SPAN x4 (bundled)=bundled"]:
        name, _, folder = item.partition("=")
        path = None if folder == "bundled" else Path(folder).expanduser()
        pipes[name] = Pipeline.from_pretrained(path, only="sr", device="cpu")
    return pipes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set14", type=Path, required=True)
    parser.add_argument("--examples", type=Path, default=Path("examples"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", action="append", help="NAME=FOLDER (a pipeline folder, or 'bundled')")
    parser.add_argument(
        "--degraded", action="store_true", help="also a sheet of realistically degraded crops"
    )
    parser.add_argument(
        "--old", type=Path, help="a folder of old photographs, e.g. ../shared/data/bench/OldPhotos12"
    )
    args = parser.parse_args()
    pipes = load_models(args.model)
    examples = [
        (np.asarray(Image.open(p).convert("L"), np.float32) / 255, None)
        for p in sorted(args.examples.glob("*.png"))
    ]
    grids = {"bicubic": [], **{m: [] for m in pipes}, "ground truth": []}
    for path in list_images(args.set14):
        hr = mod_crop(read_rgb(path), 4)
        lr = downscale_gray(hr, 4)
        grids["bicubic"].append(grid_amplitude(to_uint8(bicubic_up(lr, 4))))
        for name, pipe in pipes.items():
            grids[name].append(grid_amplitude(upscale(pipe, lr)))
        grids["ground truth"].append(grid_amplitude(np.asarray(Image.fromarray(hr).convert("L"))))
    args.out.mkdir(parents=True, exist_ok=True)
    rows(pipes, examples).save(args.out / "sheet_examples.png")
    rows(pipes, set14_crops(args.set14, lambda path, hr: downscale_gray(hr, 4))).save(
        args.out / "sheet_set14_crops.png"
    )
    written = ["sheet_examples.png", "sheet_set14_crops.png"]
    if args.degraded:
        seeded = lambda path, hr: realistic_lr(hr, 4, zlib.crc32(path.stem.encode()))  # noqa: E731 (seed 0)
        rows(pipes, set14_crops(args.set14, seeded)).save(args.out / "sheet_set14_degraded.jpg", quality=90)
        written.append("sheet_set14_degraded.jpg")
    if args.old:
        rows(pipes, old_crops(args.old)).save(args.out / "sheet_oldphotos.jpg", quality=90)
        written.append("sheet_oldphotos.jpg")
    print(f"wrote {', '.join(written)} in {args.out}")
    print("4-px grid amplitude on Set14 (8-bit levels, mean over images):")
    for name, values in grids.items():
        print(f"  {name:<13} {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
