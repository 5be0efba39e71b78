"""Restoring a folder of photographs: which files to read, where each result goes, and a run that keeps going
past bad files, never overwrites an input, and can be re-run after an interruption to do only what is missing."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from cascade.atomic import remove_abandoned_temps
from cascade.imageio import (
    DEFAULT_MAX_PIXELS,
    FORMATS,
    GrayImage,
    ImageError,
    check_scale,
    is_writable_folder,
    read_gray,
    write_image,
)
from cascade.listing import find_inputs, resolved

PREFETCH = 4  # images decoded ahead of the one being restored
# what restores decoded images (Pipeline.restore): (images, output scale or None) -> results, in order
Restore = Callable[[list[GrayImage], float | None], list[Image.Image]]


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
    not_searched: list[Path] = field(default_factory=list)  # sub-folders, when not recursive
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


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
    listing = find_inputs(in_dir, out_dir, recursive)
    report.ignored = listing.others
    report.not_searched = [p.relative_to(in_dir) for p in listing.not_searched]
    report.failed += [(p.relative_to(in_dir), reason) for p, reason in listing.unreadable]
    report.notes += [(p.relative_to(in_dir), reason) for p, reason in listing.left_out]
    base = in_dir if in_dir.is_dir() else in_dir.parent
    inputs = {resolved(p) for p in listing.images}
    jobs, taken, existing = [], {}, []
    for src in listing.images:
        rel = src.relative_to(base)
        dst = out_dir / rel.parent / f"{rel.stem}.{fmt}"
        key = resolved(dst)
        if key in inputs:
            if not in_dir.is_dir():
                raise RunError(f"the output {dst} would overwrite the input {src}; choose another OUT_DIR")
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


def start_run(
    in_dir: Path,
    out_dir: Path,
    *,
    recursive: bool,
    skip_existing: bool,
    overwrite: bool,
    fmt: str,
    scale: float | None,
    on_note: Callable[[Path, str], None] | None,
) -> tuple[list[Job], RunReport, Callable[[Path, str], None]]:
    """What every folder run does before its first image, wherever the networks run: check the request (a
    RunError before anything is written), plan the jobs, remove the temporary files an interrupted run left.
    Returns the jobs, the report so far and the ``note`` function that records (and passes on) notes."""
    if fmt not in FORMATS:
        raise RunError(f"unknown output format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if skip_existing and overwrite:
        raise RunError("--skip-existing and --overwrite contradict each other; pass one")
    try:
        check_scale(scale)
    except (TypeError, ValueError) as e:
        raise RunError(str(e)) from None
    _check_input(in_dir)
    if in_dir.is_dir() and resolved(in_dir) == resolved(out_dir):
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
    if jobs:
        problem = is_writable_folder(out_dir)
        if problem:
            raise RunError(f"cannot write into {out_dir}: {problem}")

    def note(rel: Path, text: str) -> None:
        report.notes.append((rel, text))
        if on_note:
            on_note(rel, text)

    planned, report.notes = report.notes, []
    for rel, text in planned:
        note(rel, text)
    for stale in remove_abandoned_temps(out_dir, recursive):
        note(stale.relative_to(out_dir), "removed: a temporary file an interrupted run left")
    return jobs, report, note


def run_folder(
    restore: Restore,
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    recursive: bool = False,
    skip_existing: bool = False,
    overwrite: bool = False,
    fmt: str = "png",
    quality: int = 95,
    scale: float | None = None,
    progress: bool = True,
    on_note: Callable[[Path, str], None] | None = None,
) -> RunReport:
    """Restore every image of ``in_dir`` (a folder, or one file) into ``out_dir`` with ``restore``, handed up to
    ``batch_size`` images at a time; inputs over ``max_pixels`` are refused. Bad files are reported in the
    returned report and skipped; the run goes on. Raises RunError before writing anything when the request
    itself is wrong. Decoding and encoding run in background threads, overlapping the networks."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
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
                except FileExistsError as e:  # another run wrote it since this one planned
                    if skip_existing:
                        report.skipped.append(job.rel)
                    else:
                        fail(job.rel, f"not written: {e}; pass --overwrite to replace it")
                except (OSError, ValueError) as e:  # disk full, permissions, an encoder refusing the image
                    fail(job.rel, f"could not write {job.dst}: {e}")
                bar.update()

        for batch in _decoded_batches(jobs, batch_size, max_pixels, decoder, fail, bar):
            try:
                outputs = restore([gray for _, gray in batch], scale)
            except (RuntimeError, MemoryError, ValueError) as e:  # out of memory on a huge image, above all
                hint = " (try a smaller --tile)" if _out_of_memory(e) else ""
                for job, _ in batch:
                    fail(job.rel, f"{e.__class__.__name__}: {str(e).splitlines()[0]}{hint}")
                    bar.update()
                continue
            for (job, gray), img in zip(batch, outputs):
                for text in gray.notes:
                    note(job.rel, text)
                write = encoder.submit(write_image, img, job.dst, fmt, quality, overwrite)
                writes.append((job, write))
            finish_writes(keep=2)  # bounded: a slow disk holds back the networks rather than filling memory
        finish_writes(keep=0)
    bar.close()
    return report


def _check_input(in_dir: Path) -> None:
    """LOWRES_DIR must be a folder or one image file; anything else is a usage error before any work."""
    import stat

    try:
        mode = in_dir.stat().st_mode
    except FileNotFoundError:
        raise RunError(f"{in_dir}: no such file or folder") from None
    except OSError as e:
        raise RunError(f"{in_dir}: cannot be opened ({e.strerror or e})") from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise RunError(f"{in_dir}: neither a folder nor a regular file (a FIFO or a device?)")


def _out_of_memory(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or any(
        words in text for words in ("out of memory", "can't allocate", "not enough memory")
    )


def _decoded_batches(
    jobs: list[Job],
    batch_size: int,
    max_pixels: int,
    decoder: ThreadPoolExecutor,
    fail: Callable[[Path, str], None],
    bar: tqdm,
) -> Iterator[list[tuple[Job, GrayImage]]]:
    """Yield up to ``batch_size`` decoded images at a time, decoding ``PREFETCH`` images ahead in ``decoder``'s
    threads; files that cannot be read are passed to ``fail`` and left out."""
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
            pending.popleft()
            batch.append((job, gray))
        if batch:
            yield batch
