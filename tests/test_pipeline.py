import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cascade import NoBundledWeights, Pipeline
from cascade.config import ConfigError
from cascade.imageio import GrayImage
from cascade.models import create_colorizer
from cascade.pipeline import BUNDLED_SR_MODELS
from tests.conftest import photo, tiny_color, tiny_sr


def test_restores_pil_array_tensor_and_path(tiny_pipe, tmp_path):
    gray = photo((40, 30))
    Image.fromarray(gray).save(tmp_path / "a.png")
    inputs = [
        Image.fromarray(gray),
        gray,
        torch.from_numpy(gray / 255.0),
        tmp_path / "a.png",
        str(tmp_path / "a.png"),
    ]
    outs = [tiny_pipe(i) for i in inputs]
    for out in outs:
        assert out.mode == "RGB" and out.size == (160, 120)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(outs[0]))


def test_output_keeps_the_gray_and_adds_color(tiny_pipe):
    out = np.asarray(tiny_pipe(photo((40, 30))), np.float32)
    assert np.abs(out - out.mean(axis=2, keepdims=True)).max() > 1  # not gray
    # the L channel is the super-resolved gray: output luminance follows the upscaled input's structure
    sr_only = Pipeline(tiny_sr(), None, device="cpu")
    gray = np.asarray(sr_only(photo((40, 30))), np.float32)[..., 0]
    lum = out @ [0.299, 0.587, 0.114]
    assert np.corrcoef(lum.ravel(), gray.ravel())[0, 1] > 0.95


def test_single_stage_pipelines():
    img = photo((40, 30))
    sr_only = Pipeline(tiny_sr(), None, device="cpu")(img)
    assert sr_only.size == (160, 120) and sr_only.mode == "RGB"
    arr = np.asarray(sr_only)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    color_only = Pipeline(None, tiny_color(), device="cpu", render_size=None)(img)
    assert color_only.size == (40, 30)
    with pytest.raises(ValueError, match="at least one stage"):
        Pipeline(None, None)


def test_output_scale_other_than_the_models(tiny_pipe):
    assert tiny_pipe(photo((40, 30)), scale=2).size == (80, 60)
    assert Pipeline(None, tiny_color(), device="cpu")(photo((40, 30)), scale=3).size == (120, 90)


def test_colorizer_works_at_the_render_size():
    seen = []
    color = tiny_color()
    color.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    pipe = Pipeline(tiny_sr(), color, device="cpu", render_size=32)
    out = pipe(photo((40, 30)))  # SR output 160x120; short side 120 -> 32
    assert out.size == (160, 120)
    assert seen == [(32, 64)] * 2  # 32 x 43, padded to the encoder's multiple of 32; the photo and its mirror
    seen.clear()
    Pipeline(tiny_sr(), color, device="cpu", render_size=None, color_flip=False)(photo((40, 30)))
    assert seen == [(128, 160)]  # full size 120 x 160, padded; one pass


def test_same_sized_images_share_a_forward_pass():
    calls = []
    sr = tiny_sr()
    sr.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    pipe = Pipeline(sr, None, device="cpu", batch_size=3)
    imgs = [GrayImage(photo((24, 20), seed=i) / 255.0) for i in range(4)] + [
        GrayImage(photo((20, 24)) / 255.0)
    ]
    outs = pipe.restore(imgs)
    assert calls == [3, 1, 1]
    assert [o.size for o in outs] == [(96, 80)] * 4 + [(80, 96)]
    one_by_one = Pipeline(tiny_sr(), None, device="cpu").restore(imgs[1:2])[0]
    np.testing.assert_allclose(np.asarray(outs[1], np.float32), np.asarray(one_by_one, np.float32), atol=1)


def test_color_input_warns():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 200
    with pytest.warns(UserWarning, match="color input converted to luminance"):
        Pipeline(tiny_sr(), None, device="cpu")(rgb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Pipeline(tiny_sr(), None, device="cpu")(
            np.repeat(photo((20, 20))[..., None], 3, axis=2)
        )  # gray as RGB


def test_save_and_load_round_trip(tiny_pipe, tmp_path):
    tiny_pipe.save(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "color.safetensors",
        "pipeline.yaml",
        "sr.safetensors",
    ]
    loaded = Pipeline.from_pretrained(tmp_path / "p", device="cpu")
    assert loaded.render_size == 64 and loaded.scale == 4 and not loaded.trained
    assert loaded.color.arch_config == {**tiny_pipe.color.arch_config, "pretrained": None}
    img = photo((40, 30))
    np.testing.assert_array_equal(np.asarray(loaded(img)), np.asarray(tiny_pipe(img)))
    sr_only = Pipeline.from_pretrained(tmp_path / "p", only="sr", device="cpu")
    assert sr_only.color is None and sr_only(img).size == (160, 120)


def test_fp16_weights_load_into_fp32(tiny_pipe, tmp_path):
    tiny_pipe.save(tmp_path / "half", weights_dtype="fp16")
    loaded = Pipeline.from_pretrained(tmp_path / "half", device="cpu")
    a = np.asarray(loaded(photo((40, 30))), np.float32)
    b = np.asarray(tiny_pipe(photo((40, 30))), np.float32)
    assert np.abs(a - b).mean() < 1


def test_bad_pipeline_folders_are_clear_errors(tiny_pipe, tmp_path):
    with pytest.raises(ConfigError, match="no pipeline here"):
        Pipeline.from_pretrained(tmp_path)
    folder = tiny_pipe.save(tmp_path / "p")
    text = (folder / "pipeline.yaml").read_text()
    (folder / "pipeline.yaml").write_text(text.replace("num_block: 1", "num_block: 2"))
    with pytest.raises(ConfigError, match="does not fit the msrresnet model"):
        Pipeline.from_pretrained(folder)
    (folder / "pipeline.yaml").write_text(text.replace("render_size", "render_sise"))
    with pytest.raises(ConfigError, match="unknown key render_sise"):
        Pipeline.from_pretrained(folder)
    (folder / "pipeline.yaml").write_text(text)
    (folder / "sr.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        Pipeline.from_pretrained(folder)


def test_no_bundled_weights_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("cascade.pipeline.BUNDLED", tmp_path)
    with pytest.raises(NoBundledWeights, match="no trained psnr weights are bundled"):
        Pipeline.from_pretrained()


def test_bundled_sr_models_share_the_colorizer(tiny_pipe, tmp_path, monkeypatch):
    from cascade.training.export import add_sr_variant

    tiny_pipe.save(tmp_path / "default")
    other = tiny_sr()
    with torch.no_grad():
        other.conv_first.weight.add_(1)
    Pipeline(other, None, device="cpu").save(tmp_path / "other_sr")
    add_sr_variant(tmp_path / "default", "gan", tmp_path / "other_sr")
    monkeypatch.setattr("cascade.pipeline.BUNDLED", tmp_path / "default")
    monkeypatch.setitem(BUNDLED_SR_MODELS, "gan", "pipeline_gan.yaml")
    psnr, gan = (
        Pipeline.from_pretrained(device="cpu"),
        Pipeline.from_pretrained(sr_model="gan", device="cpu"),
    )
    img = photo((40, 30))
    np.testing.assert_array_equal(np.asarray(psnr(img)), np.asarray(tiny_pipe(img)))
    assert not torch.equal(gan.sr.conv_first.weight, psnr.sr.conv_first.weight)
    assert torch.equal(gan.color.state_dict()["head.weight"], psnr.color.state_dict()["head.weight"])
    with pytest.raises(ValueError, match="unknown SR model 'best'"):
        Pipeline.from_pretrained(sr_model="best")
    with pytest.raises(ValueError, match="pick among the bundled weights"):
        Pipeline.from_pretrained(tmp_path / "other_sr", sr_model="gan")


def test_the_color_model_is_picked_apart_from_the_sr_model(tiny_pipe, tmp_path, monkeypatch):
    tiny_pipe.save(tmp_path / "default")
    vivid = tiny_color()
    with torch.no_grad():
        vivid.head.weight.add_(1)
    Pipeline(None, vivid, render_size=24, saturation=1.5, device="cpu").save(tmp_path / "vivid")
    (tmp_path / "vivid" / "color.safetensors").rename(tmp_path / "default" / "color_vivid.safetensors")
    text = (
        (tmp_path / "vivid" / "pipeline.yaml")
        .read_text()
        .replace("color.safetensors", "color_vivid.safetensors")
    )
    (tmp_path / "default" / "pipeline_vivid.yaml").write_text(text)
    monkeypatch.setattr("cascade.pipeline.BUNDLED", tmp_path / "default")
    default, bright = (
        Pipeline.from_pretrained(color_model=m, device="cpu") for m in ("conservative", "vivid")
    )
    assert torch.equal(bright.sr.conv_first.weight, default.sr.conv_first.weight)  # the one bundled SR model
    assert torch.equal(bright.color.head.weight, vivid.head.weight)
    assert not torch.equal(bright.color.head.weight, default.color.head.weight)
    assert (bright.render_size, bright.saturation) == (24, 1.5)  # the colorizer's own settings
    assert Pipeline.from_pretrained(color_model="vivid", only="color", device="cpu").sr is None
    with pytest.raises(ValueError, match="unknown color model 'loud'; choose one of conservative, vivid"):
        Pipeline.from_pretrained(color_model="loud")
    (tmp_path / "default" / "pipeline_vivid.yaml").unlink()
    with pytest.raises(NoBundledWeights, match="no trained vivid weights are bundled"):
        Pipeline.from_pretrained(color_model="vivid")


def test_devices_and_dtypes(no_gpu):
    assert Pipeline(tiny_sr(), None).device.type == "cpu"  # auto on a machine without a GPU
    with pytest.raises(ValueError, match="fp16 runs only on a GPU"):
        Pipeline(tiny_sr(), None, device="cpu", dtype="fp16")
    fp32 = np.asarray(Pipeline(tiny_sr(), tiny_color(), device="cpu")(photo((40, 30))), np.float32)
    bf16 = np.asarray(
        Pipeline(tiny_sr(), tiny_color(), device="cpu", dtype="bf16")(photo((40, 30))), np.float32
    )
    assert np.abs(fp32 - bf16).mean() < 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fp16_matches_cpu():
    img = photo((64, 48))
    cpu = np.asarray(Pipeline(tiny_sr(), tiny_color(), device="cpu")(img), np.float32)
    gpu = np.asarray(Pipeline(tiny_sr(), tiny_color(), device="cuda", dtype="fp16")(img), np.float32)
    assert np.abs(cpu - gpu).mean() < 3


def test_large_image_is_tiled():
    calls = []
    sr = tiny_sr()
    sr.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape)))
    out = Pipeline(sr, None, device="cpu", tile=64, tile_overlap=16, batch_size=2)(photo((150, 100)))
    assert out.size == (600, 400)
    # 3 x 2 windows of at most 64 pixels, sized to cover 150 x 100 evenly: 61 x 58
    assert all(s[-2:] == (58, 61) for s in calls) and sum(s[0] for s in calls) == 3 * 2


def test_pix2pix_colorizer_in_a_pipeline():
    color = create_colorizer({"arch": "pix2pix_unet", "n_down": 5, "num_filters": 8})
    out = Pipeline(None, color, device="cpu", render_size=40)(photo((50, 40)))
    assert out.size == (50, 40) and out.mode == "RGB"


def test_pix2pix_pipeline_saves_and_loads(tmp_path):
    """An architecture without a pretrained encoder is saved without one (a `pretrained` key would not load)."""
    color = create_colorizer({"arch": "pix2pix_unet", "n_down": 5, "num_filters": 8})
    pipe = Pipeline(None, color, device="cpu", render_size=40)
    pipe.save(tmp_path / "p2p")
    loaded = Pipeline.from_pretrained(tmp_path / "p2p", device="cpu")
    image = photo((50, 40))
    assert np.array_equal(np.asarray(loaded(image)), np.asarray(pipe(image)))


def test_saturation_scales_the_colors_and_is_saved(tiny_pipe, tmp_path):
    gray = np.asarray(Image.fromarray(photo((48, 40))))
    vivid = np.asarray(tiny_pipe(gray)).astype(int)
    tiny_pipe.saturation = 0.0
    flat = np.asarray(tiny_pipe(gray)).astype(int)
    assert np.abs(flat - flat.mean(axis=2, keepdims=True)).max() <= 1  # no color at 0
    assert np.abs(vivid - vivid.mean(axis=2, keepdims=True)).max() > 5
    tiny_pipe.saturation = 1.5
    tiny_pipe.save(tmp_path / "p")
    assert Pipeline.from_pretrained(tmp_path / "p").saturation == 1.5
    with pytest.raises(ValueError, match="saturation must be a number from 0 to 4"):
        Pipeline(tiny_sr(), None, saturation=-1)


