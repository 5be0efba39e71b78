"""``cascade eval`` (scores against the published protocols) and ``cascade bench`` (speed)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cascade.cli_types import COLOR_OPTIONS, ENSEMBLE, NETWORK_OPTIONS, pipeline_settings, say, stack_options
from cascade.config import ConfigError

# what every `cascade eval` mode takes
EVAL_OPTIONS = stack_options(
    click.option(
        "--data",
        required=True,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Folder of ground-truth images, e.g. ../shared/data/bench/Set5.",
    ),
    click.option(
        "--weights",
        type=click.Path(exists=True, path_type=Path),
        help="Pipeline folder [default: bundled; without any, baselines only].",
    ),
    click.option("--baseline-only", is_flag=True, help="Score the baselines only; do not run our networks."),
    click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the scores here.",
    ),
    click.option(
        "--save-images",
        type=click.Path(file_okay=False, path_type=Path),
        help="Save every output, and sheets (input | baseline | ours | ground truth), in this folder.",
    ),
    NETWORK_OPTIONS,
    click.option("-q", "--quiet", is_flag=True, help="No progress bar; the table is still printed."),
)


@click.group("eval")
def eval_group() -> None:
    """Score against the published protocols: a table, and with --json per-image and mean scores."""


@eval_group.command("sr")
@EVAL_OPTIONS
@click.option("--scale", type=click.IntRange(min=2), default=4, help="Upscaling factor.")
@click.option("--niqe/--no-niqe", default=True, help="Also compute NIQE (about 0.1 s per image and method).")
@ENSEMBLE
@click.option(
    "--degradation",
    type=click.Choice(["bicubic", "realistic"]),
    default="bicubic",
    help="How LR inputs are made: MATLAB bicubic (the published tables) or the realistic degradation (old scans).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed of the realistic degradation.")
def eval_sr(scale: int, niqe: bool, ensemble: bool, degradation: str, seed: int, **common) -> None:
    """Super-resolution: PSNR/SSIM on Y (border cropped) and NIQE, ours and bicubic (Set5, Set14, BSD100)."""
    options = {"scale": scale, "niqe": niqe, "degradation": degradation, "seed": seed}
    _evaluate("sr", common | {"ensemble": ensemble}, **options)


@eval_group.command("color")
@EVAL_OPTIONS
@COLOR_OPTIONS
@click.option(
    "--size", type=click.IntRange(min=0), default=256, help="Images resized to SIZE x SIZE; 0: native size."
)
@click.option(
    "--gray-from",
    type=click.Choice(["luma", "lightness"]),
    default="luma",
    help="What gray the colorizer gets: luma (BT.601, 8 bits: a gray photo) or lightness (the ground truth's "
    "own L*, kept in the output: DDColor's protocol).",
)
def eval_color(size: int, gray_from: str, **common) -> None:
    """Colorization: PSNR/SSIM on RGB, CIEDE2000, colorfulness; ours and the gray input (ImageNet100)."""
    _evaluate("color", common, size=size, gray_from=gray_from)


@eval_group.command("cascade")
@EVAL_OPTIONS
@COLOR_OPTIONS
@click.option("--scale", type=click.IntRange(min=2), default=4, help="Upscaling factor.")
def eval_cascade(scale: int, **common) -> None:
    """The whole task: gray low-resolution in, color out, against the color original (Kodak24)."""
    _evaluate("cascade", common, scale=scale)


def _evaluate(mode: str, common: dict, **options) -> None:
    from cascade.evaluation import evaluate, save_report

    keys = (
        "device",
        "dtype",
        "tile",
        "batch_size",
        "render_size",
        "saturation",
        "ensemble",
        "color_flip",
        "color_levels",
    )
    settings = pipeline_settings(**{k: common[k] for k in keys if k in common})
    try:
        report = evaluate(
            mode,
            common["data"],
            common["weights"],
            baseline_only=common["baseline_only"],
            pipeline_settings=settings,
            save_dir=common["save_images"],
            progress=not common["quiet"] and sys.stderr.isatty(),
            **options,
        )
    except (ConfigError, ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None
    click.echo(report.table())
    if common["json_path"]:
        click.echo(f"wrote {save_report(report, common['json_path'])}")
    if common["save_images"]:
        click.echo(f"wrote outputs and sheets to {common['save_images']}")


# --- cascade bench ------------------------------------------------------------------------------------------------


@click.command()
@click.option(
    "--weights",
    type=click.Path(exists=True, path_type=Path),
    help="Pipeline folder [default: bundled]; e.g. one from `cascade init configs/pipeline_default.yaml DIR`.",
)
@click.option("--sizes", default="64,128,256,512", help="Square gray input sizes in pixels, comma-separated.")
@click.option(
    "--images", type=click.IntRange(min=1), help="Images per size [default: 2 on CPU, 16 on a GPU]."
)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=3, help="Timed passes per path; the fastest counts."
)
@click.option(
    "--large",
    type=click.IntRange(min=0),
    default=0,
    help="Also time one LARGE x LARGE input (tiled); 0: skip.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Results file [default: bench/results/pipeline_<device>.json].",
)
@click.option(
    "--vs",
    type=click.Path(exists=True, path_type=Path),
    help="Another pipeline folder: its `cascade run` is timed in turn with ours, and the ratio reported.",
)
@NETWORK_OPTIONS
def bench(
    weights: Path | None,
    sizes: str,
    images: int | None,
    repeats: int,
    large: int,
    json_path: Path | None,
    vs: Path | None,
    device: str,
    dtype: str,
    tile: int,
    batch_size: int | None,
) -> None:
    """Throughput of the Pipeline and of `cascade run` end to end against a naive loop, with FLOPs and memory."""
    from cascade.bench import run_benchmark, table
    from cascade.pipeline import NoBundledWeights

    try:
        size_list = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise click.UsageError(
            f"--sizes {sizes!r}: give whole numbers separated by commas, e.g. 64,128"
        ) from None
    if not size_list or min(size_list) < 8:
        raise click.UsageError(f"--sizes {sizes!r}: give sizes of 8 pixels or more")
    settings = pipeline_settings(device, dtype, tile, batch_size)
    if json_path is None:
        from cascade.devices import resolve_device

        try:
            json_path = Path("bench") / "results" / f"pipeline_{resolve_device(device).type}.json"
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    try:
        results = run_benchmark(
            weights,
            sizes=size_list,
            images=images,
            repeats=repeats,
            settings=settings,
            json_path=json_path,
            large=large,
            vs=vs,
            log=lambda text: say(text, quiet=False),
        )
    except NoBundledWeights:
        raise click.UsageError(
            "no trained weights are bundled; pass --weights (speed does not depend on training: "
            "`cascade init configs/pipeline_default.yaml DIR` makes a full-size pipeline)"
        ) from None
    except (ConfigError, ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None
    click.echo(table(results))
    click.echo(f"wrote {json_path}")
