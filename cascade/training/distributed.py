"""torchrun support in a few explicit lines (as nanoGPT): one process per GPU (or per CPU slot with gloo),
each sampling its own crops; gradients averaged by DistributedDataParallel; process 0 logs and saves."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cascade.devices import resolve_device


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any (so that all stop at the same step)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj):
        """The list of every process's ``obj`` (in rank order), on every process."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def check_in_sync(self, module: torch.nn.Module, what: str) -> None:
        """Raise when the processes' copies of ``module`` have drifted apart (they must stay identical)."""
        if not self.distributed:
            return
        sums = self.gather(sum(p.detach().double().sum().item() for p in module.parameters()))
        if max(sums) - min(sums) > 1e-6 * max(1.0, abs(sums[0])):
            raise RuntimeError(f"the {what} differs between processes ({sums}): training is out of sync")


def start(device_name: str) -> Processes:
    """Join the torchrun job this process belongs to, if any (``WORLD_SIZE`` > 1 in the environment)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes(0, 1, resolve_device(device_name))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world, device)


def stop(procs: Processes) -> None:
    if procs.distributed and dist.is_initialized():
        dist.destroy_process_group()
