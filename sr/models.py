"""Super-resolution generators and discriminators, built from plain config values.

The networks are basicsr's, and SPAN (``sr.span``, the form its released weights take); each function here maps
plain hyper-parameters onto one of them and checks the values basicsr would otherwise accept and fail on later.
``cascade.models`` builds them by name from these tables. basicsr is imported inside the functions: importing it
costs seconds, and ``import sr`` should not.

Every generator carries its facts as attributes, whatever its origin: ``scale`` (the upscaling factor),
``in_ch`` and ``out_ch`` (image channels), and ``size_multiple`` (input sides must be a multiple of it; the tiler
pads to it).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sr.span import DIV2K_RGB_MEAN, SPAN


def with_facts(model: nn.Module, scale: int, in_ch: int, out_ch: int, size_multiple: int = 1) -> nn.Module:
    """Attach the facts every generator declares (see the module docstring)."""
    model.scale, model.in_ch, model.out_ch, model.size_multiple = scale, in_ch, out_ch, size_multiple
    return model


def msrresnet(scale: int = 4, num_feat: int = 64, num_block: int = 16, in_ch: int = 1) -> nn.Module:
    """MSRResNet (SRResNet without BN, as in basicsr); predicts a residual over bilinear upsampling.

    Args:
        scale: upsampling factor, 2, 3 or 4.
        num_feat: channels of the residual trunk.
        num_block: residual blocks in the trunk.
        in_ch: image channels in and out (1 = luminance).
    """
    if scale not in (2, 3, 4):
        raise ValueError(f"msrresnet supports scale 2, 3 or 4, not {scale}")
    from basicsr.archs.srresnet_arch import MSRResNet

    model = MSRResNet(
        num_in_ch=in_ch, num_out_ch=in_ch, num_feat=num_feat, num_block=num_block, upscale=scale
    )
    return with_facts(model, scale, in_ch, in_ch)


def rrdbnet(
    scale: int = 4, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32, in_ch: int = 1
) -> nn.Module:
    """RRDBNet, the ESRGAN generator: larger and slower than MSRResNet.

    Args:
        scale: upsampling factor, 2 or 4 (basicsr's RRDBNet has no x3 path).
        num_feat: channels of the trunk.
        num_block: residual-in-residual dense blocks.
        num_grow_ch: growth channels inside each dense block.
        in_ch: image channels in and out (1 = luminance).
    """
    if scale not in (2, 4):
        raise ValueError(f"rrdbnet supports scale 2 or 4, not {scale}")
    from basicsr.archs.rrdbnet_arch import RRDBNet

    model = RRDBNet(
        in_ch, in_ch, scale=scale, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch
    )
    return with_facts(
        model, scale, in_ch, in_ch, size_multiple=4 // scale
    )  # x2 starts with pixel_unshuffle(2)


def span(
    scale: int = 4,
    num_feat: int = 48,
    num_block: int = 6,
    in_ch: int = 1,
    img_mean: tuple[float, ...] | None = None,
) -> nn.Module:
    """SPAN in its re-parameterised (inference) form, as the released x2/x4 weights store it (``sr.span``).

    Args:
        scale: upsampling factor.
        num_feat: feature channels (48 or 52 in the released x4 models).
        num_block: SPAB blocks.
        in_ch: image channels in and out (1 = luminance).
        img_mean: the input's per-channel mean; null: DIV2K's RGB mean (its average for one channel).
    """
    if scale not in (2, 3, 4):
        raise ValueError(f"span supports scale 2, 3 or 4, not {scale}")
    if img_mean is None:
        img_mean = DIV2K_RGB_MEAN if in_ch == 3 else (sum(DIV2K_RGB_MEAN) / 3,) * in_ch
    model = SPAN(in_ch, in_ch, num_feat=num_feat, num_block=num_block, scale=scale, img_mean=tuple(img_mean))
    return with_facts(model, scale, in_ch, in_ch)


def srvgg(scale: int = 4, num_feat: int = 64, num_conv: int = 16, in_ch: int = 1) -> nn.Module:
    """SRVGGNetCompact (Real-ESRGAN's compact model): PReLU convs at LR, a pixel shuffle, plus the nearest
    upsampled input.

    Args:
        scale: upsampling factor.
        num_feat: feature channels.
        num_conv: convolutions in the body.
        in_ch: image channels in and out (1 = luminance).
    """
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    model = SRVGGNetCompact(
        in_ch, in_ch, num_feat=num_feat, num_conv=num_conv, upscale=scale, act_type="prelu"
    )
    return with_facts(model, scale, in_ch, in_ch)


def vgg_style(input_size: int = 128, num_feat: int = 64, in_ch: int = 1) -> nn.Module:
    """basicsr's VGG-style discriminator (SRGAN/ESRGAN) on fixed-size HR patches.

    Args:
        input_size: patch size it judges, 128 or 256.
        num_feat: channels of the first conv.
        in_ch: image channels (1 = luminance).
    """
    if input_size not in (128, 256):
        raise ValueError(f"vgg_style takes input_size 128 or 256, not {input_size}")
    from basicsr.archs.discriminator_arch import VGGStyleDiscriminator

    return VGGStyleDiscriminator(num_in_ch=in_ch, num_feat=num_feat, input_size=input_size)


def unet_sn(num_feat: int = 64, skip_connection: bool = True, in_ch: int = 1) -> nn.Module:
    """basicsr's U-Net discriminator with spectral norm (Real-ESRGAN): a per-pixel realness map.

    Args:
        num_feat: channels of the first conv.
        skip_connection: U-Net skips between encoder and decoder.
        in_ch: image channels (1 = luminance).
    """
    from basicsr.archs.discriminator_arch import UNetDiscriminatorSN

    return UNetDiscriminatorSN(num_in_ch=in_ch, num_feat=num_feat, skip_connection=skip_connection)


GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "msrresnet": msrresnet,
    "rrdbnet": rrdbnet,
    "span": span,
    "srvgg": srvgg,
}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {"vgg_style": vgg_style, "unet_sn": unet_sn}
