"""Proof that an ncnn model was read right: its converted RGB network on the standard RGB benchmark input.

    python eval/ncnn_rgb_check.py --model span --data ../shared/data/bench/Set5 --json eval/results/ncnn_span_rgb_Set5.json

The SR tables score RGB networks on MATLAB-bicubic RGB LR images, PSNR/SSIM on Y with the scale's border cropped;
a misread weight costs decibels, a right reading lands on the published figures (SPAN x4 ch48 on DIV2K:
Set5 32.24 in its paper's table; Real-ESRGAN x4plus is a GAN model, far below PSNR models on this measure). Also
scores the folded luminance network on the gray LR, as ``cascade eval sr`` does, so the two read side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from cascade.evaluation import metrics
from cascade.evaluation.protocol import (
    downscale_rgb,
    gray_rgb8,
    list_images,
    luma,
    mod_crop,
    read_rgb,
    to_uint8,
)
from sr.wheels import WHEEL_MODELS, convert, load_rgb, wheel_files


def _run(model: torch.nn.Module, img: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(img, np.float32))
    x = (x / 255 if img.dtype == np.uint8 else x).permute(2, 0, 1)[None] if x.ndim == 3 else x[None, None]
    with torch.inference_mode():
        return model(x)[0].permute(1, 2, 0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(WHEEL_MODELS), default="span")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    rgb_net = load_rgb(wheel_files(args.model), WHEEL_MODELS[args.model].arch)
    luma_net, _ = convert(args.model)
    scale = WHEEL_MODELS[args.model].arch["scale"]
    rows = []
    for path in list_images(args.data):
        hr = mod_crop(read_rgb(path), scale)
        lr = downscale_rgb(hr, scale)
        out_rgb = to_uint8(_run(rgb_net, lr))
        out_luma = gray_rgb8(np.clip(_run(luma_net, luma(lr))[..., 0], 0, 1))
        rows.append(
            {
                "image": path.stem,
                "rgb_input_psnr_y": metrics.psnr_y(out_rgb, hr, scale),
                "rgb_input_ssim_y": metrics.ssim_y(out_rgb, hr, scale),
                "luma_psnr_y": metrics.psnr_y(out_luma, hr, scale),
                "luma_ssim_y": metrics.ssim_y(out_luma, hr, scale),
            }
        )
    mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0] if k != "image"}
    result = {
        "model": args.model,
        "source": WHEEL_MODELS[args.model].source,
        "data": str(args.data),
        "protocol": "RGB HR mod-cropped, MATLAB bicubic x1/scale stored as 8-bit RGB; PSNR/SSIM on Y (BT.601, "
        "16-235), scale px border cropped. rgb_input: the converted RGB network on the RGB LR; luma: the "
        "folded 1-channel network on the LR's BT.601 luminance (as cascade eval sr)",
        "mean": mean,
        "images": rows,
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps({k: result[k] for k in ("model", "data", "mean")}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
