"""``cascade run IN OUT --ray [ADDRESS]``: the same folder run, spread over a Ray cluster with Ray Data.

The driver plans the run exactly as a local ``cascade run`` does (``folder.start_run``: the same names, collisions,
``--skip-existing``/``--overwrite`` and usage errors, before any work). Then a Ray Data pipeline:

1. ``from_items``: one row per input (source, destination, its relative name);
2. ``map_batches(read_files)``, Ray tasks: each file read as bytes (a FIFO or device refused, as locally);
3. ``map_batches(RestoreActor)``, a pool of actors that each hold one Pipeline (one GPU each where the cluster
   has GPUs, ``cpus_per_actor`` CPUs otherwise): our own decoder on the bytes (16-bit, EXIF, CMYK as locally),
   the networks, and our atomic writer onto the destination, which must be a shared file system path;
4. the driver streams the per-file outcomes back into the same report as a local run's.

Faults, by Ray Data's own defaults for actor pools, which this relies on (``tests/test_ray.py`` kills an actor
mid-run): an actor that dies is restarted without limit (``max_restarts=-1``) and the batch it held is retried
on a live one (``max_task_retries=-1``); a read task lost with its node is retried (Ray's ``max_retries``, 3). A
file that cannot be decoded fails alone, as a row with its reason, not as an exception. A killed driver leaves no partial output (every write goes to a
temporary name first); rerunning with ``--skip-existing`` finishes the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cascade.folder import Job, RunReport, start_run


def read_files(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray task: each row's file as bytes, or the reason it cannot be read."""
    from cascade.imageio import ImageError, read_bytes

    data, errors = [], []
    for src in batch["src"]:
        try:
            data.append(read_bytes(src))
            errors.append("")
        except ImageError as e:
            data.append(b"")
            errors.append(str(e).removeprefix(f"{src}: "))
    return {**batch, "data": np.array(data, dtype=object), "error": np.array(errors, dtype=object)}


class RestoreActor:
    """Ray actor: one Pipeline, loaded once; restores each row's bytes and writes its result.

    Args:
        weights: the pipeline folder (None: the bundled weights) as ``Pipeline.from_pretrained`` takes it.
        settings: ``Pipeline`` settings (device, dtype, tile, render size...) and ``sr_model``/``color_model``/``only``.
        write: ``fmt``, ``quality``, ``scale``, ``overwrite``, ``skip_existing`` of the run.
        threads: torch threads (the CPUs this actor reserved).
    """

    def __init__(self, weights: str | None, settings: dict[str, Any], write: dict[str, Any], threads: int):
        import torch

        from cascade.pipeline import Pipeline

        torch.set_num_threads(max(1, threads))
        self.pipe = Pipeline.from_pretrained(weights, **settings)
        self.write = write

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = [
            self.restore_one(*row) for row in zip(batch["src"], batch["dst"], batch["data"], batch["error"])
        ]
        status, reason, notes = zip(*outcomes)
        return {
            "rel": batch["rel"],
            "status": np.array(status, dtype=object),
            "reason": np.array(reason, dtype=object),
            "notes": np.array(notes, dtype=object),
        }

    def restore_one(self, src: str, dst: str, data: bytes, error: str) -> tuple[str, str, str]:
        """("processed" | "skipped" | "failed", the reason, the notes joined by newlines) of one file."""
        from cascade.folder import _out_of_memory
        from cascade.imageio import ImageError, decode_gray, write_image

        if error:
            return "failed", error, ""
        w = self.write
        try:
            gray = decode_gray(data, src, self.pipe.max_pixels)
        except ImageError as e:
            return "failed", str(e).removeprefix(f"{src}: "), ""
        try:
            image = self.pipe.restore([gray], w["scale"])[0]
        except (RuntimeError, MemoryError, ValueError) as e:
            hint = " (try a smaller --tile)" if _out_of_memory(e) else ""
            return "failed", f"{type(e).__name__}: {str(e).splitlines()[0]}{hint}", ""
        try:
            notes = gray.notes + write_image(image, dst, w["fmt"], w["quality"], w["overwrite"])
        except FileExistsError as e:
            if w["skip_existing"]:
                return "skipped", "", ""
            return "failed", f"not written: {e}; pass --overwrite to replace it", ""
        except (OSError, ValueError) as e:
            return "failed", f"could not write {dst}: {e}", ""
        return "processed", "", "\n".join(notes)


