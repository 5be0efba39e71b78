"""Checkpoints: everything a killed run needs to continue exactly where it stopped.

A checkpoint holds the models, optimizers, EMA, gradient scaler, step, best validation score and every random
state (per process), written to a temporary name and renamed. It is read back with ``weights_only=True``:
only tensors and plain containers, so loading one cannot run code. The learning rate is a pure function of
the step (``loop.lr_at``), so there is no scheduler state to keep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cascade.atomic import atomic_path
from cascade.config import ConfigError

FORMAT = "cascade-checkpoint/1"
NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint to resume from (was the run started with this --out?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file: unpickling errors come in many types
        raise ConfigError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a cascade checkpoint ({FORMAT})")
    return state


def rng_state(data_generator: torch.Generator) -> dict[str, Any]:
    """This process's random states: torch's global one (dropout), CUDA's, and the data sampler's."""
    state = {"torch": torch.get_rng_state(), "data": data_generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], data_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    data_generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
