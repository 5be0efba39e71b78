"""The SR stage's training photos: sharp HR images from ../shared/data/train, as one folder to pack.

    python reports/sr_photo_data.py --train ../shared/data/train --out ~/data/sr_photo_train
    cascade pack --stage sr --data ~/data/sr_photo_train --out ~/data/sr_photo.pack

T91, BSDS400, WikiPhotos49 and Photos (less scikit-image's astronaut, camera, chelsea and coffee, the sources of
the examples), gray PNGs. Photos whose short side is over MAX_SHORT_SIDE are brought down to it with PIL's box
filter: the wallpapers of Photos are soft per pixel at their native 3000-6000 px, and an SR network learns the
look of its targets; brought down, they are about as sharp as DIV2K's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from color_split import LEFT_OUT, SUFFIXES
from PIL import Image, ImageOps

SR_SETS = ("T91", "BSDS400", "WikiPhotos49", "Photos")
MAX_SHORT_SIDE = 1200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="../shared/data/train")
    parser.add_argument("--out", type=Path, required=True, help="the folder of gray PNGs to make")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    count = 0
    for name in SR_SETS:
        for path in sorted(p for p in (args.train / name).rglob("*") if p.suffix.lower() in SUFFIXES):
            if name == "Photos" and path.stem in LEFT_OUT:
                continue
            target = args.out / (
                path.relative_to(args.train).with_suffix("").as_posix().replace("/", "__") + ".png"
            )
            if not target.exists():
                img = ImageOps.exif_transpose(Image.open(path)).convert("L")
                if min(img.size) > MAX_SHORT_SIDE:
                    f = MAX_SHORT_SIDE / min(img.size)
                    img = img.resize((round(img.width * f), round(img.height * f)), Image.Resampling.BOX)
                img.save(target.with_suffix(".tmp.png"))
                target.with_suffix(".tmp.png").rename(target)
            count += 1
    print(f"{count} photos in {args.out}")


if __name__ == "__main__":
    main()
