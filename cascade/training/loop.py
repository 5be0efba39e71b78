"""``train(cfg, data, out)``: one loop for both stages, top to bottom.

Per step: sample crops on the device, make the stage's (input, target) batch, a generator update (pixel,
perceptual and, after ``pretrain_steps``, GAN terms), an EMA update, then a discriminator update. Validation,
sample grids, checkpoints and the loss curve come every so many steps; at the end (step count reached or
``max_minutes`` spent) a checkpoint and the exported pipeline folder.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.utils.model_ema import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cascade.atomic import remove_abandoned_temps
from cascade.config import ConfigError
from cascade.imagenet_weights import resolve_pretrained
from cascade.models import (
    create_color_discriminator,
    create_colorizer,
    create_sr_discriminator,
    create_sr_generator,
    sr_scale,
)
from cascade.training import distributed
from cascade.training.checkpoint import NAME as CHECKPOINT
from cascade.training.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from cascade.training.config import OptimConfig, TrainConfig, save_config
from cascade.training.data import CropSampler, center_crops, load_images, split
from cascade.training.runlog import RunLog
from cascade.training.stages import ColorStage, SRStage
from cascade.weights import load_pipeline, save_pipeline

FINAL, BEST = "pipeline", "best"  # exported pipeline folders inside a run folder
PRETRAINED = "pretrained"  # ImageNet weights converted for timm, inside a run folder


def lr_at(step: int, total: int, optim: OptimConfig, peak: float) -> float:
    """Linear warm-up to ``peak``, then cosine down to ``min_lr_ratio * peak`` at the last step (or flat)."""
    if step < optim.warmup_steps:
        return peak * (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return peak
    progress = (step - optim.warmup_steps) / max(1, total - optim.warmup_steps)
    floor = optim.min_lr_ratio * peak
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """The vanilla (non-saturating) GAN loss on discriminator logits."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def build_models(cfg: TrainConfig, for_resume: bool, cache_dir: Path) -> tuple[nn.Module, nn.Module | None]:
    """The recipe's generator (and discriminator). On resume the checkpoint replaces any pretrained encoder,
    so none is loaded (nor downloaded); weights from a pip package are converted into ``cache_dir``."""
    if cfg.stage == "sr":
        generator = create_sr_generator(cfg.model)
        disc = create_sr_discriminator(cfg.discriminator) if cfg.discriminator else None
    else:
        model_cfg = dict(cfg.model)
        if for_resume and "pretrained" in model_cfg:
            model_cfg["pretrained"] = None
        elif "pretrained" in model_cfg:
            model_cfg["pretrained"] = resolve_pretrained(model_cfg["pretrained"], cache_dir)
        generator = create_colorizer(model_cfg)
        disc = create_color_discriminator(cfg.discriminator) if cfg.discriminator else None
    return generator, disc


def load_init(generator: nn.Module, path: str | Path, stage: str) -> None:
    """Start ``generator`` from a finished run (its exported pipeline) or any pipeline folder."""
    path = Path(path).expanduser()
    folder = path / FINAL if (path / FINAL).is_dir() else path
    loaded = getattr(load_pipeline(folder, only=stage), stage)
    try:
        generator.load_state_dict(loaded.state_dict())
    except RuntimeError:
        raise ConfigError(
            f"--init {path}: its {stage} model ({loaded.arch_config}) does not match the recipe's "
            f"({generator.arch_config})"
        ) from None


