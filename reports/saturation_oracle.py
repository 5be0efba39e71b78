"""How much colour a per-photo saturation factor could buy, and whether the colorizer's own uncertainty tells
which factor a photo wants.

For every photo (256x256, luma protocol, mirror-averaged, levels stretched, as ``cascade eval color`` scores
the bundled colorizer) the predicted a*b* is scored at factors 0 to 3: PSNR on RGB and colourfulness. Then:

- the **oracle** frontier: each photo at the factor that maximises PSNR + lambda * CF (it knows the truth), so
  the best any rule that picks one factor per photo could do, against one factor for all photos;
- each photo's best factor s* and how much of the oracle's gain comes from photos that want less colour;
- the colorizer's **uncertainty** about a photo (its mirror passes, two other render sizes, dropout left on over
  its encoder's features: each disagreement relative to the colour predicted) correlated with s*, and a factor
  ``c * exp(w . z)`` of those features fitted on the held-out photos and scored on the benchmarks against one
  factor at the same colourfulness.

    python reports/saturation_oracle.py --fit-on ~/data/holdout_in600 ~/data/holdout_imagenet \\
        ~/data/holdout_scenes --score-on ../shared/data/bench/ImageNet100 ../shared/data/bench/Kodak24 \\
        --out eval/results/color_saturation_oracle.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from scipy.stats import spearmanr
from torch import nn

from cascade.evaluation import metrics
from cascade.evaluation.protocol import list_images, luma, read_rgb, resize_square, stored_8bit
from cascade.imageio import is_gray
from cascade.inference import join_chroma, predict_chroma
from cascade.pipeline import Pipeline

FACTORS = np.round(np.arange(0, 3.001, 0.05), 2)
DROPOUT = 0.1  # the bundled recipe's channel dropout on the encoder's features, left on for the MC passes
MC_PASSES = 4
FEATURES = ("flip", "render128", "render224", "dropout", "chroma")
LAMBDAS = (0.0, 0.03, 0.06, 0.1)


def photo_rows(folder: Path, pipe: Pipeline) -> list[dict]:
    """Per photo: PSNR and CF at each factor, and the uncertainty features."""
    model = pipe.color
    model.dropout = nn.Dropout2d(DROPOUT).eval()  # Identity in the exported model: a module to switch on

    def chroma(gray: torch.Tensor, **kw) -> torch.Tensor:
        kw.setdefault("render_size", pipe.render_size)
        return predict_chroma(gray, model, levels=True, **kw)

    def spread(ab: torch.Tensor, ref: torch.Tensor) -> float:
        ab = F.interpolate(ab, size=ref.shape[-2:], mode="bilinear", align_corners=False)
        return (ab - ref).norm(dim=1).mean().item()

    rows = []
    for path in list_images(folder):
        gt = resize_square(read_rgb(path), 256)
        if is_gray(gt):
            continue
        gray = torch.from_numpy(stored_8bit(luma(gt)))[None, None]
        with torch.inference_mode():
            one, mirrored = chroma(gray), chroma(gray.flip(-1)).flip(-1)
            ab = (one + mirrored) / 2  # what flip=True gives
            size = ab.norm(dim=1).mean().item()
            model.dropout.train()
            passes = torch.stack([chroma(gray, flip=True) for _ in range(MC_PASSES)])
            model.dropout.eval()
            features = {
                "chroma": size,
                "flip": (one - mirrored).norm(dim=1).mean().item() / size,
                "render128": spread(chroma(gray, render_size=128, flip=True), ab) / size,
                "render224": spread(chroma(gray, render_size=224, flip=True), ab) / size,
                "dropout": (passes - passes.mean(0)).norm(dim=2).mean().item() / size,
            }
            outs = [join_chroma(gray, ab * float(s))[0].numpy() for s in FACTORS]
        rows.append(
            {
                "name": path.stem,
                "psnr": [metrics.psnr_rgb(o, gt) for o in outs],
                "cf": [metrics.colorfulness(o) for o in outs],
                **features,
            }
        )
    return rows


def at(table: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Each photo's value (row of ``table`` over FACTORS) at its own factor, interpolated linearly."""
    step = FACTORS[1] - FACTORS[0]
    s = np.clip(factors, FACTORS[0], FACTORS[-1])
    i = np.minimum((s / step).astype(int), len(FACTORS) - 2)
    t = (s - FACTORS[i]) / step
    r = np.arange(len(table))
    return table[r, i] * (1 - t) + table[r, i + 1] * t


