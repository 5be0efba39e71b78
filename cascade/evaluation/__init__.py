"""Evaluation against the published protocols: ``cascade eval sr|color|cascade``.

``protocol`` makes the inputs as the published tables did, ``metrics`` scores with the libraries they used,
``modes`` runs each evaluation with its baselines, ``report`` writes the table, JSON and sheets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cascade.evaluation.modes import evaluate_cascade, evaluate_color, evaluate_sr, load_for_eval
from cascade.evaluation.report import EvalReport, save_report

MODES = {"sr": evaluate_sr, "color": evaluate_color, "cascade": evaluate_cascade}
STAGES = {"sr": ("sr",), "color": ("color",), "cascade": ("sr", "color")}  # what each mode's networks need

__all__ = ["MODES", "EvalReport", "evaluate", "save_report"]


def evaluate(
    mode: str,
    data: str | Path,
    weights: str | Path | None = None,
    *,
    baseline_only: bool = False,
    pipeline_settings: dict[str, Any] | None = None,
    **options,
) -> EvalReport:
    """Run one evaluation ``mode`` on the images in ``data`` with the pipeline folder ``weights`` (None: the
    bundled weights, or baselines only when they lack a stage the mode needs). ``options`` are the mode's own
    (``scale``, ``size``, ``niqe``, ``save_dir``, ``progress``)."""
    if mode not in MODES:
        raise ValueError(f"unknown evaluation {mode!r}; choose one of: {', '.join(MODES)}")
    if not Path(data).is_dir():
        raise ValueError(f"{data}: not a folder of images")
    pipe, info, notes = load_for_eval(weights, baseline_only, STAGES[mode], **(pipeline_settings or {}))
    report = MODES[mode](data, pipe, **options)
    report.weights = info
    report.notes[:0] = notes
    return report
