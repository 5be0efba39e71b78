"""Sheets of the bundled SR models, to look at: bicubic | PSNR model | GAN model (| ground truth).

    python reports/sr_sheets.py --set14 ../shared/data/bench/Set14 --out reports/sr_x4

One sheet of the example images (gray low-resolution inputs as shipped) and one of Set14 crops (a 64x64
low-resolution window from each image, made by the `cascade eval sr` protocol), gray as the models see them.
Also prints each method's 4-pixel grid amplitude on the full Set14 images (see ``grid_amplitude``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from cascade.evaluation.protocol import bicubic_up, downscale_gray, list_images, mod_crop, read_rgb, to_uint8
from cascade.evaluation.report import sheet, stack
from cascade.pipeline import Pipeline

CROP = 64  # low-resolution pixels per Set14 crop


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set14", type=Path, required=True)
    parser.add_argument("--examples", type=Path, default=Path("examples"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pipes = {m: Pipeline.from_pretrained(sr_model=m, only="sr", device="cpu") for m in ("psnr", "gan")}
    examples = [
        (np.asarray(Image.open(p).convert("L"), np.float32) / 255, None)
        for p in sorted(args.examples.glob("*.png"))
    ]
    crops, grids = [], {"bicubic": [], **{m: [] for m in pipes}, "ground truth": []}
    for path in list_images(args.set14):
        hr = mod_crop(read_rgb(path), 4)
        lr = downscale_gray(hr, 4)
        grids["bicubic"].append(grid_amplitude(to_uint8(bicubic_up(lr, 4))))
        for name, pipe in pipes.items():
            grids[name].append(grid_amplitude(upscale(pipe, lr)))
        grids["ground truth"].append(grid_amplitude(np.asarray(Image.fromarray(hr).convert("L"))))
        y, x = (max(0, side - CROP) // 2 for side in lr.shape)  # comic is 62 px wide
        window = lr[y : y + CROP, x : x + CROP]
        truth = np.asarray(Image.fromarray(hr).convert("L"))[4 * y : 4 * (y + CROP), 4 * x : 4 * (x + CROP)]
        crops.append((window, truth))
    args.out.mkdir(parents=True, exist_ok=True)
    rows(pipes, examples).save(args.out / "sheet_examples.png")
    rows(pipes, crops).save(args.out / "sheet_set14_crops.png")
    print(f"wrote {args.out}/sheet_examples.png and sheet_set14_crops.png")
    print("4-px grid amplitude on Set14 (8-bit levels, mean over images):")
    for name, values in grids.items():
        print(f"  {name:<13} {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
