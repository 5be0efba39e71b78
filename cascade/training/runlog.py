"""What a run leaves to look at: loss and validation history as CSV (and TensorBoard when it is installed),
a loss-curve PNG, and sample grids. Only the first process of a torchrun job writes."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from cascade.atomic import atomic_path

LOSS_CSV, VAL_CSV, CURVE_PNG, SAMPLES = "loss.csv", "val.csv", "loss.png", "samples"
FINAL, BEST = "pipeline", "best"  # the exported pipeline folders: the last weights, the best validated
VALIDATED = "validated"  # with train.keep_validated, a pipeline folder per validation step
PRETRAINED = "pretrained"  # ImageNet weights converted for timm
LOCK = "train.lock"  # held by the process training into the folder


class RunLog:
    """Appends rows to ``loss.csv`` and ``val.csv`` in ``folder``, with fixed columns (a term that does not
    apply yet, like the GAN's during pre-training, is left blank). On resume, rows logged after the checkpoint
    by the killed run are dropped, so the history has no step twice."""

    def __init__(self, folder: Path, loss_fields: list[str], val_fields: list[str], resume_step: int | None):
        self.folder = folder
        self.fields = {LOSS_CSV: ["step", *loss_fields], VAL_CSV: ["step", *val_fields]}
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tb"), purge_step=resume_step)
        except ImportError:  # TensorBoard is optional; the CSV files hold the same numbers
            pass
        for name, fields in self.fields.items():
            path = folder / name
            rows = read_csv(path) if resume_step is not None else []
            _write_rows(path, fields, [r for r in rows if int(r["step"]) <= (resume_step or 0)])

    def loss(self, step: int, values: dict[str, float]) -> None:
        self._append(LOSS_CSV, step, values)

    def val(self, step: int, values: dict[str, float]) -> None:
        self._append(VAL_CSV, step, values, prefix="val/")

    def _append(self, name: str, step: int, values: dict[str, float], prefix: str = "") -> None:
        row = {"step": step, **{k: f"{v:.6g}" for k, v in values.items()}}
        with (self.folder / name).open("a", newline="") as f:
            csv.DictWriter(f, self.fields[name]).writerow(row)
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(prefix + k, v, step)

    def curves(self) -> None:
        """Redraw ``loss.png``: every loss term and every validation metric against the step."""
        losses, vals = read_csv(self.folder / LOSS_CSV), read_csv(self.folder / VAL_CSV)
        if not losses and not vals:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        skip = {"step", "lr", "img_per_s"}
        loss_keys = [k for k in (losses[0] if losses else {}) if k not in skip]
        val_keys = [k for k in (vals[0] if vals else {}) if k != "step"]
        panels = loss_keys + val_keys
        cols = min(3, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3 * rows), squeeze=False)
        for ax, key in zip(axes.flat, panels):
            data = losses if key in loss_keys else vals
            pts = [(float(r["step"]), float(r[key])) for r in data if r.get(key) not in (None, "")]
            if pts:
                ax.plot(*zip(*pts), marker="." if data is vals else None)
            ax.set_title(("val " if data is vals else "") + key)
            ax.set_xlabel("step")
            # five ticks: five-digit steps overlap at matplotlib's default of about nine
            ax.locator_params(axis="x", nbins=5)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.tight_layout()
        with atomic_path(self.folder / CURVE_PNG) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)

    def samples(self, step: int, rows: torch.Tensor) -> Path:
        """Save (N*3, C, H, W) images in [0, 1] as a grid of N rows: input | output | target."""
        from torchvision.utils import save_image

        path = self.folder / SAMPLES / f"step_{step:07d}.png"
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            save_image(rows.float().clamp(0, 1).cpu(), tmp, nrow=3, padding=2, pad_value=1.0, format="png")
        return path

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
