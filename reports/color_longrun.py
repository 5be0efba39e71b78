"""The long colorizer run's curves, for the report: validation PSNR against the gray input's, and colorfulness
against the ground truth's, by step and by CPU-hour; the run's CSV files are copied beside the figure.

    python reports/color_longrun.py --run ~/runs/color --out reports/colorizer/longrun
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cascade.training.runlog import LOSS_CSV, VAL_CSV, read_csv


def cpu_hours(losses: list[dict]) -> dict[int, float]:
    """Step -> training hours so far, from each logged window's images/s (batch 16)."""
    hours, total, last = {0: 0.0}, 0.0, 0
    for row in losses:
        step = int(row["step"])
        total += (step - last) * 16 / float(row["img_per_s"]) / 3600
        hours[step], last = total, step
    return hours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses, vals = read_csv(args.run / LOSS_CSV), read_csv(args.run / VAL_CSV)
    hours = cpu_hours(losses)
    steps = [int(r["step"]) for r in vals]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(steps, [float(r["psnr"]) for r in vals], "o-", label="colorizer (EMA weights)")
    ax1.plot(steps, [float(r["psnr_gray"]) for r in vals], "--", label="gray input")
    ax1.set(xlabel="step (batch 16, 128 px)", ylabel="validation PSNR, RGB (dB)", title="PSNR")
    ax2.plot(steps, [float(r["colorfulness"]) for r in vals], "o-", label="colorizer")
    ax2.plot(steps, [float(r["colorfulness_gt"]) for r in vals], "--", label="ground truth")
    ax2.set(xlabel="step", ylabel="colorfulness (Hasler-Suesstrunk)", title="Colorfulness")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
        top = ax.secondary_xaxis("top", functions=(lambda s: s, lambda s: s))
        ticks = [s for s in steps if s in hours][:: max(1, len(steps) // 5)]
        top.set_xticks(ticks, [f"{hours[s]:.1f} h" for s in ticks])
        top.set_xlabel("wall-clock training time on the 2-core CPU", fontsize=8)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "curves.png", dpi=110)
    for name in (LOSS_CSV, VAL_CSV):
        shutil.copyfile(args.run / name, args.out / name)
    print(f"wrote {args.out / 'curves.png'}; {len(vals)} validations, {hours[max(hours)]:.2f} training hours")


if __name__ == "__main__":
    main()
