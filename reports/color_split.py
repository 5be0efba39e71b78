"""The colorizer's data split: folders of symlinks into ../shared/data/train, a held-out share chosen by name.

    python reports/color_split.py --train ../shared/data/train --out ~/data

makes OUT/color_train and OUT/color_holdout. An image is held out when the SHA-1 of "SET/relative/path" falls
in the lowest 2.5% (15% for ImageNet600: one photo per class, so its held-out photos are of classes the colorizer
never saw, as ImageNet100's are; they measure how far it generalises): the split depends only on the names, so
it is the same on every machine and in every session (the 2.5% are inside the 15%).
With --train-share F (e.g. 0.5) the training folder is OUT/color_train_F and keeps only about that share of the
training images, chosen by the SHA-1 of each link's name (each family in proportion; the
quarter inside the half): the colorizer report's runs on less data, to measure what more photos would buy.
Only the larger sets give held-out images; the small ones (Photos, WikiPhotos49, T91) are all trained on, and
scikit-image's astronaut, camera, chelsea and coffee (the sources of the examples and of a test) are left out.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

HELD_OUT_SETS = (
    "BSDS400",
    "ImageNet600",
    "Imagenette1000",
    "Imagenette1500",
    "IntelScenes1500",
    "IntelScenes4800",
)
TRAIN_ONLY_SETS = ("Photos", "WikiPhotos49", "T91")
LEFT_OUT = {"astronaut", "camera", "chelsea", "coffee"}
HOLDOUT_SHARE = 0.025
HOLDOUT_SHARES = {"ImageNet600": 0.15}
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def in_share(key: str, share: float) -> bool:
    """Whether ``key`` falls in the lowest ``share`` of SHA-1 space: the same answer on every machine."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32 < share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="../shared/data/train")
    parser.add_argument("--out", type=Path, required=True, help="where color_train/ and color_holdout/ go")
    parser.add_argument(
        "--train-share", type=float, default=1.0, help="keep this share of the training images"
    )
    args = parser.parse_args()
    if not 0 < args.train_share <= 1:
        parser.error(f"--train-share must be in (0, 1], got {args.train_share}")
    train_dir = "color_train" if args.train_share == 1 else f"color_train_{args.train_share:g}"
    counts = {train_dir: 0, "color_holdout": 0}
    for name in HELD_OUT_SETS + TRAIN_ONLY_SETS:
        root = args.train / name
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES):
            if name == "Photos" and path.stem in LEFT_OUT:
                continue
            rel = path.relative_to(args.train).as_posix()
            share = HOLDOUT_SHARES.get(name, HOLDOUT_SHARE)
            link_name = rel.replace("/", "__")
            split = "color_holdout" if name in HELD_OUT_SETS and in_share(rel, share) else train_dir
            if split == train_dir and not in_share(link_name, args.train_share):
                continue
            link = args.out / split / link_name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                os.symlink(path.resolve(), link)
            counts[split] += 1
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
