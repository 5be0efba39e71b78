"""The colorizer screening table and curves: equal CPU budgets, one factor changed at a time.

    python reports/color_screening.py --runs ~/runs/screen --speeds ~/runs/screen/speed.txt --out reports/colorizer

Reads each run folder's ``val.csv`` (validation during training), ``loss.csv`` (images/s) and
``eval_holdout.json`` (``cascade eval color`` on the held-out folder, 256x256, luma protocol) and writes
``screening.md`` (the table) and ``screening.png`` (validation PSNR above the gray input, against the CPU-minutes
each run had). Budgets were equal by construction: steps = budget x the variant's images/s / batch, measured
beforehand on the idle machine (``--speeds``: lines ``NAME IMG_PER_S...``, 80 steps each, the last windows).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cascade.training.runlog import read_csv

# run folder -> (what changed, what the base has)
VARIANTS = {
    "base": "base: Lite0, ab at full size, L1, trained throughout, 128 px",
    "cs2": "ab at 1/2 size, upsampled",
    "cs4": "ab at 1/4 size, upsampled",
    "mse": "MSE loss",
    "huber": "Huber loss (delta 0.1)",
    "freeze": "encoder frozen for the first half",
    "lite2": "EfficientNet-Lite2 encoder",
    "s96": "96 px crops and render size",
    "s160": "160 px crops and render size",
}
BUDGET_MINUTES = 18


def summarize(run: Path, speed: float) -> dict:
    vals, losses = read_csv(run / "val.csv"), read_csv(run / "loss.csv")
    holdout = json.loads((run / "eval_holdout.json").read_text())["mean"]
    steps = int(losses[-1]["step"])
    last = vals[-1]
    return {
        "steps": steps,
        "img_per_s": speed,
        "val_psnr": float(last["psnr"]),
        "val_gray": float(last["psnr_gray"]),
        "val_cf": float(last["colorfulness"]),
        "holdout": holdout,
        "curve": [
            (int(r["step"]) / steps * BUDGET_MINUTES, float(r["psnr"]) - float(r["psnr_gray"])) for r in vals
        ],
    }


def table(rows: dict[str, dict]) -> str:
    gray = next(iter(rows.values()))["holdout"]["gray"]
    lines = [
        "| run | img/s (idle) | steps of 16 in 18 CPU-min | validation PSNR - gray (CF) | held-out PSNR / CIEDE2000 / CF |",
        "|---|---|---|---|---|",
        f"| gray input | | | | {gray['psnr']:.2f} / {gray['ciede2000']:.2f} / 0 |",
    ]
    for name, r in rows.items():
        h = r["holdout"]["colorizer"]
        lines.append(
            f"| {VARIANTS[name]} | {r['img_per_s']:.1f} | {r['steps']} | {r['val_psnr'] - r['val_gray']:+.2f} "
            f"({r['val_cf']:.1f}) | {h['psnr']:.2f} / {h['ciede2000']:.2f} / {h['colorfulness']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--speeds", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    speeds = {}
    # the CSV cells the file was cut from end in CR LF: read bytes, so that no CR splits a line
    for line in args.speeds.read_bytes().decode().replace("\r", "").split("\n"):
        if not line.strip():
            continue
        name, *values = line.split()
        speeds[name] = statistics.mean(map(float, values))
    same_net = statistics.mean(
        speeds[n] for n in ("base", "mse", "huber", "freeze_0")
    )  # one network, one cost
    speeds |= {"base": same_net, "mse": same_net, "huber": same_net, "freeze": same_net}
    rows = {
        n: summarize(args.runs / n, speeds[n])
        for n in VARIANTS
        if (args.runs / n / "eval_holdout.json").is_file()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "screening.md").write_text(table(rows) + "\n", encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, r in rows.items():
        x, y = zip(*r["curve"][1:])
        ax.plot(x, y, marker="o", label=VARIANTS[name])
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("CPU-minutes of the 18-minute budget")
    ax.set_ylabel("validation PSNR above the gray input (dB)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "screening.png", dpi=110)
    print(table(rows))


if __name__ == "__main__":
    main()
