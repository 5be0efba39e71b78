"""Parameter types the commands share."""

from __future__ import annotations

import math

import click


class FiniteFloat(click.FloatRange):
    """A float range that also refuses nan and inf (which pass click's range checks: nan compares false)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv
