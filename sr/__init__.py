"""Stage 1: super-resolution networks on one luminance channel."""

from sr.models import DISCRIMINATORS, GENERATORS

__all__ = ["GENERATORS", "DISCRIMINATORS"]