def pool_size(cluster: dict[str, float], cpus_per_actor: int) -> tuple[int, dict[str, float]]:
    """How many actors, and what each reserves: one per GPU where the cluster has GPUs, else one per
    ``cpus_per_actor`` CPUs."""
    gpus = int(cluster.get("GPU", 0))
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return max(1, int(cluster.get("CPU", 1)) // cpus_per_actor), {"num_cpus": cpus_per_actor}


def run_on_ray(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    weights: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    address: str | None = None,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    recursive: bool = False,
    skip_existing: bool = False,
    overwrite: bool = False,
    fmt: str = "png",
    quality: int = 95,
    scale: float | None = None,
    progress: bool = True,
    on_note: Callable[[Path, str], None] | None = None,
    actor_class: type = RestoreActor,
) -> RunReport:
    """``run_folder`` on a Ray cluster (``address``: ``auto``, ``host:port``, ``ray://host:10001``; None starts
    a local Ray, or joins the one this process has). ``actor_class`` stands in for tests that inject faults."""
    import ray

    in_dir, out_dir = Path(in_dir).absolute(), Path(out_dir).absolute()
    jobs, report, note = start_run(
        in_dir,
        out_dir,
        recursive=recursive,
        skip_existing=skip_existing,
        overwrite=overwrite,
        fmt=fmt,
        scale=scale,
        on_note=on_note,
    )
    if not jobs:
        return report
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our own bar and summary say what happened
    ray.data.DataContext.get_current().enable_progress_bars = False
    n, resources = pool_size(ray.cluster_resources(), cpus_per_actor)
    n = actors or n
    ds = ray.data.from_items([_row(job) for job in jobs], override_num_blocks=min(len(jobs), 4 * n))
    # reading is I/O: it reserves no CPU, so it is never starved by the actors holding them all
    ds = ds.map_batches(read_files, batch_size=4, num_cpus=0)
    write = {
        "fmt": fmt,
        "quality": quality,
        "scale": scale,
        "overwrite": overwrite,
        "skip_existing": skip_existing,
    }
    threads = int(resources.get("num_cpus", 1))
    ds = ds.map_batches(
        actor_class,
        fn_constructor_kwargs={
            "weights": None if weights is None else str(weights),
            "settings": settings or {},
            "write": write,
            "threads": threads,
        },
        batch_size=4,
        concurrency=n,
        **resources,
    )
    _collect(ds.iter_rows(), jobs, report, note, on_note, progress)
    return report


def _collect(rows, jobs: list[Job], report: RunReport, note, on_note, progress: bool) -> None:
    """Fold the actors' result rows into ``report``, in input order (results arrive as they finish)."""
    from tqdm import tqdm

    by_rel = {str(job.rel): job.rel for job in jobs}
    bar = tqdm(total=len(jobs), unit="img", disable=not progress, dynamic_ncols=True)
    for row in rows:
        rel = by_rel[row["rel"]]
        for text in filter(None, row["notes"].split("\n")):
            note(rel, text)
        if row["status"] == "processed":
            report.processed.append(rel)
        elif row["status"] == "skipped":
            report.skipped.append(rel)
        else:
            report.failed.append((rel, row["reason"]))
            if on_note:
                on_note(rel, f"failed: {row['reason']}")
        bar.update()
    bar.close()
    order = {rel: i for i, rel in enumerate(by_rel.values())}
    report.processed.sort(key=order.__getitem__)
    report.failed.sort(key=lambda item: order.get(item[0], len(order)))


def _row(job: Job) -> dict[str, str]:
    return {"src": os.fspath(job.src), "dst": os.fspath(job.dst), "rel": str(job.rel)}
