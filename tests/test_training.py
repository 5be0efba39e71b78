"""Training parts on their own: degradation, perceptual loss, recipes, data loading and packs, schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data as skdata

from cascade.config import ConfigError
from cascade.training.config import LoopConfig, LossConfig, OptimConfig, load_config, parse_config
from cascade.training.data import CropSampler, center_crops, image_weights, load_images, split, write_pack
from cascade.training.loop import lr_at
from cascade.training.stages import pixel_loss
from sr.degrade import matlab_downscale
from sr.losses import MissingWeights, PerceptualLoss, TimmFeatures, VGG19Features, grid_loss

RECIPES = [
    "configs/sr_msrresnet_x4_psnr.yaml",
    "configs/sr_srgan_x4.yaml",
    "configs/sr_span_x4_finetune.yaml",
    "configs/sr_span_x4_photo.yaml",
    "configs/sr_span_x4_photo_gan.yaml",
    "configs/color_lite0_unet.yaml",
    "configs/color_resnet18_unet.yaml",
    "configs/color_pix2pix_unet.yaml",
    "configs/color_lite0_unet_cpu.yaml",
    "configs/color_lite0_unet_cpu_gan.yaml",
]


def color_folder(folder, size=(72, 56), gray_too=True):
    """A few small real color photos (scikit-image's bundled ones), one gray photo and one broken file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(skdata, name)()).resize(size).save(folder / f"{name}.png")
    if gray_too:
        Image.fromarray(skdata.camera()).resize(size).save(folder / "camera.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_batched_downscale_matches_basicsr_imresize(scale):
    from basicsr.utils.matlab_functions import imresize

    x = torch.rand(2, 1, 12 * scale, 10 * scale, generator=torch.Generator().manual_seed(scale))
    ours = matlab_downscale(x, scale, quantize=False)
    ref = torch.stack([imresize(img, 1 / scale) for img in x]).clamp(0, 1)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-5


def test_downscale_quantizes_to_8_bit_levels():
    lr = matlab_downscale(torch.rand(1, 1, 16, 16), 4, quantize=True)
    assert torch.allclose(lr * 255, (lr * 255).round(), atol=1e-4)
    with pytest.raises(ValueError, match="multiple of the scale"):
        matlab_downscale(torch.rand(1, 1, 10, 16), 4)


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory):
    """VGG19 features weights in torchvision's layout; random, since the loss's plumbing is what is tested."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19().features.state_dict().items()}
    path = tmp_path_factory.mktemp("vgg") / "vgg19.safetensors"
    save_file(state, path)
    return path


def test_perceptual_loss_loads_local_weights(vgg_file):
    layers = {"conv5_4": 1.0, "conv3_4": 0.5}
    loss = PerceptualLoss(VGG19Features(list(layers), vgg_file), layers)
    a = torch.rand(2, 1, 32, 32, requires_grad=True)
    assert loss(a, a.detach()).item() == 0
    value = loss(a, torch.rand(2, 1, 32, 32))
    value.backward()
    assert value.item() > 0 and a.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.features.training


def test_perceptual_loss_errors_are_clear(tmp_path):
    with pytest.raises(MissingWeights, match="not found"):
        VGG19Features(["conv5_4"], tmp_path / "missing.pth")
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, other)
    with pytest.raises(MissingWeights, match="not VGG19 weights"):
        VGG19Features(["conv5_4"], other)
    with pytest.raises(ValueError, match="unknown VGG19 layer conv9_9"):
        VGG19Features(["conv9_9"], other)


def test_perceptual_loss_over_a_timm_network():
    import timm

    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0", features_only=True)
    loss = PerceptualLoss(TimmFeatures(net, ["blocks.2", "blocks.4"]), {"blocks.2": 0.5, "blocks.4": 1.0})
    assert loss.mean.flatten().tolist() == [0.5, 0.5, 0.5]  # the TF-trained weights' normalization
    a = torch.rand(2, 1, 64, 64, requires_grad=True)
    assert loss(a, a.detach()).item() == 0
    value = loss(a, torch.rand(2, 1, 64, 64))
    value.backward()
    assert value.item() > 0 and a.grad.abs().sum() > 0


def test_grid_loss_measures_a_checkerboard_on_the_lr_grid():
    torch.manual_seed(0)
    target = torch.rand(2, 1, 64, 64)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((yy % 4 < 2) ^ (xx % 4 < 2)).float() * 2 - 1  # one cycle per 4-px LR pixel
    ramp = xx.float() / 64  # smooth: not a grid
    amplitude = 2 / 255
    assert grid_loss(target, target, 4).item() == 0
    assert grid_loss(target + amplitude * checker, target, 4).item() == pytest.approx(amplitude, rel=1e-3)
    assert grid_loss(target + 0.5 * ramp, target, 4).item() < 0.1 * amplitude  # (the border pads)
    noise = grid_loss(target + amplitude * torch.randn_like(target), target, 4).item()
    assert noise < 0.3 * amplitude  # the same energy, not on the grid, averages out over a window


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_load_and_build(recipe, tmp_path):
    from cascade.training.run import build_models

    cfg = load_config(recipe)
    generator, disc = build_models(cfg, for_resume=False, cache_dir=tmp_path)
    assert generator.arch_config["arch"] == cfg.model["arch"]
    assert (disc is None) == (cfg.discriminator is None)


def test_trainable_names_must_name_parameters_of_the_generator(tmp_path):
    from cascade.training.distributed import Processes
    from cascade.training.run import build_run

    raw = {"stage": "sr", "model": {"arch": "msrresnet", "num_feat": 8, "num_block": 1}}
    raw["train"] = {"trainable": ["conv_last", "body.7"], "device": "cpu"}
    with pytest.raises(
        ConfigError, match=r"no parameter 'body.7' in this generator \(its top-level parts: conv_f"
    ):
        build_run(
            parse_config(raw, "recipe.yaml"), tmp_path, Processes(0, 1, torch.device("cpu")), None, False
        )


def test_recipe_numbers_follow_the_issue():
    psnr, gan = load_config(RECIPES[0]), load_config(RECIPES[1])
    assert (psnr.optim.lr, psnr.optim.betas, psnr.loss.pixel, psnr.data.crop) == (2e-4, (0.9, 0.99), 1.0, 128)
    assert (gan.loss.pixel, gan.loss.perceptual, gan.loss.gan, gan.optim.lr) == (1e-2, 1.0, 5e-3, 1e-4)
    for recipe in (r for r in RECIPES if "/color_" in r and "_cpu" not in r):
        color = load_config(recipe)
        assert (color.loss.pixel, color.loss.gan, color.optim.betas, color.data.crop) == (
            100.0,
            1.0,
            (0.5, 0.999),
            256,
        )
        assert 0 < color.train.pretrain_steps < color.train.steps
    assert (
        load_config("configs/color_resnet18_unet.yaml").data.val_fraction == 0.2
    )  # the design's 80:20 split
    # the CPU campaign: the screening's winner regressed with L1, then the design's L1 x100 + PatchGAN from it
    l1, gan = (
        load_config("configs/color_lite0_unet_cpu.yaml"),
        load_config("configs/color_lite0_unet_cpu_gan.yaml"),
    )
    assert l1.model == {k: v for k, v in gan.model.items()} and l1.model["chroma_stride"] == 4
    assert (l1.loss.pixel_loss, l1.loss.gan, l1.discriminator, l1.train.ema) == ("l1", 0.0, None, 0.999)
    assert (gan.loss.pixel, gan.loss.gan, gan.optim.betas, gan.train.pretrain_steps) == (
        100.0,
        1.0,
        (0.5, 0.999),
        0,
    )
    assert l1.data == gan.data
    # the photo SR model's GAN phase continues its L1 phase on the same degradation
    photo, photo_gan = (
        load_config("configs/sr_span_x4_photo.yaml"),
        load_config("configs/sr_span_x4_photo_gan.yaml"),
    )
    assert photo.data == photo_gan.data and photo.data.degradation.clean_prob > 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"stage": "sr", "model": {"arch": "msrresnet"}, "dta": {}}, "unknown section dta"),
        ({"stage": "sr", "model": {"arch": "msrresnet"}, "data": {"crop": "big"}}, "data.crop: 'big' is not"),
        ({"stage": "sr", "model": {"arch": "msrresnet"}, "data": {"cropp": 3}}, "unknown option cropp"),
        ({"stage": "sr", "model": {"arch": "msrresnet"}, "loss": {"gan": 0.1}}, "no discriminator section"),
        ({"stage": "paint", "model": {"arch": "msrresnet"}}, "stage must be"),
        ({"stage": "sr"}, "missing 'model'"),
        (
            {"stage": "sr", "model": {}, "discriminator": {"arch": "vgg_style", "input_size": 128}},
            "judges 128 px patches but data.crop is 96",
        ),
        ({"stage": "sr", "model": {}, "train": {"steps": 5, "pretrain_steps": 9}}, "pretrain_steps"),
        ({"stage": "color", "model": {}, "data": {"set_weights": {"Intel": -1}}}, "set_weights must map"),
        ({"stage": "color", "model": {}, "data": {"set_weights": {"Intel": "lots"}}}, "set_weights.Intel"),
        ({"stage": "color", "model": {}, "data": {"crop_zoom": [1.2, 0.8]}}, "crop_zoom must be"),
        ({"stage": "color", "model": {}, "data": {"crop_zoom": [0.8]}}, "crop_zoom must be"),
        ({"stage": "color", "model": {}, "loss": {"pixel_per_image": "median"}}, "pixel_per_image: 'median'"),
        ({"stage": "color", "model": {}, "loss": {"pixel_log_floor": 0}}, "pixel_log_floor must be > 0"),
        ({"stage": "color", "model": {}, "loss": {"grid": 1.0}}, "loss.grid is for the SR stage"),
        ({"stage": "color", "model": {}, "loss": {"gan_real_label": 0.4}}, "gan_real_label must be in"),
        (
            {"stage": "color", "model": {}, "train": {"freeze_encoder_steps": "most"}},
            "'most' is not a int or",
        ),
        ({"stage": "sr", "model": {}, "train": {"trainable": "conv_last"}}, "trainable: 'conv_last' is not"),
        ({"stage": "sr", "model": {}, "train": {"trainable": []}}, "trainable must be a list of parameter"),
        (
            {"stage": "color", "model": {}, "train": {"trainable": ["decoder"], "freeze_encoder_steps": 9}},
            "trainable and train.freeze_encoder_steps cannot",
        ),
    ],
)
def test_bad_recipes_name_the_problem(raw, message):
    if "discriminator" in raw:
        raw["data"] = {"crop": 96}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, "recipe.yaml")


def test_per_image_log_loss_weighs_each_images_error_by_its_own_size():
    """Mean: the pixels of two images alike; log: a near-gray image's error counts relative to its small size,
    as a mean of per-image PSNRs counts it."""
    target = torch.zeros(2, 2, 8, 8)
    out = target.clone()
    out[0] += 0.2  # a colourful image, badly wrong
    out[1] += 0.01  # a near-gray image, a little wrong
    mean, log = LossConfig(), LossConfig(pixel_per_image="log", pixel_log_floor=0.005)
    assert pixel_loss(out, target, mean).item() == pytest.approx((0.2 + 0.01) / 2)
    assert pixel_loss(out, target, log).item() == pytest.approx((math.log(0.205) + math.log(0.015)) / 2)
    out.requires_grad_(True)
    pixel_loss(out, target, log).backward()
    pull = out.grad.abs().flatten(1).sum(1)
    assert pull[1] / pull[0] == pytest.approx(0.205 / 0.015)  # the near-gray image is pulled harder
    mse = LossConfig(pixel_loss="mse", pixel_per_image="log", pixel_log_floor=1e-4)
    assert pixel_loss(out, target, mse).item() == pytest.approx((math.log(0.0401) + math.log(0.0002)) / 2)


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(RECIPES[0], ["train.steps=7", "optim.betas=[0.8, 0.9]", "data.short_side=null"])
    assert cfg.train.steps == 7 and cfg.optim.betas == (0.8, 0.9) and cfg.data.short_side is None
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(RECIPES[0], ["train.steps"])


def test_lr_schedule_warms_up_then_follows_the_cosine():
    optim = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 110, optim, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 110, optim, 1.0) == pytest.approx(1.0)
    assert lr_at(60, 110, optim, 1.0) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_at(110, 110, optim, 1.0) == pytest.approx(0.1)
    assert lr_at(50, 110, OptimConfig(lr=1.0, schedule="constant"), 1.0) == 1.0
    assert LoopConfig().ema == 0.999


def test_folders_load_with_bad_and_gray_files_skipped(tmp_path):
    folder = color_folder(tmp_path / "photos")
    with pytest.warns(UserWarning, match=r"skipped 2 file\(s\).*broken.jpg: not a readable image"):
        color = load_images([folder], "color", short_side=64)
    assert len(color.images) == 4 and "camera" not in " ".join(color.names)  # the gray photo is no use
    assert all(
        img.dtype == torch.uint8 and img.shape[0] == 3 and min(img.shape[1:]) == 64 for img in color.images
    )
    with pytest.warns(UserWarning, match="skipped 1 file"):
        gray = load_images([folder], "sr", short_side=None)
    assert len(gray.images) == 5 and all(img.shape == (1, 56, 72) for img in gray.images)
    with pytest.raises(ConfigError, match="no such folder"):
        load_images([tmp_path / "nowhere"], "sr", None)


def test_pack_round_trip_is_lossless_and_checked(tmp_path):
    folder = color_folder(tmp_path / "photos", size=(120, 90), gray_too=False)
    pack = tmp_path / "train.pack"
    with pytest.warns(UserWarning):
        summary = write_pack([folder], pack, "sr", short_side=None)
        direct = load_images([folder], "sr", None)
    assert summary["images"] == 4 and pack.stat().st_size == summary["bytes"]
    packed = load_images([pack], "sr", None)
    assert packed.names == direct.names
    assert all(torch.equal(a, b) for a, b in zip(packed.images, direct.images))
    with pytest.raises(ConfigError, match="packed as L images, this stage trains on RGB"):
        load_images([pack], "color", None)
    with pytest.warns(UserWarning):
        write_pack([folder], tmp_path / "small.pack", "color", short_side=64, codec="jpeg")
    smaller = load_images([tmp_path / "small.pack"], "color", short_side=64)
    assert all(min(img.shape[1:]) == 64 for img in smaller.images)
    with pytest.raises(ConfigError, match="packed at short side 64 px"):
        load_images([tmp_path / "small.pack"], "color", short_side=128)
    (tmp_path / "junk.pack").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a cascade training pack"):
        load_images([tmp_path / "junk.pack"], "sr", None)


def test_split_is_fixed_and_disjoint():
    train, val = split(50, 0.2, seed=3)
    assert (train, val) == split(50, 0.2, seed=3)
    assert len(val) == 10 and not set(train) & set(val) and sorted(train + val) == list(range(50))
    assert split(50, 0.2, seed=4) != (train, val)
    assert split(2, 0.01, 0)[1] and split(5, 0.0, 0)[1] == []


def test_crops_are_random_but_reproducible_and_augmentations_permute_pixels():
    images = [torch.arange(40 * 30, dtype=torch.int32).view(1, 40, 30).to(torch.uint8) for _ in range(3)]
    a, b = CropSampler(images, 16, seed=5), CropSampler(images, 16, seed=5)
    crops = a.sample(8)
    assert crops.shape == (8, 1, 16, 16) and torch.equal(crops, b.sample(8))
    assert not torch.equal(crops, a.sample(8))
    augmented = a.augment(crops, flips=True, rotations=True)
    for before, after in zip(crops, augmented):
        assert torch.equal(before.flatten().sort().values, after.flatten().sort().values)
    assert not torch.equal(augmented, crops)
    assert center_crops(images, 20, limit=2).shape == (2, 1, 20, 20)
    with pytest.raises(ConfigError, match="val_crop"):
        center_crops(images, 64, limit=2)


def test_zoomed_crops_cut_larger_or_smaller_squares_and_resize_them_to_the_crop():
    ramp = torch.linspace(0, 255, 64).round().to(torch.uint8).expand(1, 64, 64)  # 4.05 levels per pixel
    span = lambda crops: (crops[:, 0, :, -1].float() - crops[:, 0, :, 0].float()).mean().item()  # noqa: E731
    plain = CropSampler([ramp], 16, seed=0).sample(8)
    zoomed_out = CropSampler([ramp], 16, seed=0, zoom=(2.0, 2.0)).sample(8)  # 32-px squares shown at 16
    whole = CropSampler([ramp], 16, seed=0, zoom=(8.0, 8.0)).sample(8)  # 128 px asked: the 64-px image
    assert zoomed_out.shape == whole.shape == (8, 1, 16, 16) and zoomed_out.dtype == torch.uint8
    assert span(plain) == pytest.approx(15 * 255 / 63, abs=1)
    assert span(zoomed_out) == pytest.approx(31 * 255 / 63 * 15 / 16, abs=6)
    assert span(whole) > 220 and torch.equal(whole[0], whole[1])
    a, b = (CropSampler([ramp], 16, seed=3, zoom=(0.5, 2.0)) for _ in range(2))
    assert torch.equal(a.sample(8), b.sample(8))


def test_set_weights_rebalance_which_images_are_cropped():
    names = ["d/IntelScenes4800__1.jpg", "d/IntelScenes1500__2.jpg", "d/ImageNet600__3.jpg", "d/T91__4.png"]
    weights = image_weights(names, {"IntelScenes": 0.0, "ImageNet": 3.0})
    assert weights == [0.0, 0.0, 3.0, 1.0] and image_weights(names, {}) is None
    images = [torch.full((1, 20, 20), i, dtype=torch.uint8) for i in range(4)]  # each image one gray level
    picked = CropSampler(images, 8, seed=0, weights=weights).sample(4000)[:, 0, 0, 0]
    counts = torch.bincount(picked.long(), minlength=4).tolist()
    assert counts[:2] == [0, 0] and 2.6 < counts[2] / counts[3] < 3.4  # 3:1, within sampling noise
    a, b = (CropSampler(images, 8, seed=1, weights=weights) for _ in range(2))
    assert torch.equal(a.sample(16), b.sample(16))


def test_prepare_handles_16_bit_and_exif(tmp_path):
    from cascade.training.data import prepare

    arr16 = (np.linspace(0, 65535, 32 * 24).reshape(24, 32)).astype(np.uint16)
    out = prepare(Image.fromarray(arr16), "L", None)
    assert out.shape == (24, 32, 1) and out.max() == 255
    img = Image.fromarray(skdata.astronaut()).resize((40, 20))
    exif = img.getexif()
    exif[0x0112] = 6  # rotated: stored landscape, shown portrait
    img.save(tmp_path / "r.jpg", exif=exif)
    assert prepare(Image.open(tmp_path / "r.jpg"), "RGB", None).shape == (40, 20, 3)


def test_a_runs_pieces_export_checkpoint_and_restore_on_their_own(tmp_path):
    from cascade.training import distributed
    from cascade.training.checkpoint import NAME, load_checkpoint
    from cascade.training.run import build_run, checkpoint, export, load_data, restore
    from cascade.weights import load_pipeline

    tiny = ["model.encoder=test_resnet", "model.decoder_channels=[32, 16, 16, 8, 8]", "model.pretrained=null"]
    tiny += [
        "data.crop=32",
        "data.short_side=32",
        "data.val_crop=32",
        "data.val_fraction=0.25",
        "train.ema=0.9",
    ]
    cfg = load_config("configs/color_lite0_unet_cpu.yaml", tiny)
    procs = distributed.start("cpu")
    images = [color_folder(tmp_path / "photos")]
    run = build_run(cfg, tmp_path / "run", procs, init=None, resuming=False)
    run.sampler, run.val_crops = load_data(cfg, images, procs)
    with torch.no_grad():
        for p in run.ema.module.parameters():
            p.add_(0.5)  # the EMA's weights differ from the trained ones: export must take the EMA's
    exported = load_pipeline(export(run, tmp_path / "exported", "a note"), only="color")
    assert "a note" in exported.description and exported.render_size == 32
    for name, value in exported.color.state_dict().items():
        assert torch.equal(value, run.ema.module.state_dict()[name])

    (tmp_path / "run").mkdir()
    run.step, run.best = 5, {"step": 4, "value": 1.0}
    checkpoint(run, 5)
    again = build_run(cfg, tmp_path / "run", procs, init=None, resuming=True)
    again.sampler, again.val_crops = load_data(cfg, images, procs)
    restore(again, load_checkpoint(tmp_path / "run" / NAME))
    assert (again.step, again.best) == (5, {"step": 4, "value": 1.0})
    for name, value in run.generator.state_dict().items():
        assert torch.equal(value, again.generator.state_dict()[name])
    assert torch.equal(run.sampler.sample(2), again.sampler.sample(2))  # the crops go on where they stopped
    distributed.stop(procs)


def test_label_smoothing_sets_the_discriminators_target_on_real_images_only(tmp_path):
    """A PatchGAN made to answer a constant logit z: its loss on the reals is the cross-entropy against the
    smoothed label, on the fakes against 0; the smoothed loss is least where the discriminator says 0.9."""
    from cascade.training import distributed
    from cascade.training.loop import _discriminator_step, gan_loss
    from cascade.training.run import build_run, runnable

    tiny = ["model.encoder=test_resnet", "model.decoder_channels=[32, 16, 16, 8, 8]", "model.pretrained=null"]
    tiny += ["discriminator.num_filters=8", "data.crop=32", "data.val_crop=32", "loss.gan_real_label=0.9"]
    cfg = load_config("configs/color_lite0_unet_cpu_gan.yaml", tiny)
    procs = distributed.start("cpu")
    run = build_run(cfg, tmp_path / "run", procs, init=None, resuming=False)
    run.g_run, run.d_run = runnable(run)
    z = math.log(9.0)  # sigmoid(z) = 0.9
    last = run.disc.model[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(z)
    inp, ab = torch.rand(2, 1, 32, 32), torch.rand(2, 2, 32, 32) - 0.5
    terms = _discriminator_step(run, inp, ab, ab)
    entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert terms["d_real"].item() == pytest.approx(entropy, rel=1e-5)  # not -log(0.9), the unsmoothed loss
    assert terms["d_fake"].item() == pytest.approx(math.log(10.0), rel=1e-5)  # -log(1 - 0.9)
    logits = torch.tensor([z - 0.1, z, z + 0.1])
    losses = [gan_loss(v.view(1), 0.9).item() for v in logits]
    assert losses[1] < min(losses[0], losses[2])
    distributed.stop(procs)


@pytest.mark.parametrize(("freeze", "moved"), [("all", [False, False, False]), (1, [False, True, True])])
def test_a_frozen_encoder_holds_still_for_its_steps_or_the_whole_run(freeze, moved, tmp_path):
    """``all`` holds the encoder for however many steps an override gives the run (a number of steps did not:
    the GAN recipe's 4,000, meant as "throughout", let the encoder train past step 4,000 of longer runs)."""
    from cascade.training import distributed
    from cascade.training.loop import train_step
    from cascade.training.run import build_run, load_data, runnable

    tiny = ["model.encoder=test_resnet", "model.decoder_channels=[32, 16, 16, 8, 8]", "model.pretrained=null"]
    tiny += ["data.crop=32", "data.short_side=32", "data.val_crop=32", "data.val_fraction=0.25"]
    tiny += [
        "data.batch_size=2",
        "optim.warmup_steps=0",
        "train.steps=3",
        f"train.freeze_encoder_steps={freeze}",
    ]
    cfg = load_config("configs/color_lite0_unet_cpu.yaml", tiny)
    procs = distributed.start("cpu")
    run = build_run(cfg, tmp_path / "run", procs, init=None, resuming=False)
    run.sampler, run.val_crops = load_data(cfg, [color_folder(tmp_path / "photos")], procs)
    run.g_run, run.d_run = runnable(run)
    encoder, decoder = run.generator.encoder, run.generator.decoder

    def moved_since(before: list[torch.Tensor], part: torch.nn.Module) -> bool:
        return any(not torch.equal(a, b) for a, b in zip(before, part.parameters(), strict=True))

    for step, expected in enumerate(moved):
        enc, dec = ([p.detach().clone() for p in part.parameters()] for part in (encoder, decoder))
        train_step(run)
        run.step += 1
        assert moved_since(enc, encoder) == expected, step
        assert moved_since(dec, decoder)  # the decoder trains at every step
    distributed.stop(procs)


def test_an_exponent_without_a_dot_is_a_number():
    cfg = load_config(RECIPES[0], ["optim.lr=1e-4", "optim.min_lr_ratio=5E-2"])
    assert (cfg.optim.lr, cfg.optim.min_lr_ratio) == (1e-4, 0.05)
    with pytest.raises(ConfigError, match="'1e' is not a float"):
        load_config(RECIPES[0], ["optim.lr=1e"])


def test_encoder_lr_gives_the_encoder_its_own_peak_on_the_same_schedule():
    from cascade.models import create_colorizer
    from cascade.training.run import generator_groups, group_peaks

    generator = create_colorizer({"arch": "timm_unet", "encoder": "test_resnet", "decoder_channels": [8] * 5})
    opt = OptimConfig(lr=1e-3, encoder_lr=1e-5, warmup_steps=0, schedule="cosine")
    decoder, encoder = generator_groups(generator, opt)
    assert {id(p) for p in encoder["params"]} == {id(p) for p in generator.encoder.parameters()}
    assert len(decoder["params"]) + len(encoder["params"]) == len(list(generator.parameters()))
    assert [lr_at(50, 100, opt, peak) for peak in group_peaks(opt)] == pytest.approx([5e-4, 5e-6])
    one = generator_groups(generator, OptimConfig(lr=1e-3))
    assert len(one) == 1 and len(one[0]["params"]) == len(list(generator.parameters()))
    with pytest.raises(ConfigError, match="no pretrained encoder"):
        generator_groups(torch.nn.Conv2d(1, 1, 1), opt)
    with pytest.raises(ConfigError, match="optim.encoder_lr must be > 0"):
        parse_config({"stage": "color", "model": {}, "optim": {"encoder_lr": 0}}, "recipe.yaml")


def test_a_resume_with_other_optimizer_groups_names_encoder_lr(tmp_path):
    from cascade.training.distributed import Processes
    from cascade.training.run import build_run, restore

    raw = {
        "stage": "color",
        "model": {"arch": "timm_unet", "encoder": "test_resnet", "decoder_channels": [8] * 5},
    }
    raw["optim"], raw["train"] = {"encoder_lr": 1e-5}, {"device": "cpu"}
    run = build_run(
        parse_config(raw, "recipe.yaml"), tmp_path, Processes(0, 1, torch.device("cpu")), None, True
    )
    assert len(run.opt_g.param_groups) == 2
    one_group = torch.optim.AdamW(run.generator.parameters()).state_dict()
    with pytest.raises(ConfigError, match="optim.encoder_lr must be set"):
        restore(run, {"generator": run.generator.state_dict(), "opt_g": one_group})
