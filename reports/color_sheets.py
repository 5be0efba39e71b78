"""Sheets of colorizers side by side, to look at: gray input | each colorizer (| ground truth).

    python reports/color_sheets.py --kodak ../shared/data/bench/Kodak24 --out reports/colorizer \
        --model "Lite0 UNet (bundled)=cascade/pretrained/default" --model "pix2pix UNet=runs/color_pix2pix/pipeline"

One sheet of Kodak24 (each photo made gray and colorized at its native 768x512, as `cascade run` would; shown
at half size), one of the example images through the whole cascade (the bundled SR model, then each
colorizer), and with ``--old`` one of real gray photographs colorized at their own size. Sheets are JPEG
(quality 90) to keep the repository small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from cascade.evaluation.protocol import list_images, luma, read_rgb, to_uint8
from cascade.evaluation.report import sheet, stack
from cascade.pipeline import Pipeline

DISPLAY_HEIGHT = 256  # Kodak24 panels are shown at this height


def shrink(rgb: np.ndarray, height: int) -> np.ndarray:
    if rgb.shape[0] <= height:
        return rgb
    width = round(rgb.shape[1] * height / rgb.shape[0])
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))


def kodak_sheet(colorizers: dict[str, Pipeline], folder: Path) -> Image.Image:
    rows = []
    for path in list_images(folder):
        truth = read_rgb(path)
        gray = to_uint8(luma(truth))
        panels = [("gray input", np.stack([gray] * 3, -1))]
        panels += [(name, np.asarray(pipe(gray).convert("RGB"))) for name, pipe in colorizers.items()]
        panels.append(("ground truth", truth))
        rows.append(sheet([(caption, shrink(p, DISPLAY_HEIGHT)) for caption, p in panels]))
    return stack(rows)


def examples_sheet(cascades: dict[str, Pipeline], folder: Path) -> Image.Image:
    rows = []
    for path in sorted(folder.glob("*.png")):
        gray = Image.open(path).convert("L")
        panels = [(f"input {gray.width}x{gray.height}", np.stack([np.asarray(gray)] * 3, -1))]
        panels += [(name, np.asarray(pipe(gray).convert("RGB"))) for name, pipe in cascades.items()]
        rows.append(sheet(panels))
    return stack(rows)


def gray_sheet(colorizers: dict[str, Pipeline], folder: Path) -> Image.Image:
    """Gray photographs with no ground truth (OldPhotos12): gray | each colorizer, at native size."""
    rows = []
    for path in list_images(folder):
        gray = np.asarray(Image.open(path).convert("L"))
        panels = [("gray photograph", np.stack([gray] * 3, -1))]
        panels += [(name, np.asarray(pipe(gray).convert("RGB"))) for name, pipe in colorizers.items()]
        rows.append(sheet([(caption, shrink(p, DISPLAY_HEIGHT)) for caption, p in panels]))
    return stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PIPELINE_FOLDER")
    parser.add_argument("--kodak", type=Path, required=True)
    parser.add_argument("--examples", type=Path, default=Path("examples"))
    parser.add_argument(
        "--old", type=Path, help="A folder of gray photographs, e.g. ../shared/data/bench/OldPhotos12"
    )
    parser.add_argument(
        "--without-levels",
        action="store_true",
        help="Each model a second time as it colours without --color-levels (the photo's own levels)",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    colorizers = {}
    for item in args.model:
        name, _, folder = item.partition("=")
        colorizers[name] = Pipeline.from_pretrained(folder, only="color", device="cpu")
        if args.without_levels:
            colorizers[f"{name}, levels off"] = Pipeline.from_pretrained(
                folder, only="color", device="cpu", color_levels=False
            )
    sr = Pipeline.from_pretrained(only="sr", device="cpu").sr
    cascades = {
        f"SR + {name}": Pipeline(
            sr,
            pipe.color,
            render_size=pipe.render_size,
            saturation=pipe.saturation,
            color_levels=pipe.color_levels,
            device="cpu",
        )
        for name, pipe in colorizers.items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    kodak_sheet(colorizers, args.kodak).save(args.out / "sheet_kodak24.jpg", quality=90)
    examples_sheet(cascades, args.examples).save(args.out / "sheet_examples.jpg", quality=90)
    if args.old:
        gray_sheet(colorizers, args.old).save(args.out / "sheet_oldphotos.jpg", quality=90)
    print(f"wrote the sheets into {args.out}")


if __name__ == "__main__":
    main()
