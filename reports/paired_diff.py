"""Paired per-photo PSNR differences between two colorizers scored by ``cascade eval color --json`` on the same
photos: the mean difference, its standard error and how many photos gain. Two models' means on ~100 photos
each carry ~0.3 dB of spread, their paired difference a tenth of that, so this is what says whether a change
is real. Each argument pair is a baseline JSON and a candidate JSON; several pairs (e.g. the held-out parts)
are pooled, each photo counted once.

    python reports/paired_diff.py eval/results/eval_color_ImageNet100_log6k_flip.json \\
        eval/results/eval_color_ImageNet100_drop_6000_flip.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def per_photo(path: Path) -> dict[str, float]:
    """Photo name -> the colorizer's PSNR in one ``cascade eval color`` JSON."""
    return {im["name"]: im["colorizer"]["psnr"] for im in json.loads(path.read_text())["images"]}


def paired(pairs: list[tuple[Path, Path]]) -> tuple[float, float, int, int]:
    """Mean candidate-minus-baseline PSNR, its standard error, photos that gain, photos in all."""
    diffs: dict[str, float] = {}
    for base_path, cand_path in pairs:
        base, cand = per_photo(base_path), per_photo(cand_path)
        missing = base.keys() ^ cand.keys()
        if missing:
            raise SystemExit(f"{cand_path}: not the photos of {base_path} ({len(missing)} differ)")
        diffs |= {name: cand[name] - base[name] for name in base}
    values = list(diffs.values())
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return statistics.mean(values), se, sum(v > 0 for v in values), len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="+", type=Path, help="BASELINE CANDIDATE [BASELINE CANDIDATE ...]")
    args = ap.parse_args()
    if len(args.json) % 2:
        ap.error("give the JSON files in pairs: baseline, candidate")
    mean, se, gains, n = paired(list(zip(args.json[::2], args.json[1::2])))
    print(f"{mean:+.3f} dB +- {se:.3f} (paired, {n} photos, {gains} gain)")


if __name__ == "__main__":
    main()
