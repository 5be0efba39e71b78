"""How much colour a per-photo saturation factor could buy, and whether anything short of the truth tells which
factor a photo wants.

For every photo (256x256, luma protocol, mirror-averaged, levels stretched, as ``cascade eval color`` scores
the bundled colorizer) the predicted a*b* is scored at factors 0 to 3: PSNR on RGB and colourfulness. Then:

- the **oracle** frontier: each photo at the factor that maximises PSNR + lambda * CF (it knows the truth), so
  the best any rule that picks one factor per photo could do, against one factor for all photos;
- each photo's best factor s* and how much of the oracle's gain comes from photos that want less colour;
- the colorizer's **uncertainty** about a photo (its mirror passes, two other render sizes, dropout left on over
  its encoder's features: each disagreement relative to the colour predicted) correlated with s*, and a factor
  ``c * exp(w . z)`` of those features fitted on the held-out photos and scored on the benchmarks against one
  factor at the same colourfulness;
- with ``--train-on``, the photo's **content**: a ridge regression of the truth's mean chroma on the frozen
  encoder's pooled features, fitted on training photos, and the same kind of factor from its prediction.

    python reports/saturation_oracle.py --fit-on ~/data/holdout_in600 ~/data/holdout_imagenet \\
        ~/data/holdout_scenes --score-on ../shared/data/bench/ImageNet100 ../shared/data/bench/Kodak24 \\
        --train-on ~/data/color_train --out eval/results/color_saturation_oracle.json
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from scipy.stats import pearsonr, spearmanr
from torch import nn

from cascade.evaluation import metrics
from cascade.evaluation.protocol import list_images, luma, read_rgb, resize_square, stored_8bit
from cascade.imageio import is_gray
from cascade.inference import join_chroma, predict_chroma
from cascade.pipeline import Pipeline
from color.lab import rgb_to_lab_np

FACTORS = np.round(np.arange(0, 3.001, 0.05), 2)
DROPOUT = 0.1  # the bundled recipe's channel dropout on the encoder's features, left on for the MC passes
MC_PASSES = 4
UNCERTAINTY = ("flip", "render128", "render224", "dropout", "chroma")
PER_FAMILY = 600  # training photos of each source family for the content regression
LAMBDAS = (0.0, 0.03, 0.06, 0.1)
RIDGE_ALPHAS = (1, 10, 100, 1000, 3000, 10000)

Rows = list[dict]


def gray_of(path: Path) -> tuple[np.ndarray, torch.Tensor] | None:
    """The photo as the benchmark shows it (256x256 uint8 RGB) and its gray input; None for a gray photo."""
    gt = resize_square(read_rgb(path), 256)
    return None if is_gray(gt) else (gt, torch.from_numpy(stored_8bit(luma(gt)))[None, None])


def at_factors(gray: torch.Tensor, ab: torch.Tensor, gt: np.ndarray) -> tuple[list[np.ndarray], list, list]:
    """The photo with ``ab`` at each of FACTORS, and each one's PSNR and CF."""
    outs = [join_chroma(gray, ab * float(s))[0].numpy() for s in FACTORS]
    return outs, [metrics.psnr_rgb(o, gt) for o in outs], [metrics.colorfulness(o) for o in outs]


def truth_chroma(gt: np.ndarray) -> float:
    """Mean a*b* magnitude of the ground truth."""
    lab = rgb_to_lab_np(gt)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def pooled_encoder(
    model: nn.Module, gray: torch.Tensor, render_size: int
) -> tuple[torch.Tensor, list[float]]:
    """The colorizer's a*b* for one photo (one pass, levels stretched) and what its frozen encoder saw there,
    pooled: each level's channel means, the last two's spreads (read by a hook, so the photo reaches the encoder
    as the colorizer shows it, and no second pass is made)."""
    seen: list[list[torch.Tensor]] = []
    handle = model.encoder.register_forward_hook(lambda module, inputs, out: seen.append(out))
    try:
        ab = predict_chroma(gray, model, render_size=render_size, levels=True)
    finally:
        handle.remove()
    if len(seen) != 1:
        raise RuntimeError(
            f"the encoder ran {len(seen)} times for one photo (tiled?): its features are not one view"
        )
    feats = seen[0]
    return ab, torch.cat([f.mean((2, 3))[0] for f in feats] + [f.std((2, 3))[0] for f in feats[-2:]]).tolist()


