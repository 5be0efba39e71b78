"""A training recipe as data: YAML -> frozen dataclasses, checked on load, overridable with ``key=value``.

Every number of a recipe lives in ``configs/*.yaml``; a field left out takes the default below. The resolved
config is written beside a run's outputs and inside its checkpoints, so a run can always be rebuilt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cascade.config import ConfigError, check_options, load_yaml, plain
from sr.degradations import Degradation


@dataclass(frozen=True)
class DataConfig:
    """What a training step sees.

    Args:
        crop: training crop in px (the HR patch for SR; the colorizer's input size for color).
        batch_size: crops per step (per process under torchrun).
        short_side: resize every image so that its short side is this many px when loading (color recipes
            work on whole scenes at a fixed scale); null keeps images as they are (SR needs full detail).
        val_fraction: share of the images held out for validation, chosen with ``seed``.
        val_crop: validation images are center-cropped to this square size, so they batch.
        val_max_images: at most this many validation images (validation must stay cheap).
        crop_zoom: random-resized crops: each crop is cut as a square of ``crop * z`` px, z uniform in this
            [low, high] range (at most the image's short side), then resized to ``crop`` (antialiased); null
            cuts plain ``crop``-px squares. With ``short_side`` above ``crop`` it shows each photo at several
            scales and framings.
        flips: random horizontal flips.
        rotations: random 90-degree rotations and vertical flips (SR; not for color, skies are up).
        quantize_lr: round the bicubic LR to 8-bit levels, as an LR image on disk is (SR).
        degradation: how the SR stage makes its LR inputs: ``kind: bicubic`` (the benchmarks') or ``realistic``
            (Real-ESRGAN's two rounds of blur, resize, noise and JPEG; every range a key, see
            ``sr.degradations.Degradation``).
        set_weights: sampling weight of the images whose name (path) contains a key, e.g. ``{IntelScenes: 0.25}``
            to rebalance a mix of sets without repacking; the first matching key counts, other images weigh 1.
        seed: for the split and for sampling crops.
        workers: decoding threads while loading a folder.
    """

    crop: int = 128
    batch_size: int = 16
    short_side: int | None = None
    val_fraction: float = 0.2
    val_crop: int = 256
    val_max_images: int = 64
    crop_zoom: tuple[float, float] | None = None
    flips: bool = True
    rotations: bool = False
    quantize_lr: bool = True
    degradation: Degradation = field(default_factory=Degradation)
    set_weights: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    workers: int = 4


@dataclass(frozen=True)
class OptimConfig:
    """Adam for the generator (and the discriminator) with a warm-up then cosine learning rate.

    Args:
        lr: peak generator learning rate.
        betas: Adam's betas.
        weight_decay: AdamW weight decay (0 is plain Adam).
        d_lr: discriminator learning rate; null: same as ``lr``.
        encoder_lr: peak learning rate of the generator's pretrained encoder (the same schedule); null: ``lr``.
            A fraction of ``lr`` moves the ImageNet features slowly (reports/colorizer.md: at 1e-5 against 1e-4
            they still drifted towards the training photos).
        schedule: cosine (down to ``min_lr_ratio * lr`` at the last step) or constant.
        warmup_steps: linear warm-up from 0.
        min_lr_ratio: the cosine's floor as a fraction of ``lr``.
        grad_clip: clip the generator's gradient norm to this; null: no clipping.
    """

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    d_lr: float | None = None
    encoder_lr: float | None = None
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None


@dataclass(frozen=True)
class LossConfig:
    """Weights of the generator's loss terms (0 turns a term off).

    Args:
        pixel: weight of the pixel loss between output and target (the color recipe's lambda is 100).
        pixel_loss: l1 (the recipes'), mse (rewards the mean where the target is uncertain, which is what PSNR
            scores) or huber (mse below ``huber_delta``, l1 above).
        huber_delta: where huber turns from quadratic to linear, in the network's output units.
        pixel_per_image: how the pixel loss is averaged over a batch: mean (every pixel alike) or log (the mean
            over images of log(pixel_log_floor + the image's own loss): each image's error counts relative to
            its size, as a mean of per-image PSNRs counts it, so that a few wrong colours on a near-gray
            photo cost as much as many on a colourful one).
        pixel_log_floor: added before the log, in the loss's units, so that a near-perfect image does not
            dominate (for L1 on the colorizer's ab / 110: 0.005 is half a unit of a* or b*).
        perceptual: feature L1 of an ImageNet network (SR GAN recipe).
        gan: adversarial term; needs a ``discriminator`` section.
        gan_real_label: the discriminator's target on real images; below 1 is one-sided label smoothing
            (Salimans et al. 2016, 0.9): a discriminator that cannot grow sure of the reals wins more slowly.
        grid: L1 between what of output and target repeats with the LR pixel grid (SR only; ``sr.losses.
            grid_loss``): holds off the checkerboard a perceptual term grows.
        perceptual_net: ``vgg19`` (the papers') or a timm model name such as ``tf_efficientnet_lite0``.
        perceptual_layers: layer -> weight; VGG19 names (conv5_4) or the timm model's stage modules (blocks.4).
        perceptual_weights: the network's ImageNet weights: a local file, a pip package of
            ``cascade.imagenet_weights.LITE_PACKAGES``, or null for torchvision's or timm's download (online only).
        perceptual_jitter: random offset (pixels) of the perceptual network's grid; see ``sr.losses``.
    """

    pixel: float = 1.0
    pixel_loss: Literal["l1", "mse", "huber"] = "l1"
    huber_delta: float = 0.1
    pixel_per_image: Literal["mean", "log"] = "mean"
    pixel_log_floor: float = 0.005
    perceptual: float = 0.0
    gan: float = 0.0
    gan_real_label: float = 1.0
    grid: float = 0.0
    perceptual_net: str = "vgg19"
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})
    perceptual_weights: str | None = None
    perceptual_jitter: int = 0


@dataclass(frozen=True)
class LoopConfig:
    """How long to train and how often to log, validate and save.

    Args:
        steps: optimizer steps in all (the schedule spans them).
        pretrain_steps: generator-only steps (pixel and perceptual terms) before the GAN term and the
            discriminator join (the color recipe's L1 pre-training).
        freeze_encoder_steps: steps at the start during which a pretrained encoder (the generator's
            ``encoder``) is not trained: no backward through it, so those steps are faster. ``all``: the
            whole run, however many ``steps`` an override gives it.
        trainable: names of the generator's parameters to train (a name stands for every parameter under it:
            ``body.22``, ``conv_last``); the rest stay as loaded (``--init``) for the whole run: no backward
            through the part before them, and the model can be shipped as its trained part over its start.
            null: all.
        ema: decay of the exponential moving average of the generator's weights, reached after a warm-up
            (timm's ModelEmaV3, power 3/4: 0.999 at about 10k steps); null: no EMA. The EMA weights are what
            gets validated and exported.
        precision: fp32, or bf16/fp16 autocast (fp16 on CUDA only).
        channels_last: NHWC memory layout (faster convolutions on recent GPUs).
        compile: ``torch.compile`` the generator and discriminator.
        device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N.
        log_every: steps between loss-log rows.
        val_every: steps between validations (and sample grids).
        keep_validated: also export the weights of every validation, as pipeline folders ``validated/STEP``:
            a GAN phase's best point is seldom its best validation PSNR, so it is picked afterwards (NIQE,
            sheets) from these.
        ckpt_every: steps between checkpoints.
        sample_images: validation images shown in each sample grid.
        seed: seeds weight initialisation and dropout (``data.seed`` seeds the split and the crops).
    """

    steps: int = 1000
    pretrain_steps: int = 0
    freeze_encoder_steps: int | Literal["all"] = 0
    trainable: tuple[str, ...] | None = None
    ema: float | None = 0.999
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    device: str = "auto"
    log_every: int = 50
    val_every: int = 500
    keep_validated: bool = False
    ckpt_every: int = 500
    sample_images: int = 4
    seed: int = 0

    def encoder_frozen_at(self, step: int) -> bool:
        return self.freeze_encoder_steps == "all" or step < self.freeze_encoder_steps


@dataclass(frozen=True)
class TrainConfig:
    """One stage's recipe: its generator (and discriminator) as model config dicts, and the sections above."""

    stage: Literal["sr", "color"]
    model: dict[str, Any]
    discriminator: dict[str, Any] | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))


_SECTIONS = {"data": DataConfig, "optim": OptimConfig, "loss": LossConfig, "train": LoopConfig}


def parse_config(raw: dict[str, Any], where: str) -> TrainConfig:
    """Check a raw config dict and build the TrainConfig; unknown keys and wrong types are ConfigErrors."""
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"{where}: unknown section {', '.join(unknown)}")
    for key in ("stage", "model"):
        if key not in raw:
            raise ConfigError(f"{where}: missing {key!r}")
    if raw["stage"] not in ("sr", "color"):
        raise ConfigError(f"{where}: stage must be 'sr' or 'color', not {raw['stage']!r}")
    for key in ("model", "discriminator"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise ConfigError(f"{where}: {key} must be a mapping with an 'arch' key")
    sections = {}
    for name, cls in _SECTIONS.items():
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: {name} must be a mapping")
        sections[name] = cls(**check_options(cls, section, f"{where}: {name}"))
    cfg = TrainConfig(raw["stage"], dict(raw["model"]), raw.get("discriminator"), **sections)
    _check_consistency(cfg, where)
    return cfg


def _check_consistency(cfg: TrainConfig, where: str) -> None:
    """What each field allows alone can still be contradictory together: say so before any work starts."""
    d, t, loss = cfg.data, cfg.train, cfg.loss
    if loss.gan > 0 and cfg.discriminator is None:
        raise ConfigError(f"{where}: loss.gan is {loss.gan} but there is no discriminator section")
    if t.pretrain_steps > t.steps:
        raise ConfigError(f"{where}: train.pretrain_steps ({t.pretrain_steps}) > train.steps ({t.steps})")
    for name in ("steps", "log_every", "val_every", "ckpt_every"):
        if getattr(t, name) < 1:
            raise ConfigError(f"{where}: train.{name} must be at least 1")
    if not 0 <= d.val_fraction < 1:
        raise ConfigError(f"{where}: data.val_fraction must be in [0, 1)")
    if d.crop < 8 or d.batch_size < 1:
        raise ConfigError(f"{where}: data.crop must be at least 8 and data.batch_size at least 1")
    if any(not isinstance(w, (int, float)) or w < 0 for w in d.set_weights.values()) or (
        d.set_weights and not any(d.set_weights.values())
    ):
        raise ConfigError(f"{where}: data.set_weights must map names to weights >= 0, not all 0")
    if d.crop_zoom is not None and (len(d.crop_zoom) != 2 or not 0 < d.crop_zoom[0] <= d.crop_zoom[1]):
        raise ConfigError(
            f"{where}: data.crop_zoom must be [low, high] with 0 < low <= high, got {list(d.crop_zoom)}"
        )
    if d.short_side is not None and d.short_side < d.crop:
        raise ConfigError(f"{where}: data.short_side ({d.short_side}) is smaller than data.crop ({d.crop})")
    for term in ("perceptual", "grid"):  # terms on an upscaler's output
        if cfg.stage == "color" and getattr(loss, term) > 0:
            raise ConfigError(f"{where}: loss.{term} is for the SR stage")
    problems = d.degradation.check()
    if problems:
        raise ConfigError(f"{where}: data.degradation: {'; '.join(problems)}")
    if d.degradation.kind != "bicubic" and cfg.stage != "sr":
        raise ConfigError(f"{where}: data.degradation is for the SR stage")
    if loss.huber_delta <= 0:
        raise ConfigError(f"{where}: loss.huber_delta must be > 0, got {loss.huber_delta}")
    if not 0.5 < loss.gan_real_label <= 1:
        raise ConfigError(f"{where}: loss.gan_real_label must be in (0.5, 1], got {loss.gan_real_label}")
    if loss.pixel_log_floor <= 0:
        raise ConfigError(f"{where}: loss.pixel_log_floor must be > 0, got {loss.pixel_log_floor}")
    for name in ("d_lr", "encoder_lr"):
        value = getattr(cfg.optim, name)
        if value is not None and not value > 0:
            raise ConfigError(f"{where}: optim.{name} must be > 0 or null, got {value}")
    if t.freeze_encoder_steps != "all" and t.freeze_encoder_steps < 0:
        raise ConfigError(f"{where}: train.freeze_encoder_steps must be >= 0, got {t.freeze_encoder_steps}")
    if t.trainable is not None and (
        not t.trainable or not all(isinstance(name, str) and name for name in t.trainable)
    ):
        raise ConfigError(f"{where}: train.trainable must be a list of parameter names, or null for all")
    if t.trainable is not None and t.freeze_encoder_steps:
        raise ConfigError(f"{where}: train.trainable and train.freeze_encoder_steps cannot be used together")
    if loss.perceptual_jitter < 0:
        raise ConfigError(f"{where}: loss.perceptual_jitter must be >= 0, got {loss.perceptual_jitter}")
    disc = cfg.discriminator or {}
    if disc.get("arch") == "vgg_style" and disc.get("input_size", 128) != d.crop:
        raise ConfigError(
            f"{where}: the vgg_style discriminator judges {disc.get('input_size', 128)} px patches "
            f"but data.crop is {d.crop}; make them equal"
        )


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a recipe YAML and apply ``section.key=value`` overrides (values parsed as YAML)."""
    raw = load_yaml(path)
    for item in overrides:
        apply_override(raw, item)
    return parse_config(raw, str(path))


def apply_override(raw: dict[str, Any], item: str) -> None:
    """``train.steps=200`` sets raw["train"]["steps"] = 200, in place."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.steps=200")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
        node = child
    node[last] = value


def save_config(cfg: TrainConfig, path: Path) -> None:
    from cascade.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