def arrays(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    psnr = np.array([r["psnr"] for r in rows])
    cf = np.array([r["cf"] for r in rows])
    feats = np.log(np.array([[max(r[k], 1e-4) for k in FEATURES] for r in rows]))
    return psnr, cf, feats


def one_factor_at(psnr: np.ndarray, cf: np.ndarray, target_cf: float) -> float:
    """Mean PSNR of one factor for all photos at the mean colourfulness ``target_cf``, interpolated."""
    return float(np.interp(target_cf, cf.mean(0), psnr.mean(0)))


def summary(psnr: np.ndarray, cf: np.ndarray) -> dict:
    best = FACTORS[psnr.argmax(1)]
    one = int(np.argmin(abs(FACTORS - 1)))
    gain = psnr.max(1) - psnr[:, one]
    frontier = []
    for lam in np.concatenate([[0], np.geomspace(0.002, 1.0, 80)]):
        k = np.argmax(psnr + lam * cf, axis=1)
        r = np.arange(len(psnr))
        frontier.append((float(cf[r, k].mean()), float(psnr[r, k].mean())))
    oracle_cf, oracle_psnr = np.array(sorted(frontier)).T
    return {
        "photos": len(psnr),
        "gray_psnr": float(psnr[:, 0].mean()),
        "factor_1": {"psnr": float(psnr[:, one].mean()), "cf": float(cf[:, one].mean())},
        "one_factor": {
            f"{s:g}": [float(psnr[:, i].mean()), float(cf[:, i].mean())] for i, s in enumerate(FACTORS)
        },
        "oracle_best_psnr": float(psnr.max(1).mean()),
        "oracle_at_cf": {
            str(c): float(np.interp(c, oracle_cf, oracle_psnr))
            for c in (15, 20, 25, 32)
            if c <= oracle_cf.max()
        },
        "one_factor_at_cf": {str(c): one_factor_at(psnr, cf, c) for c in (15, 20, 25, 32)},
        "best_factor_percentiles_10_25_50_75_90": np.percentile(best, [10, 25, 50, 75, 90]).round(2).tolist(),
        "share_best_below_0.5": float((best < 0.5).mean()),
        "share_of_oracle_gain_from_best_below_1": float(gain[best < 1].sum() / gain.sum()),
    }


def fit_rule(psnr: np.ndarray, cf: np.ndarray, feats: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """The factor ``c * exp(w . z)`` (z: standardised features) that maximises mean PSNR + lam * mean CF."""

    def loss(v: np.ndarray) -> float:
        s = np.exp(v[0] + feats @ v[1:])
        return -(at(psnr, s).mean() + lam * at(cf, s).mean())

    starts = [np.r_[np.log(c0), np.zeros(feats.shape[1])] for c0 in (0.8, 1.2, 1.6)]
    best = min(
        (minimize(loss, v0, method="Nelder-Mead", options={"maxiter": 4000}) for v0 in starts),
        key=lambda r: r.fun,
    )
    return float(np.exp(best.x[0])), best.x[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit-on", nargs="+", type=Path, required=True, help="held-out photo folders")
    ap.add_argument("--score-on", nargs="+", type=Path, required=True, help="benchmark folders")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    pipe = Pipeline.from_pretrained(None, only="color")
    rows = {str(f): photo_rows(f, pipe) for f in [*args.fit_on, *args.score_on]}
    report: dict = {"factors": FACTORS.tolist(), "features": FEATURES, "sets": {}, "rules": []}
    for folder, r in rows.items():
        report["sets"][folder] = summary(*arrays(r)[:2])

    fit_psnr, fit_cf, fit_feats = (
        np.concatenate(x) for x in zip(*(arrays(rows[str(f)]) for f in args.fit_on))
    )
    mean, std = fit_feats.mean(0), fit_feats.std(0)
    best = FACTORS[fit_psnr.argmax(1)]
    report["spearman_with_best_factor"] = {
        k: float(spearmanr(fit_feats[:, i], best)[0]) for i, k in enumerate(FEATURES)
    }
    for lam in LAMBDAS:
        c, w = fit_rule(fit_psnr, fit_cf, (fit_feats - mean) / std, lam)
        rule: dict = {"lambda": lam, "c": c, "w": dict(zip(FEATURES, w.round(3).tolist())), "sets": {}}
        for folder, r in rows.items():
            psnr, cf, feats = arrays(r)
            s = c * np.exp((feats - mean) / std @ w)
            got_cf = float(at(cf, s).mean())
            rule["sets"][folder] = {
                "psnr": float(at(psnr, s).mean()),
                "cf": got_cf,
                "one_factor_same_cf": one_factor_at(psnr, cf, got_cf),
            }
        report["rules"].append(rule)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for folder, s in report["sets"].items():
        print(folder, {k: s[k] for k in ("factor_1", "oracle_best_psnr", "oracle_at_cf", "one_factor_at_cf")})
    print("spearman", {k: round(v, 2) for k, v in report["spearman_with_best_factor"].items()})
    for rule in report["rules"]:
        print(
            rule["lambda"],
            {Path(f).name: {k: round(v, 2) for k, v in x.items()} for f, x in rule["sets"].items()},
        )


if __name__ == "__main__":
    main()
