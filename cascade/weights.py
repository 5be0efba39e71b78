"""The pipeline folder: ``pipeline.yaml`` naming each stage's architecture and settings, and one safetensors
file of weights per stage beside it. Nothing is unpickled, so a downloaded folder cannot run code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from cascade.atomic import atomic_path
from cascade.config import ConfigError, load_yaml, plain
from cascade.models import create_colorizer, create_sr_generator

FORMAT = "cascade-pipeline/1"
CONFIG_NAME = "pipeline.yaml"
STAGES = ("sr", "color")
_TOP_KEYS = {"format", "trained", "description", *STAGES}
_STAGE_KEYS = {"model", "weights", "render_size"}


@dataclass
class LoadedPipeline:
    sr: nn.Module | None
    color: nn.Module | None
    render_size: int | None
    trained: bool
    description: str


def _config_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(
            f"{path}: no pipeline here (a pipeline folder holds {CONFIG_NAME} and .safetensors files)"
        )
    return path


def load_pipeline(path: str | Path, only: str | None = None) -> LoadedPipeline:
    """Build the stages a pipeline folder describes and load their weights; ``only`` keeps one stage."""
    cfg_path = _config_path(path)
    cfg = load_yaml(cfg_path)
    where = str(cfg_path)
    if cfg.get("format") != FORMAT:
        raise ConfigError(
            f"{where}: format is {cfg.get('format')!r}, this version of cascade reads {FORMAT!r}"
        )
    unknown = sorted(set(cfg) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {', '.join(unknown)}; valid keys: {', '.join(sorted(_TOP_KEYS))}"
        )
    models: dict[str, nn.Module | None] = {}
    for stage in STAGES:
        section = cfg.get(stage)
        if section is None or (only is not None and only != stage):
            models[stage] = None
            continue
        models[stage] = _load_stage(cfg_path.parent, stage, section, where)
    if only is not None and models[only] is None:
        raise ConfigError(f"{where}: has no {only!r} stage to run alone")
    if models["sr"] is None and models["color"] is None:
        raise ConfigError(f"{where}: describes no stage (needs an 'sr' or a 'color' section)")
    render_size = (cfg.get("color") or {}).get("render_size", 256)
    return LoadedPipeline(
        models["sr"],
        models["color"],
        render_size,
        bool(cfg.get("trained", False)),
        str(cfg.get("description", "")),
    )


def _load_stage(folder: Path, stage: str, section: Any, where: str) -> nn.Module:
    where = f"{where} [{stage}]"
    if not isinstance(section, dict) or "model" not in section or "weights" not in section:
        raise ConfigError(f"{where}: needs 'model' (the architecture) and 'weights' (a .safetensors file)")
    unknown = sorted(set(section) - _STAGE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {', '.join(unknown)}; valid keys: {', '.join(sorted(_STAGE_KEYS))}"
        )
    model_cfg = dict(section["model"])
    if stage == "color":
        if "pretrained" in model_cfg:
            model_cfg["pretrained"] = None  # the saved weights replace any pretrained encoder: never download
        model = create_colorizer(model_cfg)
    else:
        model = create_sr_generator(model_cfg)
    weights = folder / section["weights"]
    if not weights.is_file():
        raise ConfigError(f"{where}: weights file {weights} is missing")
    try:
        state = load_file(weights)
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise ConfigError(f"{weights}: not a readable safetensors file ({e})") from None
    missing, unexpected = _mismatch(model.state_dict(), state)
    if missing or unexpected:
        raise ConfigError(
            f"{weights}: does not fit the {section['model'].get('arch')} model its config describes "
            f"({len(missing)} missing tensors, e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    model.load_state_dict(state)
    return model.eval()


def _mismatch(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    missing = [k for k in expected if k not in got or got[k].shape != expected[k].shape]
    unexpected = [k for k in got if k not in expected]
    return missing, unexpected


def save_pipeline(
    path: str | Path,
    sr: nn.Module | None,
    color: nn.Module | None,
    *,
    render_size: int | None = 256,
    trained: bool = True,
    description: str = "",
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a pipeline folder; every file goes to a temporary name first and is renamed when complete."""
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {"format": FORMAT, "trained": trained, "description": description}
    for stage, model in (("sr", sr), ("color", color)):
        if model is None:
            continue
        arch_config = getattr(model, "arch_config", None)
        if arch_config is None:
            raise ValueError(
                f"the {stage} model was not built by cascade.models, so its architecture is unknown"
            )
        arch_config = dict(arch_config)
        if "pretrained" in arch_config:
            arch_config["pretrained"] = None  # saved weights include the encoder
        state = {
            k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in model.state_dict().items()
        }
        name = f"{stage}.safetensors"
        with atomic_path(folder / name) as tmp:
            save_file(state, tmp, metadata={"format": FORMAT, "stage": stage})
        cfg[stage] = {"model": plain(arch_config), "weights": name}
        if stage == "color":
            cfg[stage]["render_size"] = render_size
    text = yaml.safe_dump(cfg, sort_keys=False)
    with atomic_path(folder / CONFIG_NAME) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return folder
