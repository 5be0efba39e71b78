"""Parameter types and options the commands share, and the settings they make."""

from __future__ import annotations

import math
import sys

import click
from tqdm import tqdm

from cascade.defaults import COLOR_FLIP, COLOR_LEVELS, DTYPE_NAMES, TILE
from cascade.imageio import DEFAULT_MAX_PIXELS


class FiniteFloat(click.FloatRange):
    """A float range that also refuses nan and inf (which pass click's range checks: nan compares false)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


def stack_options(*options):
    """Several click options as one decorator."""

    def apply(f):
        for option in reversed(options):
            f = option(f)
        return f

    return apply


# --- options several commands share, declared once ------------------------------------------------------------

DEVICE = click.option(
    "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."
)
MAX_MEGAPIXELS = click.option(
    "--max-megapixels",
    type=FiniteFloat(min=0, min_open=True),
    default=DEFAULT_MAX_PIXELS / 1e6,
    help="Refuse larger inputs (decompression-bomb guard).",
)
# where and how the networks run: `run`, `eval` and `bench`
NETWORK_OPTIONS = stack_options(
    DEVICE,
    click.option(
        "--dtype", type=click.Choice(DTYPE_NAMES), default="fp32", help="Network precision; fp16 on GPU only."
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
)
ENSEMBLE = click.option(
    "--ensemble", is_flag=True, help="SR self-ensemble: the mean over 8 flips and rotations (8x slower)."
)
# how the colorizer runs: `run`, `eval color` and `eval cascade`
COLOR_OPTIONS = stack_options(
    click.option(
        "--render-size",
        type=click.IntRange(min=0),
        help="Short side the colorizer works at; 0: full size [default: the pipeline's].",
    ),
    click.option(
        "--saturation",
        type=FiniteFloat(0, 4),
        help="Factor on the predicted colors: 0 gray, 1 as predicted, above 1 more vivid [default: the pipeline's].",
    ),
    click.option(
        "--color-flip/--no-color-flip",
        default=None,
        help="Average the colorizer's prediction with its prediction for the mirror image (twice the colorizer's "
        f"work, a little closer to the truth) [default: {'on' if COLOR_FLIP else 'off'}].",
    ),
    click.option(
        "--color-levels/--no-color-levels",
        default=None,
        help="Show the colorizer each photo with its darkest and brightest 0.1% stretched to black and white (a "
        "faded print gets the colours of its unfaded self; the output keeps the photo's own tones) "
        f"[default: {'on' if COLOR_LEVELS else 'off'}].",
    ),
)


def pipeline_settings(
    device: str,
    dtype: str,
    tile: int,
    batch_size: int | None,
    render_size: int | None = None,
    saturation: float | None = None,
    ensemble: bool = False,
    color_flip: bool | None = None,
    color_levels: bool | None = None,
) -> dict:
    """``Pipeline`` keyword arguments from the shared options; colour options left unset keep the pipeline's."""
    settings = {"device": device, "dtype": dtype, "tile": tile or None, "batch_size": batch_size}
    if render_size is not None:
        settings["render_size"] = render_size or None
    if saturation is not None:
        settings["saturation"] = saturation
    if ensemble:
        settings["ensemble"] = True
    if color_flip is not None:
        settings["color_flip"] = color_flip
    if color_levels is not None:
        settings["color_levels"] = color_levels
    return settings


def say(text: str, quiet: bool = False) -> None:
    """A line on stderr that does not break a progress bar."""
    if not quiet:
        tqdm.write(text, file=sys.stderr)
