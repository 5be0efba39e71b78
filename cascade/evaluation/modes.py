"""The three evaluations: super-resolution, colorization, and the whole cascade, each with its baselines.

Each mode says how a ground-truth image becomes the model's input (``prepare``), which outputs it compares
(``outputs``) and with which metrics (``score``); ``_evaluate`` runs that over a folder a few images at a time,
so memory stays bounded by the chunk and the Pipeline's tiles, whatever the size of the set.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cascade.config import load_yaml
from cascade.evaluation import metrics
from cascade.evaluation.protocol import (
    CASCADE_PROTOCOL,
    COLOR_PROTOCOL,
    GRAY_FROM,
    REALISTIC_FROM,
    REALISTIC_TO,
    SR_PROTOCOL,
    bicubic_up,
    downscale_gray,
    downscale_rgb,
    gray_rgb8,
    lightness_gray,
    list_images,
    luma,
    mod_crop,
    read_rgb,
    realistic_lr,
    resize_square,
    stored_8bit,
)
from cascade.evaluation.report import GROUND_TRUTH, EvalReport, Method, sheet
from cascade.imageio import GrayImage, is_gray, write_image
from cascade.pipeline import NoBundledWeights, Pipeline, bundled_config
from cascade.weights import CONFIG_NAME
from color.lab import rgb_to_lab_np

CHUNK = 8  # ground-truth images held in memory at a time (the networks batch within a chunk)
SCORE_THREADS = min(4, os.cpu_count() or 1)  # the metrics are numpy/OpenCV/skimage code that releases the GIL


@dataclass
class Sample:
    name: str  # file stem
    gt: np.ndarray  # (H, W, 3) uint8 ground truth
    gray: np.ndarray  # (h, w) float32 in [0, 1]: what the networks get


Scores = dict[str, float | None]


@dataclass
class Scoring:
    """How a mode scores: ``reference`` computes once per image what every output is compared with (the
    ground truth in Lab, its colorfulness), ``score`` rates one (H, W, 3) uint8 output against the ground
    truth, ``ground_truth`` gives the ground truth's own row (its NIQE, its colorfulness)."""

    reference: Callable[[np.ndarray], dict[str, Any]]
    score: Callable[[np.ndarray, np.ndarray, dict[str, Any]], Scores]
    ground_truth: Callable[[np.ndarray, dict[str, Any]], Scores]


# --- loading weights -------------------------------------------------------------------------------------------


def load_for_eval(
    weights: str | Path | None, baseline_only: bool = False, stages: tuple[str, ...] = (), **settings
) -> tuple[Pipeline | None, dict[str, Any] | None, list[str]]:
    """The Pipeline to score (None: baselines only, also when the bundled weights lack one of ``stages``), a
    description of its weights for the report, and notes for the user. Raises ConfigError/ValueError/OSError
    for weights that cannot be used (a given ``weights`` without a needed stage fails later, in the mode)."""
    if baseline_only:
        return None, None, ["--baseline-only: our networks were not run"]
    try:
        pipe = Pipeline.from_pretrained(weights, **settings)
    except NoBundledWeights:
        return None, None, ["no trained weights are bundled and no --weights was given: baselines only"]
    missing = [stage for stage in stages if getattr(pipe, stage) is None]
    if weights is None and missing:
        return None, None, [f"no trained {' or '.join(missing)} weights are bundled: baselines only"]
    folder = Path(weights).expanduser() if weights is not None else bundled_config()
    config = load_yaml(folder / CONFIG_NAME if folder.is_dir() else folder)
    info = {
        "path": str(folder.resolve()),
        "trained": pipe.trained,
        "description": str(config.get("description", "")),
        "sr": getattr(pipe.sr, "arch_config", None),
        "color": getattr(pipe.color, "arch_config", None),
    }
    notes = [] if pipe.trained else ["the weights are marked untrained: their rows are not results to quote"]
    return pipe, info, notes