def photo_rows(folder: Path, pipe: Pipeline) -> Rows:
    """Per photo: PSNR and CF at each factor, the uncertainty features, its content and its truth's chroma."""
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
        if (photo := gray_of(path)) is None:
            continue
        gt, gray = photo
        with torch.inference_mode():
            one, pooled = pooled_encoder(model, gray, pipe.render_size)
            mirrored = chroma(gray.flip(-1)).flip(-1)
            ab = (one + mirrored) / 2  # what flip=True gives
            size = ab.norm(dim=1).mean().item()
            model.dropout.train()
            passes = torch.stack([chroma(gray, flip=True) for _ in range(MC_PASSES)])
            model.dropout.eval()
            uncertainty = {
                "chroma": size,
                "flip": (one - mirrored).norm(dim=1).mean().item() / size,
                "render128": spread(chroma(gray, render_size=128, flip=True), ab) / size,
                "render224": spread(chroma(gray, render_size=224, flip=True), ab) / size,
                "dropout": (passes - passes.mean(0)).norm(dim=2).mean().item() / size,
            }
            _, psnr, cf = at_factors(gray, ab, gt)
        rows.append(
            {
                "name": path.stem,
                "psnr": psnr,
                "cf": cf,
                "content": pooled,
                "truth_chroma": truth_chroma(gt),
                **uncertainty,
            }
        )
    return rows


def training_rows(folder: Path, pipe: Pipeline) -> Rows:
    """Content and truth chroma of up to PER_FAMILY training photos of each family (``FAMILY__name`` files)."""
    families: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        families.setdefault(path.name.split("__")[0], []).append(path)
    rng, rows = random.Random(0), []
    for paths in families.values():
        for path in paths if len(paths) <= PER_FAMILY else rng.sample(paths, PER_FAMILY):
            if (photo := gray_of(path)) is None:
                continue
            with torch.inference_mode():
                _, pooled = pooled_encoder(pipe.color, photo[1], pipe.render_size)
            rows.append({"content": pooled, "truth_chroma": truth_chroma(photo[0])})
    return rows


def fit_ridge(rows: Rows) -> tuple[Callable[[Rows], np.ndarray], dict]:
    """Ridge regression of log(1 + truth chroma) on the pooled content, its strength by 5-fold CV."""
    X = np.array([r["content"] for r in rows])
    y = np.log1p([r["truth_chroma"] for r in rows])
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / std

    def solve(Z: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
        return np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))

    folds = np.array_split(np.random.default_rng(0).permutation(len(y)), 5)
    cv = {}
    for alpha in RIDGE_ALPHAS:
        errors = []
        for fold in folds:
            train = np.setdiff1d(np.arange(len(y)), fold)
            w = solve(Z[train], y[train], alpha)
            errors.append(((Z[fold] @ w + y[train].mean() - y[fold]) ** 2).mean())
        cv[alpha] = float(np.mean(errors))
    alpha = min(cv, key=cv.get)
    w, offset = solve(Z, y, alpha), y.mean()

    def predict(rows: Rows) -> np.ndarray:
        return (np.array([r["content"] for r in rows]) - mean) / std @ w + offset

    return predict, {"photos": len(y), "alpha": alpha, "cv_mse": cv[alpha], "variance": float(y.var())}


def uncertainty_features(rows: Rows) -> np.ndarray:
    return np.log(np.array([[max(r[k], 1e-4) for k in UNCERTAINTY] for r in rows]))


def content_features(predict: Callable[[Rows], np.ndarray]) -> Callable[[Rows], np.ndarray]:
    """The predicted truth chroma against the colour the colorizer predicts (both as logs), and the latter."""

    def features(rows: Rows) -> np.ndarray:
        own = np.log([r["chroma"] for r in rows])
        return np.column_stack([predict(rows) - own, own])

    return features