def _freezable(generator: nn.Module, steps: int, distributed: bool) -> nn.Module | None:
    """The part of ``generator`` that ``train.freeze_encoder_steps`` holds still, or None."""
    if steps == 0:
        return None
    encoder = getattr(generator, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError("train.freeze_encoder_steps: this generator has no pretrained encoder to freeze")
    if distributed:  # DDP fixes the set of trained parameters when it wraps the model
        raise ConfigError("train.freeze_encoder_steps is not supported with torchrun; set it to 0")
    return encoder


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def train(
    cfg: TrainConfig,
    data: Sequence[str | Path],
    out: str | Path,
    *,
    init: str | Path | None = None,
    resume: bool = False,
    max_minutes: float | None = None,
    progress: bool = True,
) -> Path:
    """Train one stage as ``cfg`` says on the images of ``data`` (folders or one pack); returns the exported
    pipeline folder (``out/pipeline``). ``resume`` continues from ``out/checkpoint.pt``."""
    started = time.monotonic()
    out = Path(out).expanduser()
    procs = distributed.start(cfg.train.device)
    if procs.main:
        for stale in remove_abandoned_temps(out):  # a partial checkpoint or export of a killed run
            warnings.warn(f"removed {stale}: a temporary file an interrupted run left", stacklevel=2)
    device, t, d = procs.device, cfg.train, cfg.data
    if t.precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision fp16 needs a CUDA GPU; use bf16 or fp32 here")
    state = load_checkpoint(out / CHECKPOINT) if resume else None
    if state is not None:
        if state["world_size"] != procs.world:
            raise ConfigError(
                f"{out}: the run was checkpointed with {state['world_size']} process(es); resume it with as many"
            )
        for key in ("stage", "model", "discriminator"):
            if state["config"][key] != cfg.to_dict()[key]:
                raise ConfigError(
                    f"{out}: the run was trained with {key} {state['config'][key]}, not {cfg.to_dict()[key]}; "
                    "resume without --config to use the run's own config.yaml"
                )

    # Models and what the stage needs around them; the same seed on every process gives the same weights.
    torch.manual_seed(t.seed)
    generator, disc = build_models(cfg, for_resume=state is not None, cache_dir=out / PRETRAINED)
    if init is not None and state is None:
        load_init(generator, init, cfg.stage)
    stage = SRStage(cfg, sr_scale(generator), out / PRETRAINED) if cfg.stage == "sr" else ColorStage(cfg)
    stage.to(device)
    scale = stage.scale
    for name, size in (("data.crop", d.crop), ("data.val_crop", d.val_crop)):
        if size % scale:
            raise ConfigError(f"{name} ({size}) must be a multiple of the SR scale ({scale})")
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    generator.to(device, memory_format=memory_format)
    frozen_part = _freezable(generator, t.freeze_encoder_steps, procs.distributed)
    if disc is not None:
        disc.to(device, memory_format=memory_format)
    ema = None
    if t.ema is not None:
        # timm's warm-up lets the average follow early training, then settles at t.ema (after ~10k steps at
        # power 3/4); a fixed 0.999 from step 0 would hide a short run's progress behind its initial weights.
        ema = ModelEmaV3(generator, decay=t.ema, use_warmup=True, warmup_power=3 / 4)
    opt = cfg.optim
    opt_g = torch.optim.AdamW(
        generator.parameters(), lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay
    )
    d_lr = opt.d_lr if opt.d_lr is not None else opt.lr
    opt_d = None
    if disc is not None:
        opt_d = torch.optim.AdamW(disc.parameters(), lr=d_lr, betas=opt.betas, weight_decay=opt.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=t.precision == "fp16")

    # Data: decoded once, kept on the device; each process samples its own crops.
    with warnings.catch_warnings():
        if not procs.main:
            warnings.simplefilter("ignore")  # every process reads the same files: let one of them speak
        images = load_images(data, cfg.stage, d.short_side, d.workers)
    train_ids, val_ids = split(len(images.images), d.val_fraction, d.seed)
    train_images = [images.images[i] for i in train_ids if min(images.images[i].shape[1:]) >= d.crop]
    if len(train_images) < len(train_ids):
        warnings.warn(
            f"{len(train_ids) - len(train_images)} training image(s) smaller than data.crop ({d.crop} px) left out",
            stacklevel=2,
        )
    if not train_images:
        raise ConfigError(f"no training image is at least data.crop ({d.crop} px) on each side")
    sampler = CropSampler([img.to(device) for img in train_images], d.crop, seed=d.seed + 1 + procs.rank)
    val_crops = None
    if val_ids and procs.main:
        val_images = [images.images[i] for i in val_ids]
        val_crops = center_crops(val_images, d.val_crop, d.val_max_images).to(device)

    step, best = 0, None
    if state is not None:
        generator.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["opt_g"])
        if disc is not None:
            disc.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"][procs.rank], sampler.generator)
        step, best = state["step"], state["best"]
    del state

    # What runs the steps: compiled and/or wrapped for DDP; the plain modules are what gets saved.
    g_run, d_run = generator, disc
    if t.compile:
        g_run = torch.compile(g_run)
        d_run = torch.compile(d_run) if d_run is not None else None
    if procs.distributed:
        ids = [device.index] if device.type == "cuda" else None
        g_run = DistributedDataParallel(g_run, device_ids=ids)
        d_run = DistributedDataParallel(d_run, device_ids=ids) if d_run is not None else None

    log = None
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        loss_fields = [
            "lr",
            "total",
            *stage.loss_terms,
            *(["gan", "d_real", "d_fake"] if disc else []),
            "img_per_s",
        ]
        log = RunLog(out, loss_fields, stage.val_metrics, step if resume else None)

    def evaluate(at: int) -> None:
        """Validate the EMA (or plain) generator; keep the best export; draw samples and curves."""
        nonlocal best
        model = ema.module if ema is not None else generator
        was_training = model.training
        model.eval()
        with _autocast(device, t.precision):
            metrics, grid = stage.validate(model, val_crops, d.batch_size, t.sample_images)
        model.train(was_training)
        log.val(at, metrics)
        log.samples(at, grid)
        log.curves()
        score = metrics[stage.best_metric]
        if at > 0 and (best is None or score > best["value"]):
            best = {"step": at, "value": score}
            export(out / BEST, f"best {stage.best_metric} {score:.4f} at step {at}")

    def export(folder: Path, note: str) -> None:
        model = ema.module if ema is not None else generator
        kept = {"sr": model if cfg.stage == "sr" else None, "color": model if cfg.stage == "color" else None}
        description = f"{cfg.stage} stage from `cascade train` ({out.name}): {note}"
        save_pipeline(folder, **kept, render_size=d.short_side or d.crop, description=description)

    def checkpoint(at: int) -> None:
        procs.check_in_sync(generator, "generator")
        rng = procs.gather(rng_state(sampler.generator))
        if not procs.main:
            return
        save_checkpoint(
            out / CHECKPOINT,
            {
                "config": cfg.to_dict(),
                "step": at,
                "world_size": procs.world,
                "generator": generator.state_dict(),
                "discriminator": disc.state_dict() if disc is not None else None,
                "ema": ema.state_dict() if ema is not None else None,
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict() if opt_d is not None else None,
                "scaler": scaler.state_dict(),
                "rng": rng,
                "best": best,
            },
        )

    if procs.main and step == 0 and val_crops is not None:
        evaluate(0)  # the untrained (or --init) start, so the curve shows what training gained
    bar = tqdm(
        total=t.steps, initial=step, unit="step", disable=not (progress and procs.main), dynamic_ncols=True
    )
    sums: dict[str, torch.Tensor] = {}
    window_start, window_steps = time.monotonic(), 0
    images_per_step = d.batch_size * procs.world
    deadline = started + max_minutes * 60 if max_minutes is not None else None

    generator.train()
    while step < t.steps:
        lr_g = lr_at(step, t.steps, opt, opt.lr)
        for group in opt_g.param_groups:
            group["lr"] = lr_g
        gan_on = disc is not None and step >= t.pretrain_steps and cfg.loss.gan > 0
        if frozen_part is not None:
            frozen_part.requires_grad_(step >= t.freeze_encoder_steps)

        # Batch: crops and augmentation on the device.
        crops = sampler.augment(sampler.sample(d.batch_size), d.flips, d.rotations)
        inp, target = stage.make_batch(crops, sampler.generator)
        inp = inp.contiguous(memory_format=memory_format)

        # Generator step.
        with _autocast(device, t.precision):
            output = g_run(inp)
            terms = stage.losses(output.float(), target)
            if gan_on:
                disc.requires_grad_(False)
                terms["gan"] = cfg.loss.gan * gan_loss(d_run(stage.judged(inp, output)), real=True)
        loss = sum(terms.values())
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if opt.grad_clip is not None:
            scaler.unscale_(opt_g)
            nn.utils.clip_grad_norm_(generator.parameters(), opt.grad_clip)
        scaler.step(opt_g)
        if ema is not None:
            ema.update(generator, step=step + 1)

        # Discriminator step: real targets against the generator's (detached) outputs.
        if gan_on:
            disc.requires_grad_(True)
            for group in opt_d.param_groups:
                group["lr"] = lr_at(step, t.steps, opt, d_lr)
            with _autocast(device, t.precision):
                d_real = gan_loss(d_run(stage.judged(inp, target)), real=True)
                d_fake = gan_loss(d_run(stage.judged(inp, output.detach())), real=False)
            opt_d.zero_grad(set_to_none=True)
            scaler.scale(0.5 * (d_real + d_fake)).backward()
            scaler.step(opt_d)
            terms |= {"d_real": d_real, "d_fake": d_fake}
        scaler.update()
        step += 1
        window_steps += 1

        # Book-keeping, without a device sync except when a row is logged.
        for k, v in {"total": loss, **terms}.items():
            sums[k] = sums.get(k, 0) + v.detach()
        bar.update(1)
        out_of_time = procs.any(deadline is not None and time.monotonic() > deadline)
        if procs.main and (step % t.log_every == 0 or step == t.steps or out_of_time):
            seconds = time.monotonic() - window_start
            row = {k: (v / window_steps).item() for k, v in sums.items()}
            speed = images_per_step * window_steps / max(seconds, 1e-9)
            log.loss(step, {"lr": lr_g, **row, "img_per_s": speed})
            bar.set_postfix(loss=f"{row['total']:.4f}", img_s=f"{speed:.1f}")
            sums, window_start, window_steps = {}, time.monotonic(), 0
        if (
            procs.main
            and val_crops is not None
            and (step % t.val_every == 0 or step == t.steps or out_of_time)
        ):
            evaluate(step)
        if step % t.ckpt_every == 0 or step == t.steps or out_of_time:
            checkpoint(step)
        if out_of_time:
            break
    bar.close()

    final = out / FINAL
    if procs.main:
        export(final, f"{step} of {t.steps} steps")
        log.curves()
        log.close()
        elapsed = time.monotonic() - started
        print(f"{cfg.stage}: {step} steps in {elapsed / 60:.1f} min; exported {final}", file=sys.stderr)
    distributed.stop(procs)
    return final
