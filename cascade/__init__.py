"""cascade: restore old photographs, low-resolution gray in, high-resolution color out."""

from cascade.pipeline import NoBundledWeights, Pipeline

__all__ = ["Pipeline", "NoBundledWeights"]
__version__ = "0.1.0"
