"""What an evaluation run produces: per-image and mean scores per method, a terminal table, a JSON file and
side-by-side sheets."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cascade.atomic import atomic_path

GROUND_TRUTH = "ground_truth"
LABELS = {  # metric key -> table heading, decimals
    "psnr_y": ("PSNR-Y", 2),
    "ssim_y": ("SSIM-Y", 4),
    "psnr": ("PSNR", 2),
    "ssim": ("SSIM", 4),
    "ciede2000": ("CIEDE2000", 2),
    "colorfulness": ("CF", 2),
    "delta_colorfulness": ("dCF", 2),
    "niqe": ("NIQE", 3),
}
LABEL_HEIGHT = 14  # pixels of caption above each panel of a sheet


@dataclass
class Method:
    """One row of the table: a baseline, or an output of our networks (``model``)."""

    name: str
    description: str
    model: bool = False
    untrained: bool = False  # our networks with weights marked untrained: not a result to quote

    @property
    def label(self) -> str:
        return f"{self.name} (untrained)" if self.untrained else self.name


@dataclass
class EvalReport:
    mode: str
    dataset: Path
    protocol: str
    columns: list[str]  # metric keys shown in the table, in order
    methods: list[Method]
    settings: dict[str, Any]
    weights: dict[str, Any] | None
    images: list[dict[str, Any]] = field(default_factory=list)  # name, size, {method: {metric: value}}
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def means(self) -> dict[str, dict[str, float | None]]:
        """Mean of every metric per method (and of the ground truth's own scores), over the images that have
        it. ``delta_colorfulness`` is DDColor's |mean CF of outputs - mean CF of ground truth|."""
        out: dict[str, dict[str, float | None]] = {}
        for key in [m.name for m in self.methods] + [GROUND_TRUTH]:
            rows = [img[key] for img in self.images if key in img]
            metrics = sorted({k for r in rows for k in r})
            out[key] = {k: _mean([r.get(k) for r in rows]) for k in metrics}
        gt_cf = out[GROUND_TRUTH].get("colorfulness")
        for m in self.methods:
            cf = out[m.name].get("colorfulness")
            if cf is not None and gt_cf is not None:
                out[m.name]["delta_colorfulness"] = abs(cf - gt_cf)
        return out

    def to_json(self) -> dict[str, Any]:
        from cascade import __version__

        return {
            "mode": self.mode,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cascade_version": __version__,
            "dataset": {
                "name": self.dataset.name,
                "path": str(self.dataset),
                "images": len(self.images),
                "left_out": self.left_out,
            },
            "weights": self.weights,
            "settings": self.settings,
            "protocol": self.protocol,
            "methods": {
                m.name: {"description": m.description, "model": m.model, "untrained": m.untrained}
                for m in self.methods
            },
            "mean": self.means(),
            "images": self.images,
            "notes": self.notes,
        }

    def table(self) -> str:
        """The means as a fixed-width table; ``-`` where a method has no value for a metric."""
        means = self.means()
        rows = [(m.label, means[m.name]) for m in self.methods]
        if any(k in means[GROUND_TRUTH] for k in self.columns):
            rows.append(("ground truth", means[GROUND_TRUTH]))
        width = max(len(r[0]) for r in rows) + 2
        head = "method".ljust(width) + "".join(f"{LABELS[c][0]:>11}" for c in self.columns)
        lines = [self.title(), head]
        for label, values in rows:
            cells = []
            for c in self.columns:
                v = values.get(c)
                cells.append(f"{'-' if v is None else f'{v:.{LABELS[c][1]}f}':>11}")
            lines.append(label.ljust(width) + "".join(cells))
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def title(self) -> str:
        s = self.settings
        parts = [f"{self.dataset.name}: {len(self.images)} images", f"cascade eval {self.mode}"]
        if "scale" in s:
            parts.append(f"x{s['scale']}, {s['crop_border']}-px border cropped")
        if s.get("size"):
            parts.append(f"{s['size']}x{s['size']} px")
        return ", ".join(parts)


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else None


def _finite(value: Any) -> Any:
    """NaN and infinity (PSNR of identical images) are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(data), indent=2) + "\n", encoding="utf-8")
    return path


def save_report(report: EvalReport, path: str | Path) -> Path:
    """The report as JSON at ``path``, written atomically."""
    return write_json(report.to_json(), path)


def sheet(panels: list[tuple[str, np.ndarray]]) -> Image.Image:
    """Panels side by side, each captioned; smaller ones (the low-resolution input) are enlarged with
    nearest-neighbour to the height of the largest, so their pixels show as they are."""
    height = max(p.shape[0] for _, p in panels)
    images = []
    for _, arr in panels:
        img = Image.fromarray(arr)
        if img.height != height:
            img = img.resize((round(img.width * height / img.height), height), Image.Resampling.NEAREST)
        images.append(img)
    out = Image.new("RGB", (sum(i.width for i in images), height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(out)
    x = 0
    for (caption, _), img in zip(panels, images):
        out.paste(img, (x, LABEL_HEIGHT))
        draw.text((x + 3, 1), caption, fill="black")
        x += img.width
    return out


def stack(rows: list[Image.Image]) -> Image.Image:
    """Sheets one above the other, on white, as wide as the widest."""
    out = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height
    return out