def _settings(pipe: Pipeline | None, **values) -> dict[str, Any]:
    if pipe is not None:
        values.update(
            device=str(pipe.device),
            dtype=str(pipe.dtype).removeprefix("torch."),
            tile=pipe.tile,
            batch_size=pipe.batch_size,
            render_size=pipe.render_size,
            saturation=pipe.saturation,
            ensemble=pipe.ensemble,
            color_flip=pipe.color_flip,
            color_levels=pipe.color_levels,
        )
    return values


def _restore(pipe: Pipeline, grays: list[np.ndarray]) -> list[np.ndarray]:
    """Run the Pipeline on (h, w) gray floats; same-sized ones share forward passes."""
    return [np.asarray(img) for img in pipe.restore([GrayImage(g) for g in grays])]


# --- the three modes ----------------------------------------------------------------------------------------------


def evaluate_sr(
    data: str | Path,
    pipe: Pipeline | None,
    *,
    scale: int = 4,
    niqe: bool = True,
    degradation: str = "bicubic",
    seed: int = 0,
    save_dir: str | Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """The x``scale`` super-resolution benchmark (Set5, Set14, BSD100 tables): our SR and bicubic. With
    ``degradation="realistic"`` each LR is made by the realistic training degradation instead, once per image
    with a seed from ``seed`` and the image's name: the same LR on every run and machine."""
    if degradation not in ("bicubic", "realistic"):
        raise ValueError(f"unknown degradation {degradation!r}; choose bicubic or realistic")
    sr = _check_stage(pipe, "sr", scale)
    methods = [Method("bicubic", "MATLAB bicubic upscaling of the LR luminance")]
    if sr is not None:
        methods.append(
            Method("sr", "our SR network on the LR luminance", model=True, untrained=not sr.trained)
        )
    protocol = SR_PROTOCOL if degradation == "bicubic" else SR_PROTOCOL.replace(REALISTIC_FROM, REALISTIC_TO)
    settings = _settings(pipe, scale=scale, crop_border=scale, niqe=niqe, degradation=degradation)
    if degradation == "realistic":
        settings["seed"] = seed
    report = EvalReport(
        "sr", Path(data), protocol, ["psnr_y", "ssim_y"] + (["niqe"] if niqe else []), methods, settings, None
    )

    def prepare(path: Path) -> Sample:
        hr = mod_crop(read_rgb(path), scale)
        if degradation == "realistic":
            return Sample(path.stem, hr, realistic_lr(hr, scale, seed + zlib.crc32(path.stem.encode())))
        return Sample(path.stem, hr, luma(downscale_rgb(hr, scale)))

    def outputs(samples: list[Sample]) -> dict[str, list[np.ndarray]]:
        out = {"bicubic": [gray_rgb8(bicubic_up(s.gray, scale)) for s in samples]}
        if sr is not None:
            out["sr"] = _restore(sr, [s.gray for s in samples])
        return out

    def score(out: np.ndarray, gt: np.ndarray, ref: dict[str, Any]) -> Scores:
        values = {"psnr_y": metrics.psnr_y(out, gt, scale), "ssim_y": metrics.ssim_y(out, gt, scale)}
        if niqe:
            values["niqe"] = metrics.niqe(out, scale)
        return values

    def ground_truth(gt: np.ndarray, ref: dict[str, Any]) -> Scores:
        return {"niqe": metrics.niqe(gt, scale)} if niqe else {}

    scoring = Scoring(lambda gt: {}, score, ground_truth)
    _evaluate(report, prepare, outputs, scoring, ("bicubic", "sr"), save_dir, progress)
    return report


def evaluate_color(
    data: str | Path,
    pipe: Pipeline | None,
    *,
    size: int = 256,
    gray_from: str = "luma",
    save_dir: str | Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """Colorization at ``size`` x ``size`` (the colorization papers' protocol): our colorizer and gray.
    ``gray_from`` says what gray the colorizer gets (``GRAY_FROM``)."""
    if gray_from not in GRAY_FROM:
        raise ValueError(f"unknown gray_from {gray_from!r}; choose one of: {', '.join(GRAY_FROM)}")
    colorizer = _check_stage(pipe, "color")
    methods = [Method("gray", "the input itself: luminance, a = b = 0")]
    if colorizer is not None:
        methods.append(Method("colorizer", "our colorizer", model=True, untrained=not colorizer.trained))
    report = EvalReport(
        "color",
        Path(data),
        COLOR_PROTOCOL.format(gray_from=GRAY_FROM[gray_from]),
        ["psnr", "ssim", "ciede2000", "colorfulness", "delta_colorfulness"],
        methods,
        _settings(pipe, size=size, gray_from=gray_from),
        None,
    )

    def prepare(path: Path) -> Sample | None:
        gt = read_rgb(path)
        if size:
            gt = resize_square(gt, size)
        if is_gray(gt):
            return None
        gray = stored_8bit(luma(gt)) if gray_from == "luma" else lightness_gray(gt)
        return Sample(path.stem, gt, gray)

    def outputs(samples: list[Sample]) -> dict[str, list[np.ndarray]]:
        out = {"gray": [gray_rgb8(s.gray) for s in samples]}
        if colorizer is not None:
            out["colorizer"] = _restore(colorizer, [s.gray for s in samples])
        return out

    _evaluate(report, prepare, outputs, _color_scoring(0), ("gray", "colorizer"), save_dir, progress)
    return report


def evaluate_cascade(
    data: str | Path,
    pipe: Pipeline | None,
    *,
    scale: int = 4,
    save_dir: str | Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """The whole task: gray low-resolution in, color ``scale`` x larger out, against the color original."""
    if pipe is not None:
        _check_stage(pipe, "sr", scale)
        _check_stage(pipe, "color")
    methods = [Method("bicubic_gray", "bicubic upscaling, no color")]
    if pipe is not None:
        untrained = not pipe.trained
        methods += [
            Method("bicubic_colorizer", "bicubic, then our colorizer", True, untrained),
            Method("sr_gray", "our SR, no color", True, untrained),
            Method("cascade", "our Pipeline: SR, then colorization", True, untrained),
        ]
    report = EvalReport(
        "cascade",
        Path(data),
        CASCADE_PROTOCOL,
        ["psnr", "ssim", "psnr_y", "ssim_y", "ciede2000", "colorfulness", "delta_colorfulness"],
        methods,
        _settings(pipe, scale=scale, crop_border=scale),
        None,
    )

    def prepare(path: Path) -> Sample | None:
        gt = mod_crop(read_rgb(path), scale)
        return None if is_gray(gt) else Sample(path.stem, gt, downscale_gray(gt, scale))

    def outputs(samples: list[Sample]) -> dict[str, list[np.ndarray]]:
        bicubic = [bicubic_up(s.gray, scale) for s in samples]
        out = {"bicubic_gray": [gray_rgb8(b) for b in bicubic]}
        if pipe is not None:
            lows = [s.gray for s in samples]
            out["bicubic_colorizer"] = _restore(pipe.only("color"), bicubic)
            out["sr_gray"] = _restore(pipe.only("sr"), lows)
            out["cascade"] = _restore(pipe, lows)
        return out

    _evaluate(
        report, prepare, outputs, _color_scoring(scale), ("bicubic_gray", "cascade"), save_dir, progress
    )
    return report


# --- shared parts --------------------------------------------------------------------------------------------------


def _check_stage(pipe: Pipeline | None, stage: str, scale: int | None = None) -> Pipeline | None:
    """``pipe`` narrowed to ``stage``, or None without weights; a clear error when the stage is missing or
    its scale is not the one asked for."""
    if pipe is None:
        return None
    if getattr(pipe, stage) is None:
        raise ValueError(f"the weights have no {stage!r} stage to evaluate")
    if scale is not None and pipe.scale != scale:
        raise ValueError(f"the SR network upscales x{pipe.scale}, not x{scale}; pass --scale {pipe.scale}")
    return pipe.only(stage)


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border else img


def _color_scoring(border: int) -> Scoring:
    """Colorization metrics with ``border`` pixels cropped; with a border (the cascade, which also upscales)
    PSNR and SSIM on Y as well."""

    def reference(gt: np.ndarray) -> dict[str, Any]:
        cropped = _crop(gt, border)
        return {"lab": rgb_to_lab_np(cropped), "colorfulness": metrics.colorfulness(cropped)}

    def score(out: np.ndarray, gt: np.ndarray, ref: dict[str, Any]) -> Scores:
        cf = metrics.colorfulness(_crop(out, border))
        values = {
            "psnr": metrics.psnr_rgb(out, gt, border),
            "ssim": metrics.ssim_rgb(out, gt, border),
            "ciede2000": metrics.ciede2000(out, gt, border, gt_lab=ref["lab"]),
            "colorfulness": cf,
            "abs_delta_colorfulness": abs(cf - ref["colorfulness"]),
        }
        if border:
            values.update(psnr_y=metrics.psnr_y(out, gt, border), ssim_y=metrics.ssim_y(out, gt, border))
        return values

    def ground_truth(gt: np.ndarray, ref: dict[str, Any]) -> Scores:
        return {"colorfulness": ref["colorfulness"]}

    return Scoring(reference, score, ground_truth)


def _chunks(items: list[Path], n: int) -> Iterator[list[Path]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _evaluate(
    report: EvalReport,
    prepare: Callable[[Path], Sample | None],
    outputs: Callable[[list[Sample]], dict[str, list[np.ndarray]]],
    scoring: Scoring,
    sheet_methods: tuple[str, str],
    save_dir: str | Path | None,
    progress: bool,
) -> None:
    """Fill ``report.images`` from every image of ``report.dataset``; save outputs and sheets if asked."""
    files = list_images(report.dataset)
    if not files:
        raise ValueError(f"{report.dataset}: no images in this folder")
    bar = tqdm(total=len(files), unit="img", disable=not progress, dynamic_ncols=True)
    with ThreadPoolExecutor(SCORE_THREADS, thread_name_prefix="score") as pool:
        for chunk in _chunks(files, CHUNK):
            samples = []
            for path in chunk:
                sample = prepare(path)
                if sample is None:
                    report.left_out.append(path.name)
                else:
                    samples.append(sample)
            results = outputs(samples) if samples else {}
            per_image = [{m: out[i] for m, out in results.items()} for i in range(len(samples))]
            rows = [pool.submit(_score_sample, scoring, s, o) for s, o in zip(samples, per_image)]
            for s, o, row in zip(samples, per_image, rows):
                report.images.append(row.result())
                if save_dir is not None:
                    _save(Path(save_dir), s, o, sheet_methods)
            bar.update(len(chunk))
    bar.close()
    if report.left_out:
        report.notes.append(
            f"{len(report.left_out)} gray ground-truth image(s) left out (no color to score), "
            f"e.g. {report.left_out[0]}"
        )


def _score_sample(scoring: Scoring, s: Sample, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """One image's row: its size and every method's scores, then the ground truth's own."""
    ref = scoring.reference(s.gt)
    row: dict[str, Any] = {"name": s.name, "width": s.gt.shape[1], "height": s.gt.shape[0]}
    for method, out in outputs.items():
        row[method] = scoring.score(out, s.gt, ref)
    row[GROUND_TRUTH] = scoring.ground_truth(s.gt, ref)
    return row


def _save(folder: Path, s: Sample, outputs: dict[str, np.ndarray], sheet_methods: tuple[str, str]) -> None:
    """Each output as ``folder/METHOD/NAME.png``, the input as ``folder/input/NAME.png`` and a sheet
    (input | baseline | ours | ground truth) as ``folder/sheets/NAME.png``."""
    from PIL import Image

    inp = gray_rgb8(s.gray)
    write_image(Image.fromarray(inp[..., 0]), folder / "input" / f"{s.name}.png", "png")
    for method, img in outputs.items():
        write_image(Image.fromarray(img), folder / method / f"{s.name}.png", "png")
    panels = [("input", inp)] + [(m, outputs[m]) for m in sheet_methods if m in outputs]
    write_image(sheet(panels + [("ground truth", s.gt)]), folder / "sheets" / f"{s.name}.png", "png")
