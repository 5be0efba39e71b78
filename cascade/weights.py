"""The pipeline folder: ``pipeline.yaml`` naming each stage's architecture and settings, and one safetensors
file of weights per stage beside it. Nothing is unpickled, so a downloaded folder cannot run code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from cascade.atomic import atomic_path
from cascade.config import ConfigError, load_yaml, plain
from cascade.defaults import RENDER_SIZE, RENDER_SIZES, SATURATION, SATURATIONS
from cascade.models import STAGES, Stage
from cascade.wheel_models import converted_weights
from sr.ncnn import NcnnError
from sr.wheels import WHEEL_MODELS

FORMAT = "cascade-pipeline/1"
CONFIG_NAME = "pipeline.yaml"
_TOP_KEYS = {"format", "trained", "description", *STAGES}
_STAGE_KEYS = ("model", "weights", "base")  # and the stage's own settings (``Stage.settings``)
MAX_PARAMETERS = 500_000_000  # 2 GB in fp32, 30x Real-ESRGAN's RRDBNet: larger is a broken or hostile config


@dataclass
class LoadedPipeline:
    sr: nn.Module | None
    color: nn.Module | None
    render_size: int | None
    trained: bool
    description: str
    saturation: float = SATURATION


def _config_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CONFIG_NAME
    elif path.is_file() and path.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(
            f"{path}: a pipeline is a folder holding {CONFIG_NAME} and .safetensors files (or that "
            f"{CONFIG_NAME}); this is a {path.suffix or 'plain'} file"
        )
    if not path.is_file():
        raise ConfigError(
            f"{path}: no pipeline here (a pipeline folder holds {CONFIG_NAME} and .safetensors files)"
        )
    return path


def load_pipeline(path: str | Path, only: str | None = None) -> LoadedPipeline:
    """Build the stages a pipeline folder describes and load their weights; ``only`` keeps one stage."""
    if only is not None and only not in STAGES:
        raise ValueError(f"only must be one of {', '.join(STAGES)} (or None for both), not {only!r}")
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
        models[stage] = _load_stage(cfg_path.parent, STAGES[stage], section, where)
    if only is not None and models[only] is None:
        raise ConfigError(f"{where}: has no {only!r} stage to run alone")
    if models["sr"] is None and models["color"] is None:
        raise ConfigError(f"{where}: describes no stage (needs an 'sr' or a 'color' section)")
    for key, kind in (("trained", bool), ("description", str)):
        if key in cfg and not isinstance(cfg[key], kind):
            raise ConfigError(f"{where}: {key} must be a {kind.__name__}, not {cfg[key]!r}")
    color = cfg.get("color") or {}
    render_size = _render_size(color.get("render_size", RENDER_SIZE), where)
    saturation = _saturation(color.get("saturation", SATURATION), where)
    return LoadedPipeline(
        models["sr"],
        models["color"],
        render_size,
        cfg.get("trained", False),
        cfg.get("description", ""),
        saturation,
    )


def _render_size(value: Any, where: str) -> int | None:
    low, high = RENDER_SIZES
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        return value
    raise ConfigError(
        f"{where} [color]: render_size must be a whole number from {low} to {high} or null, not {value!r}"
    )


def _saturation(value: Any, where: str) -> float:
    low, high = SATURATIONS
    if isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high:
        return float(value)
    raise ConfigError(f"{where} [color]: saturation must be a number from {low:g} to {high:g}, not {value!r}")


def _load_stage(folder: Path, stage: Stage, section: Any, where: str) -> nn.Module:
    where = f"{where} [{stage.name}]"
    if not isinstance(section, dict) or "model" not in section or not ({"weights", "base"} & set(section)):
        raise ConfigError(
            f"{where}: needs 'model' (the architecture) and 'weights' (a .safetensors file), or 'base' "
            "(a model converted from a wheel) with or without weights trained over it"
        )
    valid = {*_STAGE_KEYS, *stage.settings}
    unknown = sorted(set(section) - valid)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {', '.join(unknown)}; valid keys: {', '.join(sorted(valid))}"
        )
    if not isinstance(section["model"], dict) or not isinstance(section["model"].get("arch"), str):
        raise ConfigError(f"{where}: model must be a mapping with an 'arch' name, not {section['model']!r}")
    model_cfg = stage.without_encoder_weights(
        section["model"]
    )  # the saved weights replace it: never download
    create = stage.create
    with torch.device("meta"):  # shapes only: a config asking for terabytes allocates nothing
        shapes = {k: tuple(v.shape) for k, v in create(model_cfg).state_dict().items()}
    n_params = sum(math.prod(shape) for shape in shapes.values())
    if n_params > MAX_PARAMETERS:
        raise ConfigError(
            f"{where}: the model would have {n_params / 1e6:,.0f} M parameters, over the {MAX_PARAMETERS / 1e6:,.0f} M "
            "that any cascade model needs; check its options"
        )
    files = []
    if "base" in section:
        files.append(_base_weights(section["base"], where))
    if "weights" in section:
        files.append(_weights_file(folder, section["weights"], where))
    stored = {}  # tensor name -> shape; a later file's tensors replace the earlier's (the trained over the base)
    for weights in files:
        try:
            with safe_open(weights, "pt") as f:
                stored |= {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise ConfigError(f"{weights}: not a readable safetensors file ({e})") from None
    missing = [k for k in shapes if stored.get(k) != shapes[k]]
    unexpected = [k for k in stored if k not in shapes]
    if missing or unexpected:
        raise ConfigError(
            f"{' + '.join(map(str, files))}: does not fit the {model_cfg['arch']} model its config describes "
            f"({len(missing)} missing tensors, e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    model = create(model_cfg)
    state = {}
    for weights in files:
        state |= load_file(weights)
    model.load_state_dict(state)
    return model.eval()


def _base_weights(name: Any, where: str) -> Path:
    """The weights file of a stage's ``base``: a wheel model, converted into the user's cache on first use."""
    if name not in WHEEL_MODELS:
        raise ConfigError(f"{where}: base must be one of {', '.join(WHEEL_MODELS)}, not {name!r}")
    try:
        return converted_weights(name)
    except NcnnError as e:
        raise ConfigError(f"{where}: base {name}: {e}") from None


def _weights_file(folder: Path, name: Any, where: str) -> Path:
    """The weights file a stage names: a .safetensors file inside the pipeline folder."""
    if not isinstance(name, str) or not name.endswith(".safetensors"):
        raise ConfigError(f"{where}: weights must name a .safetensors file in the folder, not {name!r}")
    weights = folder / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ConfigError(f"{where}: weights {name!r} must be a file inside the pipeline folder")
    if not weights.is_file():
        raise ConfigError(f"{where}: weights file {weights} is missing")
    return weights


def save_pipeline(
    path: str | Path,
    sr: nn.Module | None,
    color: nn.Module | None,
    *,
    render_size: int | None = RENDER_SIZE,
    saturation: float = SATURATION,
    trained: bool = True,
    description: str = "",
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a pipeline folder; every file goes to a temporary name first and is renamed when complete."""
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {"format": FORMAT, "trained": trained, "description": description}
    for stage, model in zip(STAGES.values(), (sr, color), strict=True):
        if model is None:
            continue
        section = cfg[stage.name] = save_stage(folder, stage.name, model, f"{stage.name}.safetensors", dtype)
        if "render_size" in stage.settings:
            section["render_size"] = render_size
        if "saturation" in stage.settings and saturation != SATURATION:
            section["saturation"] = saturation
    write_config(folder, cfg)
    return folder


