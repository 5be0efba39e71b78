"""``train(cfg, data, out)``: one loop for both stages, top to bottom.

Per step (``train_step``): sample crops on the device, make the stage's (input, target) batch, a generator
update (pixel, perceptual and, after ``pretrain_steps``, GAN terms), an EMA update, then a discriminator update.
Validation and sample grids, checkpoints and the loss curve come every so many steps; at the end (step count
reached or ``max_minutes`` spent) a checkpoint and the exported pipeline folder. What lives between steps is a
``Run`` (``run.py``).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cascade.atomic import remove_abandoned_temps
from cascade.config import ConfigError
from cascade.training import distributed
from cascade.training.config import OptimConfig, TrainConfig
from cascade.training.run import (
    Run,
    autocast,
    build_run,
    checkpoint,
    evaluate,
    export,
    group_peaks,
    held_run_folder,
    load_data,
    open_log,
    restore,
    resumable_state,
    runnable,
)
from cascade.training.runlog import FINAL


def lr_at(step: int, total: int, optim: OptimConfig, peak: float) -> float:
    """Linear warm-up to ``peak``, then cosine down to ``min_lr_ratio * peak`` at the last step (or flat)."""
    if step < optim.warmup_steps:
        return peak * (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return peak
    progress = (step - optim.warmup_steps) / max(1, total - optim.warmup_steps)
    floor = optim.min_lr_ratio * peak
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def gan_loss(logits: torch.Tensor, label: float) -> torch.Tensor:
    """The vanilla (non-saturating) GAN loss on discriminator logits: 1 real, 0 fake, between for smoothing."""
    return F.binary_cross_entropy_with_logits(
        logits.float(), torch.full_like(logits, label, dtype=torch.float32)
    )


def train_step(run: Run) -> tuple[float, dict[str, torch.Tensor]]:
    """One generator update (and the discriminator's, once the GAN term is on); returns the learning rate and
    the loss terms (``total`` first), still on the device."""
    cfg, t, d, opt = run.cfg, run.cfg.train, run.cfg.data, run.cfg.optim
    for group, peak in zip(run.opt_g.param_groups, group_peaks(opt), strict=True):
        group["lr"] = lr_at(run.step, t.steps, opt, peak)
    lr_g = run.opt_g.param_groups[0]["lr"]
    gan_on = run.disc is not None and run.step >= t.pretrain_steps and cfg.loss.gan > 0
    if run.frozen_part is not None:
        run.frozen_part.requires_grad_(not t.encoder_frozen_at(run.step))

    crops = run.sampler.augment(run.sampler.sample(d.batch_size), d.flips, d.rotations)
    inp, target = run.stage.make_batch(crops, run.sampler.generator)
    inp = inp.contiguous(memory_format=run.memory_format)

    with autocast(run.device, t.precision):
        output = run.stage.generate(run.g_run, inp)
        terms = run.stage.losses(output.float(), target)
        if gan_on:
            run.disc.requires_grad_(False)
            terms["gan"] = cfg.loss.gan * gan_loss(run.d_run(run.stage.judged(inp, output)), 1.0)
    loss = sum(terms.values())
    run.opt_g.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if opt.grad_clip is not None:
        run.scaler.unscale_(run.opt_g)
        nn.utils.clip_grad_norm_(run.generator.parameters(), opt.grad_clip)
    run.scaler.step(run.opt_g)
    if run.ema is not None:
        run.ema.update(run.generator, step=run.step + 1)
    if gan_on:
        terms |= _discriminator_step(run, inp, target, output.detach())
    run.scaler.update()
    return lr_g, {"total": loss, **terms}


def _discriminator_step(run: Run, inp: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> dict:
    """Real targets against the generator's (detached) outputs."""
    opt, t = run.cfg.optim, run.cfg.train
    run.disc.requires_grad_(True)
    for group in run.opt_d.param_groups:
        group["lr"] = lr_at(run.step, t.steps, opt, opt.d_lr if opt.d_lr is not None else opt.lr)
    with autocast(run.device, t.precision):
        d_real = gan_loss(run.d_run(run.stage.judged(inp, real)), run.cfg.loss.gan_real_label)
        d_fake = gan_loss(run.d_run(run.stage.judged(inp, fake)), 0.0)
    run.opt_d.zero_grad(set_to_none=True)
    run.scaler.scale(0.5 * (d_real + d_fake)).backward()
    run.scaler.step(run.opt_d)
    return {"d_real": d_real, "d_fake": d_fake}


class LossMeter:
    """Sums the loss terms over a logging window without a device sync; ``row`` reads and resets it."""

    def __init__(self, images_per_step: int):
        self.images_per_step = images_per_step
        self.sums: dict[str, torch.Tensor] = {}
        self.start, self.steps = time.monotonic(), 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0) + v.detach()
        self.steps += 1

    def row(self) -> dict[str, float]:
        seconds = time.monotonic() - self.start
        row = {k: (v / self.steps).item() for k, v in self.sums.items()}
        row["img_per_s"] = self.images_per_step * self.steps / max(seconds, 1e-9)
        self.sums, self.start, self.steps = {}, time.monotonic(), 0
        return row


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
    out, t = Path(out).expanduser(), cfg.train
    procs = distributed.start(t.device)
    with held_run_folder(out, procs.main):
        if procs.main:
            for stale in remove_abandoned_temps(out):  # a partial checkpoint or export of a killed run
                warnings.warn(f"removed {stale}: a temporary file an interrupted run left", stacklevel=2)
        if t.precision == "fp16" and procs.device.type != "cuda":
            raise ConfigError("train.precision fp16 needs a CUDA GPU; use bf16 or fp32 here")
        state = resumable_state(out, cfg, procs) if resume else None
        run = build_run(cfg, out, procs, init, resuming=state is not None)
        run.sampler, run.val_crops = load_data(cfg, data, procs)
        run.stage.prepare(run.sampler, [run.generator, *([run.ema.module] if run.ema is not None else [])])
        if state is not None:
            restore(run, state)
        del state
        run.g_run, run.d_run = runnable(run)
        validating = procs.main and run.val_crops is not None
        if procs.main:
            run.log = open_log(run, resumed=resume)
        if validating and run.step == 0:
            evaluate(run, 0)  # the untrained (or --init) start, so the curve shows what training gained

        bar = tqdm(
            total=t.steps,
            initial=run.step,
            unit="step",
            disable=not (progress and procs.main),
            dynamic_ncols=True,
        )
        meter = LossMeter(cfg.data.batch_size * procs.world)
        deadline = started + max_minutes * 60 if max_minutes is not None else None
        run.generator.train()
        while run.step < t.steps:
            lr, terms = train_step(run)
            run.step += 1
            meter.add(terms)
            bar.update(1)
            out_of_time = procs.any(deadline is not None and time.monotonic() > deadline)
            last = run.step == t.steps or out_of_time
            if procs.main and (run.step % t.log_every == 0 or last):
                row = meter.row()
                run.log.loss(run.step, {"lr": lr, **row})
                bar.set_postfix(loss=f"{row['total']:.4f}", img_s=f"{row['img_per_s']:.1f}")
            if validating and (run.step % t.val_every == 0 or last):
                evaluate(run, run.step)
            if run.step % t.ckpt_every == 0 or last:
                checkpoint(run, run.step)
            if out_of_time:
                break
        bar.close()

        final = out / FINAL
        if procs.main:
            export(run, final, f"{run.step} of {t.steps} steps")
            run.log.curves()
            run.log.close()
            elapsed = time.monotonic() - started
            print(
                f"{cfg.stage}: {run.step} steps in {elapsed / 60:.1f} min; exported {final}", file=sys.stderr
            )
        distributed.stop(procs)
        return final