def at(table: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Each photo's value (row of ``table`` over FACTORS) at its own factor, interpolated linearly."""
    step = FACTORS[1] - FACTORS[0]
    s = np.clip(factors, FACTORS[0], FACTORS[-1])
    i = np.minimum((s / step).astype(int), len(FACTORS) - 2)
    t = (s - FACTORS[i]) / step
    r = np.arange(len(table))
    return table[r, i] * (1 - t) + table[r, i + 1] * t


def scores(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """(photos, factors) PSNR and CF."""
    return np.array([r["psnr"] for r in rows]), np.array([r["cf"] for r in rows])


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
        "share_of_oracle_gain_from_top_10_photos": float(np.sort(gain)[::-1][:10].sum() / gain.sum()),
    }


def fit_rule(psnr: np.ndarray, cf: np.ndarray, z: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """The factor ``c * exp(w . z)`` that maximises mean PSNR + lam * mean CF."""

    def loss(v: np.ndarray) -> float:
        s = np.exp(v[0] + z @ v[1:])
        return -(at(psnr, s).mean() + lam * at(cf, s).mean())

    starts = [np.r_[np.log(c0), np.zeros(z.shape[1])] for c0 in (0.8, 1.2, 1.6)]
    best = min(
        (minimize(loss, v0, method="Nelder-Mead", options={"maxiter": 4000}) for v0 in starts),
        key=lambda r: r.fun,
    )
    return float(np.exp(best.x[0])), best.x[1:]


def rules(sets: dict[str, Rows], fit_on: list[str], features: Callable[[Rows], np.ndarray]) -> list[dict]:
    """Per lambda, the factor rule fitted on ``fit_on`` and scored on every set against one factor."""
    fit_rows = [r for f in fit_on for r in sets[f]]
    psnr, cf = scores(fit_rows)
    feats = features(fit_rows)
    mean, std = feats.mean(0), feats.std(0)
    out = []
    for lam in LAMBDAS:
        c, w = fit_rule(psnr, cf, (feats - mean) / std, lam)
        rule: dict = {"lambda": lam, "c": c, "w": w.round(3).tolist(), "sets": {}}
        for folder, rows in sets.items():
            p, k = scores(rows)
            s = c * np.exp((features(rows) - mean) / std @ w)
            got_cf = float(at(k, s).mean())
            rule["sets"][folder] = {
                "psnr": float(at(p, s).mean()),
                "cf": got_cf,
                "one_factor_same_cf": one_factor_at(p, k, got_cf),
            }
        out.append(rule)
    return out


def correlations(rows: Rows, features: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Rank correlation of each feature column with the photos' best factors."""
    best = FACTORS[scores(rows)[0].argmax(1)]
    return {k: float(spearmanr(features[:, i], best)[0]) for i, k in enumerate(names)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit-on", nargs="+", type=Path, required=True, help="held-out photo folders")
    ap.add_argument("--score-on", nargs="+", type=Path, required=True, help="benchmark folders")
    ap.add_argument("--train-on", type=Path, help="training photos (FAMILY__name files) for the content rule")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    pipe = Pipeline.from_pretrained(None, only="color")
    fit_on = [str(f) for f in args.fit_on]
    sets = {str(f): photo_rows(f, pipe) for f in [*args.fit_on, *args.score_on]}
    fit_rows = [r for f in fit_on for r in sets[f]]
    report: dict = {
        "factors": FACTORS.tolist(),
        "sets": {folder: summary(*scores(rows)) for folder, rows in sets.items()},
        "uncertainty": {
            "features": UNCERTAINTY,
            "spearman_with_best_factor": correlations(fit_rows, uncertainty_features(fit_rows), UNCERTAINTY),
            "rules": rules(sets, fit_on, uncertainty_features),
        },
    }
    if args.train_on:
        predict, ridge = fit_ridge(training_rows(args.train_on, pipe))
        truth = np.log1p([r["truth_chroma"] for r in fit_rows])
        own = np.log([r["chroma"] for r in fit_rows])
        features = content_features(predict)
        report["content"] = {
            "ridge": ridge,
            "pearson_with_truth_chroma": {
                "predicted": float(pearsonr(predict(fit_rows), truth)[0]),
                "colorizer": float(pearsonr(own, truth)[0]),
            },
            "spearman_with_best_factor": correlations(
                fit_rows,
                np.column_stack([features(fit_rows)[:, 0], truth - own]),
                ("predicted_over_colorizer", "truth_over_colorizer"),
            ),
            "rules": rules(sets, fit_on, features),
        }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for folder, s in report["sets"].items():
        print(folder, {k: s[k] for k in ("factor_1", "oracle_best_psnr", "oracle_at_cf", "one_factor_at_cf")})
    for part in ("uncertainty", "content"):
        if part in report:
            print(part, {k: v for k, v in report[part].items() if k not in ("rules", "features")})
            for rule in report[part]["rules"]:
                print(
                    " ",
                    rule["lambda"],
                    {Path(f).name: {k: round(v, 2) for k, v in x.items()} for f, x in rule["sets"].items()},
                )


if __name__ == "__main__":
    main()
