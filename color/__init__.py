"""Stage 2: colorization, predicting Lab's ab channels from L."""

from color.models import DISCRIMINATORS, GENERATORS

__all__ = ["GENERATORS", "DISCRIMINATORS"]
