"""cascade: restore old photographs, low-resolution gray in, high-resolution color out."""

__all__ = ["Pipeline", "NoBundledWeights"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy so that `cascade --help` and config errors answer without importing torch and timm.
    if name in __all__:
        from cascade import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'cascade' has no attribute {name!r}")