def save_stage(
    folder: Path, stage: str, model: nn.Module, name: str, dtype: torch.dtype, only: set[str] | None = None
) -> dict[str, Any]:
    """Write ``model``'s weights as ``folder/name`` (``only``: just these tensors); returns its ``pipeline.yaml``
    section (model and weights)."""
    arch_config = getattr(model, "arch_config", None)
    if arch_config is None:
        raise ValueError(f"the {stage} model was not built by cascade.models, so its architecture is unknown")
    arch_config = STAGES[stage].without_encoder_weights(arch_config)  # saved weights include the encoder
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if only is None or k in only
    }
    with atomic_path(folder / name) as tmp:
        save_file(state, tmp, metadata={"format": FORMAT, "stage": stage})
    return {"model": plain(arch_config), "weights": name}


def write_config(folder: Path, cfg: dict[str, Any], name: str = CONFIG_NAME) -> Path:
    """Write a pipeline file (``pipeline.yaml``, or a variant's ``pipeline_NAME.yaml``) into ``folder``."""
    with atomic_path(folder / name) as tmp:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return folder / name


def init_pipeline(config: str | Path, out: str | Path) -> Path:
    """Write an untrained pipeline folder from an architecture config (``sr``/``color`` model sections,
    ``render_size``, ``seed``): freshly initialised weights marked ``trained: false``."""
    config = Path(config)
    cfg = load_yaml(config)
    valid = {*STAGES, "render_size", "seed"}
    unknown = sorted(set(cfg) - valid)
    if unknown:
        raise ConfigError(f"{config}: unknown key {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    if not any(cfg.get(name) for name in STAGES):
        raise ConfigError(f"{config}: needs an 'sr' or a 'color' section")
    torch.manual_seed(cfg.get("seed", 0))
    models = {name: stage.create(cfg[name]) if cfg.get(name) else None for name, stage in STAGES.items()}
    return save_pipeline(
        out,
        **models,
        render_size=cfg.get("render_size", RENDER_SIZE),
        trained=False,
        description=f"untrained, initialised from {config.name}",
    )
