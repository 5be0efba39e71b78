"""Super-resolution generators and discriminators, built from plain config values.

The networks themselves are basicsr's; each function here maps plain hyper-parameters onto one of them and
checks the values basicsr would otherwise accept and fail on later. ``cascade.models`` builds them by name from
these tables. basicsr is imported inside the functions: importing it costs seconds, and ``import sr`` should not.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


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

    return MSRResNet(num_in_ch=in_ch, num_out_ch=in_ch, num_feat=num_feat, num_block=num_block, upscale=scale)


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

    return RRDBNet(in_ch, in_ch, scale=scale, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch)


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


GENERATORS: dict[str, Callable[..., nn.Module]] = {"msrresnet": msrresnet, "rrdbnet": rrdbnet}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {"vgg_style": vgg_style, "unet_sn": unet_sn}
