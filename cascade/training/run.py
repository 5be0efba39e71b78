"""A training run's state between steps (``Run``): how it is built, fed, restored and checkpointed, and what
happens every so many steps besides training: validation (``evaluate``) and the exported pipeline (``export``)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from timm.utils.model_ema import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cascade.config import ConfigError
from cascade.devices import DTYPES
from cascade.imagenet_weights import resolve_pretrained
from cascade.models import STAGES
from cascade.training import distributed
from cascade.training.checkpoint import NAME as CHECKPOINT
from cascade.training.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from cascade.training.config import OptimConfig, TrainConfig, save_config
from cascade.training.data import CropSampler, center_crops, image_weights, load_images, split
from cascade.training.runlog import BEST, FINAL, LOCK, PRETRAINED, VALIDATED, RunLog
from cascade.training.stages import TRAINING_STAGES, ColorStage, SRStage
from cascade.weights import load_pipeline, save_pipeline


def build_models(cfg: TrainConfig, for_resume: bool, cache_dir: Path) -> tuple[nn.Module, nn.Module | None]:
    """The recipe's generator (and discriminator). On resume the checkpoint replaces any pretrained encoder,
    so none is loaded (nor downloaded); weights from a pip package are converted into ``cache_dir``."""
    spec = STAGES[cfg.stage]
    model_cfg = dict(cfg.model)
    if spec.encoder_option in model_cfg:
        option = spec.encoder_option
        model_cfg[option] = None if for_resume else resolve_pretrained(model_cfg[option], cache_dir)
    generator = spec.create(model_cfg)
    disc = spec.create_discriminator(cfg.discriminator) if cfg.discriminator else None
    return generator, disc


# what an --init may leave to the recipe: a new output head (and its chroma bins) over the same network
NEW_HEAD = ("head.", "bins.")


def load_init(generator: nn.Module, path: str | Path, stage: str) -> None:
    """Start ``generator`` from a finished run (its exported pipeline) or any pipeline folder. Only the output
    head may differ (a colorizer that classifies, started from one that regresses): it starts untrained."""
    path = Path(path).expanduser()
    folder = path / FINAL if (path / FINAL).is_dir() else path
    loaded = getattr(load_pipeline(folder, only=stage), stage)
    ours, theirs = generator.state_dict(), loaded.state_dict()
    differ = {k for k in ours.keys() | theirs.keys() if k not in ours or k not in theirs}
    differ |= {k for k in ours.keys() & theirs.keys() if ours[k].shape != theirs[k].shape}
    if any(not k.startswith(NEW_HEAD) for k in differ):
        raise ConfigError(
            f"--init {path}: its {stage} model ({loaded.arch_config}) does not match the recipe's "
            f"({generator.arch_config})"
        )
    generator.load_state_dict({k: v for k, v in theirs.items() if k not in differ}, strict=not differ)
    if differ:
        warnings.warn(
            f"--init {path}: {', '.join(sorted(differ))} not in its model or of another shape: started afresh",
            stacklevel=2,
        )


def _freezable(generator: nn.Module, steps: int | str, distributed: bool) -> nn.Module | None:
    """The part of ``generator`` that ``train.freeze_encoder_steps`` holds still, or None."""
    if steps == 0:
        return None
    encoder = getattr(generator, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError("train.freeze_encoder_steps: this generator has no pretrained encoder to freeze")
    if distributed:  # DDP fixes the set of trained parameters when it wraps the model
        raise ConfigError("train.freeze_encoder_steps is not supported with torchrun; set it to 0")
    return encoder


def hold_still(generator: nn.Module, trainable: tuple[str, ...] | None) -> None:
    """Stop gradients to every parameter of ``generator`` outside ``train.trainable`` (names or their parents)."""
    if trainable is None:
        return

    def under(name: str, part: str) -> bool:
        return name == part or name.startswith(part + ".")

    names = [name for name, _ in generator.named_parameters()]
    unmatched = [t for t in trainable if not any(under(n, t) for n in names)]
    if unmatched:
        raise ConfigError(
            f"train.trainable: no parameter {', '.join(map(repr, unmatched))} in this generator "
            f"(its top-level parts: {', '.join(dict.fromkeys(n.split('.')[0] for n in names))})"
        )
    for name, param in generator.named_parameters():
        param.requires_grad_(any(under(name, t) for t in trainable))


def group_peaks(opt: OptimConfig) -> list[float]:
    """The peak learning rate of each of ``generator_groups``' groups, in their order."""
    return [opt.lr] if opt.encoder_lr is None else [opt.lr, opt.encoder_lr]