def test_color_levels_show_the_colorizer_a_faded_photo_as_it_was():
    from cascade.inference import predict_chroma, stretch_levels

    color = tiny_color().eval()
    gray = torch.from_numpy(np.asarray(photo((64, 48)), dtype=np.float32) / 255)[None, None]
    gray = (gray - gray.min()) / (gray.max() - gray.min())  # black to white
    faded = 0.25 + 0.5 * gray  # lifted blacks, dull whites
    clean = predict_chroma(gray, color, render_size=None, levels=True)  # a*b* in Lab units
    assert (predict_chroma(faded, color, render_size=None, levels=True) - clean).abs().max() < 0.5
    assert (predict_chroma(faded, color, render_size=None) - clean).abs().max() > 2
    # a photo already black to white is left nearly as it is; a flat one is not blown up into noise
    assert (stretch_levels(gray) - gray).abs().max() < 0.02
    flat = 0.5 + 0.01 * torch.randn(1, 1, 32, 32)
    assert (stretch_levels(flat) - 0.5).abs().max() < 4.5 * (flat - 0.5).abs().max()
    # on by default; the output keeps the faded photo's own tones either way
    assert Pipeline(None, color, device="cpu").color_levels
    faded8 = (faded[0, 0].numpy() * 255).round().astype(np.uint8)
    for levels in (True, False):
        out = np.asarray(Pipeline(None, color, device="cpu", render_size=None, color_levels=levels)(faded8))
        lum = out.astype(np.float32) @ [0.299, 0.587, 0.114]
        assert np.abs(lum - faded8).mean() < 2


def test_color_flip_averages_the_prediction_with_the_mirror_images():
    from cascade.inference import predict_chroma

    color = tiny_color().eval()
    gray = torch.from_numpy(np.asarray(photo((40, 32)), dtype=np.float32) / 255)[None, None]
    plain = predict_chroma(gray, color, render_size=None)
    mirrored = predict_chroma(gray.flip(-1), color, render_size=None).flip(-1)
    flipped = predict_chroma(gray, color, render_size=None, flip=True)
    assert torch.allclose(flipped, (plain + mirrored) / 2, atol=1e-5)
    # the tiny colorizer is not mirror-symmetric, so averaging changes something
    assert (flipped - plain).abs().max() > 1e-3
    # on by default; off gives the plain prediction
    assert Pipeline(None, color, device="cpu").color_flip
    on = np.asarray(Pipeline(None, color, device="cpu", render_size=None)(photo((40, 32))))
    off = np.asarray(Pipeline(None, color, device="cpu", render_size=None, color_flip=False)(photo((40, 32))))
    assert np.abs(on.astype(int) - off).max() > 0
