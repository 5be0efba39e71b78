"""Restoring a folder of photographs: which files to read, where each result goes, and a run that keeps going
past bad files, never overwrites an input, and can be re-run after an interruption to do only what is missing."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from tqdm import tqdm

from cascade.imageio import FORMATS, GrayImage, ImageError, read_gray, write_image

if TYPE_CHECKING:
    from cascade.pipeline import Pipeline

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())  # every extension a Pillow decoder claims
PREFETCH = 4  # images decoded ahead of the one being restored


class RunError(ValueError):
    """The request as a whole cannot be carried out (a usage error): nothing was written."""


@dataclass
class Job:
    src: Path
    dst: Path
    rel: Path  # the input's path relative to the input folder, for messages


@dataclass
class RunReport:
    processed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # outputs that already existed (--skip-existing)
    ignored: list[Path] = field(default_factory=list)  # files that are not images by their name
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def find_inputs(in_dir: Path, out_dir: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
    """Image files under ``in_dir`` (sorted), and the other files; hidden files and ``out_dir`` are left out,
    so an output folder inside the input folder is never read back as input."""
    if in_dir.is_file():
        return [in_dir], []
    out_resolved = out_dir.resolve()
    images, others = [], []
    walker = (
        os.walk(in_dir)
        if recursive
        else [(str(in_dir), [], [e.name for e in os.scandir(in_dir) if e.is_file()])]
    )
    for root, dirs, files in walker:
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() != out_resolved
        )
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return images, others


def plan_jobs(
    in_dir: Path,
    out_dir: Path,
    *,
    recursive: bool,
    fmt: str,
    skip_existing: bool,
    overwrite: bool,
    report: RunReport,
) -> list[Job]:
    """Map each input to its output (same relative folder and stem, new extension); refuse collisions."""
    images, report.ignored = find_inputs(in_dir, out_dir, recursive)
    base = in_dir.parent if in_dir.is_file() else in_dir
    inputs = {p.resolve() for p in images}
    jobs, taken, existing = [], {}, []
    for src in images:
        rel = src.relative_to(base)
        dst = out_dir / rel.parent / f"{rel.stem}.{fmt}"
        key = dst.resolve()
        if key in inputs:
            report.failed.append(
                (rel, f"its output {dst} would overwrite an input file; choose another OUT_DIR")
            )
        elif key in taken:
            report.failed.append((rel, f"same output name {dst.name} as {taken[key]}; rename one of them"))
        else:
            taken[key] = rel
            if dst.exists() and skip_existing:
                report.skipped.append(rel)
                continue
            if dst.exists() and not overwrite:
                existing.append(dst)
            jobs.append(Job(src, dst, rel))
    if existing:
        raise RunError(
            f"{len(existing)} output(s) already exist, e.g. {existing[0]}; pass --skip-existing to do only what "
            "is missing, or --overwrite to replace them"
        )
    return jobs


def run_folder(
    pipe: Pipeline,
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    recursive: bool = False,
    skip_existing: bool = False,
    overwrite: bool = False,
    fmt: str = "png",
    quality: int = 95,
    scale: float | None = None,
    progress: bool = True,
    on_note: Callable[[Path, str], None] | None = None,
) -> RunReport:
    """Restore every image of ``in_dir`` (a folder, or one file) into ``out_dir``. Bad files are reported in
    the returned report and skipped; the run goes on. Raises RunError before writing anything when the request
    itself is wrong. Decoding and encoding run in background threads, overlapping the networks."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if fmt not in FORMATS:
        raise RunError(f"unknown output format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if skip_existing and overwrite:
        raise RunError("--skip-existing and --overwrite contradict each other; pass one")
    if not in_dir.exists():
        raise RunError(f"{in_dir}: no such file or folder")
    if in_dir.is_dir() and in_dir.resolve() == out_dir.resolve():
        raise RunError(f"the output folder is the input folder ({in_dir}); choose another OUT_DIR")
    report = RunReport()
    jobs = plan_jobs(
        in_dir,
        out_dir,
        recursive=recursive,
        fmt=fmt,
        skip_existing=skip_existing,
        overwrite=overwrite,
        report=report,
    )

    def note(rel: Path, text: str) -> None:
        report.notes.append((rel, text))
        if on_note:
            on_note(rel, text)

    def fail(rel: Path, reason: str) -> None:
        report.failed.append((rel, reason))
        bar.set_postfix(failed=len(report.failed), refresh=False)
        if on_note:
            on_note(rel, f"failed: {reason}")

    bar = tqdm(total=len(jobs), unit="img", disable=not progress, dynamic_ncols=True)
    with ThreadPoolExecutor(2, thread_name_prefix="decode") as decoder, ThreadPoolExecutor(1) as encoder:
        writes: deque[tuple[Job, Future]] = deque()

        def finish_writes(keep: int) -> None:
            while len(writes) > keep:
                job, fut = writes.popleft()
                try:
                    for text in fut.result():
                        note(job.rel, text)
                    report.processed.append(job.rel)
                except (OSError, ValueError) as e:  # disk full, permissions, an encoder refusing the image
                    fail(job.rel, f"could not write {job.dst}: {e}")
                bar.update()

        for batch in _decoded_batches(jobs, pipe.batch_size, pipe.max_pixels, decoder, fail, bar):
            try:
                outputs = pipe.restore([gray for _, gray in batch], scale)
            except (RuntimeError, MemoryError) as e:  # e.g. out of memory on a huge image
                for job, _ in batch:
                    fail(job.rel, f"{e.__class__.__name__}: {str(e).splitlines()[0]} (try a smaller --tile)")
                    bar.update()
                continue
            for (job, gray), img in zip(batch, outputs):
                for text in gray.notes:
                    note(job.rel, text)
                writes.append((job, encoder.submit(write_image, img, job.dst, fmt, quality)))
            finish_writes(keep=2)  # bounded: a slow disk holds back the networks rather than filling memory
        finish_writes(keep=0)
    bar.close()
    return report


def _decoded_batches(
    jobs: list[Job],
    batch_size: int,
    max_pixels: int,
    decoder: ThreadPoolExecutor,
    fail: Callable[[Path, str], None],
    bar: tqdm,
) -> Iterator[list[tuple[Job, GrayImage]]]:
    """Yield runs of up to ``batch_size`` same-sized decoded images, decoding ``PREFETCH`` images ahead in
    ``decoder``'s threads; files that cannot be read are passed to ``fail`` and left out."""
    queue = iter(jobs)
    pending: deque[tuple[Job, Future]] = deque()
    while True:
        while len(pending) < PREFETCH + batch_size and (job := next(queue, None)) is not None:
            pending.append((job, decoder.submit(read_gray, job.src, max_pixels)))
        if not pending:
            return
        batch: list[tuple[Job, GrayImage]] = []
        while pending and len(batch) < batch_size:
            job, fut = pending[0]
            try:
                gray = fut.result()
            except Exception as e:  # ImageError, or whatever else a broken file makes a decoder raise
                pending.popleft()
                reason = (
                    str(e).removeprefix(f"{job.src}: ")
                    if isinstance(e, ImageError)
                    else f"could not read ({e!r})"
                )
                fail(job.rel, reason)
                bar.update()
                continue
            if batch and gray.size != batch[0][1].size:
                break  # only same-sized images share a forward pass
            pending.popleft()
            batch.append((job, gray))
        if batch:
            yield batch
