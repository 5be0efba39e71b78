"""How much a faded print costs the colorizer, and how much of it the stretched input (``--color-levels``) wins
back: the held-out photos at 256 px, each faded by its own seeded random map (blacks lifted to 0.1-0.3, whites
dulled to 0.65-0.9, and with ``--gamma`` a gamma of 0.6-1.6 too), colourized from the faded gray with the levels
stretched or not, and scored against the original with the *unfaded* gray as L*, so that only the colours are
compared. Writes one JSON of mean PSNR / CIEDE2000 / CF per condition.

    python reports/faded_levels.py --data ~/data/holdout_in600 ~/data/holdout_imagenet ~/data/holdout_scenes \\
        --json eval/results/color_holdout/faded_levels.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cascade.evaluation import metrics
from cascade.evaluation.protocol import list_images, luma, read_rgb, resize_square, stored_8bit
from cascade.imageio import is_gray
from cascade.inference import join_chroma, predict_chroma
from cascade.pipeline import Pipeline

SIZE = 256
SEED = 0


def fade(gray: np.ndarray, rng: np.random.Generator, gamma: bool) -> np.ndarray:
    """A faded print of ``gray``: lifted blacks, dull whites (and a tone curve with ``gamma``), stored as 8 bits."""
    black, white = rng.uniform(0.1, 0.3), rng.uniform(0.65, 0.9)
    curve = gray ** rng.uniform(0.6, 1.6) if gamma else gray
    return stored_8bit(black + (white - black) * curve)


def colours(pipe: Pipeline, seen: np.ndarray, gray: np.ndarray, levels: bool) -> np.ndarray:
    """(H, W, 3) uint8: a*b* predicted from ``seen``, joined with the unfaded ``gray``."""
    with torch.inference_mode():
        ab = predict_chroma(
            torch.from_numpy(seen)[None, None],
            pipe.color,
            render_size=pipe.render_size,
            flip=pipe.color_flip,
            levels=levels,
        )
        return join_chroma(torch.from_numpy(gray)[None, None], ab)[0].numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", type=Path, required=True, help="folders of colour photos")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--gamma", action="store_true", help="fade the tone curve too")
    args = ap.parse_args()
    pipe = Pipeline.from_pretrained(None, only="color")
    rng = np.random.default_rng(SEED)
    conditions = {
        "unfaded": ("gray", False),
        "unfaded, levels": ("gray", True),
        "faded": ("faded", False),
        "faded, levels": ("faded", True),
    }
    scores: dict[str, list[list[float]]] = {name: [] for name in conditions}
    for folder in args.data:
        for path in list_images(folder):
            gt = resize_square(read_rgb(path), SIZE)
            if is_gray(gt):
                continue
            gray = stored_8bit(luma(gt))
            inputs = {"gray": gray, "faded": fade(gray, rng, args.gamma)}
            for name, (seen, levels) in conditions.items():
                out = colours(pipe, inputs[seen], gray, levels)
                scores[name].append(
                    [metrics.psnr_rgb(out, gt), metrics.ciede2000(out, gt), metrics.colorfulness(out)]
                )
    result = {
        "data": [str(d) for d in args.data],
        "photos": len(scores["faded"]),
        "size": SIZE,
        "gamma": args.gamma,
        "seed": SEED,
        "mean": {
            name: dict(zip(("psnr", "ciede2000", "colorfulness"), np.mean(rows, axis=0).round(4).tolist()))
            for name, rows in scores.items()
        },
    }
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    for name, m in result["mean"].items():
        print(f"{name:>16}: PSNR {m['psnr']:.2f}  CIEDE2000 {m['ciede2000']:.2f}  CF {m['colorfulness']:.1f}")


if __name__ == "__main__":
    main()