def generator_groups(generator: nn.Module, opt: OptimConfig) -> list[dict]:
    """The generator's trained parameters as optimizer groups: one, or the decoder's then the encoder's when
    ``optim.encoder_lr`` is set."""
    trained = [p for p in generator.parameters() if p.requires_grad]
    if opt.encoder_lr is None:
        return [{"params": trained, "lr": opt.lr}]
    encoder = getattr(generator, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError("optim.encoder_lr: this generator has no pretrained encoder")
    in_encoder = {id(p) for p in encoder.parameters()}
    parts = ([p for p in trained if id(p) not in in_encoder], [p for p in trained if id(p) in in_encoder])
    return [{"params": params, "lr": peak} for params, peak in zip(parts, group_peaks(opt))]


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


@dataclass
class Run:
    """What one training run holds between steps. ``generator`` and ``disc`` are the plain modules (what is
    saved); ``g_run`` and ``d_run`` what runs the steps (compiled and/or wrapped for DDP)."""

    cfg: TrainConfig
    out: Path
    procs: distributed.Processes
    stage: SRStage | ColorStage
    generator: nn.Module
    disc: nn.Module | None
    ema: ModelEmaV3 | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler
    frozen_part: nn.Module | None
    memory_format: torch.memory_format
    sampler: CropSampler | None = None
    val_crops: torch.Tensor | None = None
    g_run: nn.Module | None = None
    d_run: nn.Module | None = None
    log: RunLog | None = None
    step: int = 0
    best: dict[str, Any] | None = None

    @property
    def device(self) -> torch.device:
        return self.procs.device

    @property
    def shown(self) -> nn.Module:
        """The generator that is validated and exported: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.generator


@contextlib.contextmanager
def held_run_folder(out: Path, main: bool):
    """Hold ``out`` while this process trains into it (the first process of a torchrun job), so that a second
    ``cascade train`` on the same folder, e.g. a ``--resume`` while the run is still going, is refused instead of
    overwriting its checkpoints and logs. The operating system lets go when the process ends, however it ends."""
    if not main:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    try:
        held = FileLock(out / LOCK, timeout=0).acquire()
    except Timeout:
        raise ConfigError(
            f"{out}: another process is training into this run folder; wait for it to end, or choose another --out"
        ) from None
    with held:  # released on the way out, whatever the way
        yield


def resumable_state(out: Path, cfg: TrainConfig, procs: distributed.Processes) -> dict[str, Any]:
    """The checkpoint in ``out``, refused when it was made by another number of processes or networks."""
    state = load_checkpoint(out / CHECKPOINT)
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
    return state


def build_run(
    cfg: TrainConfig, out: Path, procs: distributed.Processes, init: str | Path | None, resuming: bool
) -> Run:
    """Models, the stage around them, the EMA and the optimizers; the same seed on every process gives the
    same weights."""
    t, device = cfg.train, procs.device
    torch.manual_seed(t.seed)
    generator, disc = build_models(cfg, for_resume=resuming, cache_dir=out / PRETRAINED)
    if init is not None and not resuming:
        load_init(generator, init, cfg.stage)
    stage = TRAINING_STAGES[cfg.stage].build(cfg, generator, out / PRETRAINED).to(device)
    for name, size in (("data.crop", cfg.data.crop), ("data.val_crop", cfg.data.val_crop)):
        if size % stage.scale:
            raise ConfigError(f"{name} ({size}) must be a multiple of the SR scale ({stage.scale})")
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    generator.to(device, memory_format=memory_format)
    frozen_part = _freezable(generator, t.freeze_encoder_steps, procs.distributed)
    hold_still(generator, t.trainable)
    if disc is not None:
        disc.to(device, memory_format=memory_format)
    ema = None
    if t.ema is not None:
        # timm's warm-up lets the average follow early training, then settles at t.ema (after ~10k steps at
        # power 3/4); a fixed 0.999 from step 0 would hide a short run's progress behind its initial weights.
        ema = ModelEmaV3(generator, decay=t.ema, use_warmup=True, warmup_power=3 / 4)
    opt = cfg.optim
    opt_g = torch.optim.AdamW(
        generator_groups(generator, opt), betas=opt.betas, weight_decay=opt.weight_decay
    )
    opt_d = None
    if disc is not None:
        d_lr = opt.d_lr if opt.d_lr is not None else opt.lr
        opt_d = torch.optim.AdamW(disc.parameters(), lr=d_lr, betas=opt.betas, weight_decay=opt.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=t.precision == "fp16")
    return Run(cfg, out, procs, stage, generator, disc, ema, opt_g, opt_d, scaler, frozen_part, memory_format)


def load_data(
    cfg: TrainConfig, data: Sequence[str | Path], procs: distributed.Processes
) -> tuple[CropSampler, torch.Tensor | None]:
    """Decoded once, kept on the device: a crop sampler per process, and the first process's validation crops."""
    d, device = cfg.data, procs.device
    with warnings.catch_warnings():
        if not procs.main:
            warnings.simplefilter("ignore")  # every process reads the same files: let one of them speak
        images = load_images(data, cfg.stage, d.short_side, d.workers)
    train_ids, val_ids = split(len(images.images), d.val_fraction, d.seed)
    train_ids_kept = [i for i in train_ids if min(images.images[i].shape[1:]) >= d.crop]
    train_images = [images.images[i] for i in train_ids_kept]
    if len(train_images) < len(train_ids):
        warnings.warn(
            f"{len(train_ids) - len(train_images)} training image(s) smaller than data.crop ({d.crop} px) left out",
            stacklevel=3,
        )
    if not train_images:
        raise ConfigError(f"no training image is at least data.crop ({d.crop} px) on each side")
    weights = image_weights([images.names[i] for i in train_ids_kept], d.set_weights)
    sampler = CropSampler(
        [img.to(device) for img in train_images], d.crop, d.seed + 1 + procs.rank, weights, d.crop_zoom
    )
    val_crops = None
    if val_ids and procs.main:
        val_images = [images.images[i] for i in val_ids]
        val_crops = center_crops(val_images, d.val_crop, d.val_max_images).to(device)
    return sampler, val_crops


def restore(run: Run, state: dict[str, Any]) -> None:
    """Continue ``run`` from a checkpoint: weights, optimizers, EMA, loss scaler, crop sampler, step, best."""
    run.generator.load_state_dict(state["generator"])
    saved_groups = len(state["opt_g"]["param_groups"])
    if saved_groups != len(run.opt_g.param_groups):
        raise ConfigError(
            f"--resume: the checkpoint's optimizer has {saved_groups} parameter group(s) and this recipe's "
            f"{len(run.opt_g.param_groups)}: optim.encoder_lr must be set (or null) as it was for the run"
        )
    run.opt_g.load_state_dict(state["opt_g"])
    if run.disc is not None:
        run.disc.load_state_dict(state["discriminator"])
        run.opt_d.load_state_dict(state["opt_d"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    run.scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"][run.procs.rank], run.sampler.generator)
    run.step, run.best = state["step"], state["best"]


def runnable(run: Run) -> tuple[nn.Module, nn.Module | None]:
    """The modules that run the steps: compiled (``train.compile``) and/or wrapped for DDP."""
    g_run, d_run = run.generator, run.disc
    if run.cfg.train.compile:
        g_run = torch.compile(g_run)
        d_run = torch.compile(d_run) if d_run is not None else None
    if run.procs.distributed:
        ids = [run.device.index] if run.device.type == "cuda" else None
        g_run = DistributedDataParallel(g_run, device_ids=ids)
        d_run = DistributedDataParallel(d_run, device_ids=ids) if d_run is not None else None
    return g_run, d_run


def open_log(run: Run, resumed: bool) -> RunLog:
    """The run folder's config.yaml, and the loss and validation logs (truncated to the step resumed from)."""
    run.out.mkdir(parents=True, exist_ok=True)
    save_config(run.cfg, run.out / "config.yaml")
    gan_terms = ["gan", "d_real", "d_fake"] if run.disc else []
    loss_fields = ["lr", "total", *run.stage.loss_terms, *gan_terms, "img_per_s"]
    return RunLog(run.out, loss_fields, run.stage.val_metrics, run.step if resumed else None)


def evaluate(run: Run, at: int) -> None:
    """Validate the shown (EMA or plain) generator; keep the best export (and, if asked, every one); draw
    samples and curves."""
    model, t = run.shown, run.cfg.train
    was_training = model.training
    model.eval()
    with autocast(run.device, t.precision):
        metrics, grid = run.stage.validate(model, run.val_crops, run.cfg.data.batch_size, t.sample_images)
    model.train(was_training)
    run.log.val(at, metrics)
    run.log.samples(at, grid)
    run.log.curves()
    score = metrics[run.stage.best_metric]
    if at > 0 and t.keep_validated:
        export(run, run.out / VALIDATED / f"{at:06d}", f"{run.stage.best_metric} {score:.4f} at step {at}")
    if at > 0 and (run.best is None or score > run.best["value"]):
        run.best = {"step": at, "value": score}
        export(run, run.out / BEST, f"best {run.stage.best_metric} {score:.4f} at step {at}")


def export(run: Run, folder: Path, note: str) -> Path:
    """The shown generator as a pipeline folder of its stage alone."""
    cfg = run.cfg
    models = {name: run.shown if name == cfg.stage else None for name in STAGES}
    description = f"{cfg.stage} stage from `cascade train` ({run.out.name}): {note}"
    return save_pipeline(
        folder, **models, render_size=cfg.data.short_side or cfg.data.crop, description=description
    )


def checkpoint(run: Run, at: int) -> None:
    """Everything ``restore`` needs, written by the first process (every process takes part)."""
    run.procs.check_in_sync(run.generator, "generator")
    rng = run.procs.gather(rng_state(run.sampler.generator))
    if not run.procs.main:
        return
    save_checkpoint(
        run.out / CHECKPOINT,
        {
            "config": run.cfg.to_dict(),
            "step": at,
            "world_size": run.procs.world,
            "generator": run.generator.state_dict(),
            "discriminator": run.disc.state_dict() if run.disc is not None else None,
            "ema": run.ema.state_dict() if run.ema is not None else None,
            "opt_g": run.opt_g.state_dict(),
            "opt_d": run.opt_d.state_dict() if run.opt_d is not None else None,
            "scaler": run.scaler.state_dict(),
            "rng": rng,
            "best": run.best,
        },
    )
