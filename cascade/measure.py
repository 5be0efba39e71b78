"""How ``cascade bench`` measures: best-of-N timing with memory and GPU utilisation sampled alongside, and a
description of the machine, which goes with every result."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

SAMPLE_EVERY_S = 0.02  # memory and GPU-load sampling period


def rss_mib() -> float:
    """Resident memory of this process now (Linux), else its peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gpu_utilization(device: torch.device) -> float | None:
    """The GPU's busy percentage over the driver's last sampling period: through NVML when the ``pynvml``
    module is installed, else from ``nvidia-smi``; None when neither answers."""
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # no pynvml module, no NVML library, not an NVIDIA GPU
        pass
    index = device.index if device.index is not None else torch.cuda.current_device()
    query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(index)]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=5)
        return float(done.stdout.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


class Sampler:
    """Samples resident memory (and GPU load on CUDA) in a background thread while its block runs: the peak
    RSS of one measurement, not of the process's whole life."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_rss_mib = 0.0
        self.peak_gpu_mib = 0.0
        self.gpu_util: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_mib = max(self.peak_rss_mib, rss_mib())
            if self.device.type == "cuda" and (u := _gpu_utilization(self.device)) is not None:
                self.gpu_util.append(u)
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> Sampler:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss_mib = max(self.peak_rss_mib, rss_mib())
        if self.device.type == "cuda":
            self.peak_gpu_mib = torch.cuda.max_memory_allocated(self.device) / 2**20

    @staticmethod
    def merge(samplers: list[Sampler]) -> dict[str, Any]:
        """Peaks over several sampled blocks, and the mean GPU load over all their samples."""
        out: dict[str, Any] = {"peak_rss_mib": round(max(s.peak_rss_mib for s in samplers), 1)}
        if samplers[0].device.type == "cuda":
            util = [u for s in samplers for u in s.gpu_util]
            out["peak_gpu_mib"] = round(max(s.peak_gpu_mib for s in samplers), 1)
            out["gpu_util_percent"] = round(statistics.fmean(util), 1) if util else None
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(paths: dict[str, Callable[[], None]], repeats: int, device: torch.device) -> dict[str, Any]:
    """Time each of ``paths`` (already warmed up) ``repeats`` times, interleaved so that other work on the
    machine slows them alike; the fastest pass counts (the least disturbed), all are recorded."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    samplers: dict[str, list[Sampler]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            with Sampler(device) as sampler:
                _sync(device)
                t = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - t)
            samplers[name].append(sampler)
    return {
        name: {
            "seconds": min(times[name]),
            "seconds_median": statistics.median(times[name]),
            "seconds_each": times[name],
            **Sampler.merge(samplers[name]),
        }
        for name in paths
    }


def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "gpu": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    if hasattr(os, "getloadavg"):  # other work on the machine makes timings noisy: say how busy it was
        info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    return info
