"""The Starlette application: the page, ``POST /api``, the JSON job API, info and health.

Routes (the README section "Web page and API" has curl examples):

====== ========================== =====================================================
GET    /                          the page (static/index.html), language by Accept-Language
GET    /healthz                   ``{"status": "ok"}``
GET    /api/info                  limits, styles, models, options, queue and cache state
POST   /api                       form in, image out (web.lua's API, plus format, scale 4)
POST   /api/jobs                  same form; 202 + job JSON (id, state, progress)
GET    /api/jobs/{id}             job JSON: queued | running | done | failed | cancelled
DELETE /api/jobs/{id}             cancel; job JSON
GET    /api/jobs/{id}/result      the image (409 while running); ETag / If-None-Match
====== ========================== =====================================================

Every error is JSON ``{"error": {"status", "message"}}``: 400 bad field or undecodable
image, 404, 405, 409, 413 body or pixels over the limit, 415 not an image, 503 with
Retry-After when the queue is full, 500 without a traceback. Conversions run in
``jobs.JobQueue``, never on the event loop.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import urllib.parse
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from w2x.store import BUNDLE_FALLBACKS, STYLES, ModelNotFoundError, find_model, model_filename
from w2x.web import i18n
from w2x.web.cache import ResultCache
from w2x.web.engine import Engine, check_size
from w2x.web.errors import WebError, bad_field, too_large
from w2x.web.fields import FORMATS, NOISE_LEVELS, SCALES, TTA_LEVELS, parse_fields
from w2x.web.jobs import FINAL_STATES, Job, JobQueue, State
from w2x.web.limits import MIB, Limits
from w2x.web.probe import probe
from w2x.web.urlfetch import UrlFetcher

access_log = logging.getLogger("w2x.web.access")
log = logging.getLogger("w2x.web")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass
class ServerConfig:
    """Everything ``w2x serve`` can set; the defaults are the original's where it has one."""
    limits: Limits = field(default_factory=Limits)
    workers: int = 1
    max_queued: int = 16
    cache_bytes: int = 256 * MIB
    cache_ttl: float = 3600.0
    job_ttl: float = 600.0
    keep_finished: int = 64
    styles: dict[str, str] = field(default_factory=lambda: default_styles())
    backend: str = "auto"
    tile_size: int | None = None
    allow_url: bool = False
    url_timeout: float = 20.0
    url_max_redirects: int = 2            # web.lua -curl_max_redirects
    fetcher: UrlFetcher | None = None     # replaces the default fetcher (tests)


def create_app(config: ServerConfig | None = None) -> Starlette:
    """The ASGI application for ``config`` (one worker pool and cache per application)."""
    config = config or ServerConfig()
    engine = Engine(config.styles, backend=config.backend, tile_size=config.tile_size)
    cache = ResultCache(config.cache_bytes, config.cache_ttl)
    queue = JobQueue(engine, config.limits, cache, workers=config.workers,
                     max_queued=config.max_queued, keep_finished=config.keep_finished,
                     job_ttl=config.job_ttl)
    fetcher = config.fetcher or UrlFetcher(max_bytes=config.limits.max_body,
                                           timeout=config.url_timeout,
                                           max_redirects=config.url_max_redirects)
    api = _Api(config, queue, cache, fetcher)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(queue.shutdown)

    routes = [
        Route("/", api.page, methods=["GET"]),
        Route("/healthz", api.health, methods=["GET"]),
        Route("/api/info", api.info, methods=["GET"]),
        Route("/api", api.convert, methods=["POST"]),
        Route("/api/jobs", api.submit, methods=["POST"]),
        Route("/api/jobs/{job_id}", api.status, methods=["GET"]),
        Route("/api/jobs/{job_id}", api.cancel, methods=["DELETE"]),
        Route("/api/jobs/{job_id}/result", api.result, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        WebError: _web_error, HTTPException: _http_error, Exception: _server_error})
    app.state.queue, app.state.cache, app.state.config = queue, cache, config
    return AccessLog(app)


# -- errors -------------------------------------------------------------------------------
async def _web_error(request: Request, exc: WebError) -> JSONResponse:
    return JSONResponse(exc.to_json(), exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    messages = {404: "There is nothing at this address.",
                405: "This address does not take that method."}
    err = WebError(exc.status_code, messages.get(exc.status_code, str(exc.detail)))
    return JSONResponse(err.to_json(), exc.status_code, headers=dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(WebError(500, "Something went wrong on the server; the error is in "
                                      "its log.").to_json(), 500)


class AccessLog:
    """ASGI middleware: one line per request, ``client "METHOD path" status bytes ms``."""

    def __init__(self, app):
        self.app = app
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, info = time.perf_counter(), {"status": 0, "bytes": 0}

        async def send_logged(message):
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
            elif message["type"] == "http.response.body":
                info["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            client = scope.get("client") or ("-", 0)
            access_log.info('%s "%s %s" %d %d %.0fms', client[0], scope["method"],
                            scope["path"], info["status"], info["bytes"],
                            (time.perf_counter() - t0) * 1000)


# -- the routes ---------------------------------------------------------------------------
class _Api:
    def __init__(self, config: ServerConfig, queue: JobQueue, cache: ResultCache,
                 fetcher: UrlFetcher):
        self.config, self.queue, self.cache, self.fetcher = config, queue, cache, fetcher

    async def page(self, request: Request) -> HTMLResponse:
        lang = i18n.pick_language(request.headers.get("accept-language"))
        html = _page_template().replace("{{LANG}}", lang).replace(
            "{{STRINGS}}", json.dumps(i18n.strings(), ensure_ascii=False).replace("</", "<\\/"))
        return HTMLResponse(html, headers={"Content-Language": lang, "Vary": "Accept-Language"})

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def info(self, request: Request) -> JSONResponse:
        styles = await run_in_threadpool(_styles_available, self.config.styles)
        return JSONResponse({
            "limits": self.config.limits.to_json(), "styles": styles,
            "options": {"noise": list(NOISE_LEVELS), "scale": list(SCALES),
                        "tta_level": list(TTA_LEVELS), "format": list(FORMATS)},
            "url_fetch": self.config.allow_url, "queue": self.queue.stats(),
            "cache": self.cache.stats(), "languages": list(i18n.languages())})

    async def convert(self, request: Request) -> Response:
        job = await self._submit(request)
        await asyncio.wrap_future(job.future)
        return self._image(request, job)

    async def submit(self, request: Request) -> JSONResponse:
        job = await self._submit(request)
        return JSONResponse(job.to_json(), 202 if job.state not in FINAL_STATES else 200,
                            headers={"Location": f"/api/jobs/{job.id}"})

    async def status(self, request: Request) -> JSONResponse:
        return JSONResponse(self._job(request).to_json())

    async def cancel(self, request: Request) -> JSONResponse:
        job = self.queue.cancel(request.path_params["job_id"])
        if job is None:
            raise _no_job()
        return JSONResponse(job.to_json())

    async def result(self, request: Request) -> Response:
        job = self._job(request)
        if job.state not in FINAL_STATES:
            raise WebError(409, f"The image is not ready yet ({job.state.value}, "
                                f"{job.done}/{job.total} tiles); poll /api/jobs/{job.id}.")
        return self._image(request, job)

    # -- helpers ----------------------------------------------------------------------
    def _job(self, request: Request) -> Job:
        job = self.queue.get(request.path_params["job_id"])
        if job is None:
            raise _no_job()
        return job

    def _image(self, request: Request, job: Job) -> Response:
        if job.state == State.CANCELLED:
            raise WebError(410, "The job was cancelled; submit the image again.")
        if job.error is not None:
            raise job.error
        entry = job.entry
        disposition = "attachment" if job.request.download else "inline"
        headers = {"Content-Disposition": _disposition(disposition, job.filename),
                   "ETag": entry.etag, "Cache-Control": "private, max-age=3600",
                   "X-Image-Size": f"{entry.result.width}x{entry.result.height}"}
        if request.headers.get("if-none-match") == entry.etag:
            return Response(status_code=304, headers=headers)
        media = "application/octet-stream" if job.request.download else entry.result.media_type
        return Response(entry.result.data, media_type=media, headers=headers)

    async def _submit(self, request: Request) -> Job:
        form = await _read_form(request, self.config.limits.max_body)
        req = parse_fields(form, self.config.styles)
        data, name = await self._input(form)
        header = probe(data)
        req = check_size(header, req, self.config.limits)      # 413 here; tta 0 resolved
        return self.queue.submit(data, req, req.output_name(name))

    async def _input(self, form) -> tuple[bytes, str | None]:
        upload = form.get("file")
        if isinstance(upload, UploadFile):
            data = await upload.read()
            if data:
                return data, upload.filename
        url = form.get("url")
        if isinstance(url, str) and url.strip():
            if not self.config.allow_url:
                raise bad_field("This server does not fetch URLs; upload the file instead.")
            fetched = await run_in_threadpool(self.fetcher.fetch, url)
            return fetched.data, fetched.name
        if isinstance(upload, UploadFile):
            raise bad_field("The uploaded file is empty; choose an image file.")
        raise bad_field("Send the image as a 'file' field (multipart/form-data)"
                        + (" or a 'url' field." if self.config.allow_url else "."))


def _no_job() -> WebError:
    return WebError(404, "There is no such job; it may have finished more than a few "
                         "minutes ago and been forgotten.")


def _disposition(kind: str, filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(filename)}"


async def _read_form(request: Request, max_body: int):
    """The request's form, read with the body capped at ``max_body`` bytes (0 = no cap)."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype not in FORM_TYPES:
        raise WebError(415, "Send the form as multipart/form-data (a 'file' field and the "
                            "options), as an HTML form with a file input does.")
    declared = request.headers.get("content-length")
    over = too_large(f"The request is larger than the {max_body} bytes this server takes; "
                     "upload a smaller image.")
    if max_body and declared and declared.isdigit() and int(declared) > max_body:
        raise over
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if max_body and size > max_body:
                raise over
            chunks.append(chunk)
    except ClientDisconnect:
        raise bad_field("The upload was interrupted.") from None
    body = b"".join(chunks)

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form()
    except MultiPartException as e:
        raise bad_field(f"The form could not be read ({e}).") from None


@functools.lru_cache(maxsize=1)
def _page_template() -> str:
    return resources.files("w2x.web").joinpath("static/index.html").read_text("utf-8")


def default_styles() -> dict[str, str]:
    """The original server's styles (web.lua:54-77), each its model folder; where a style's
    default is not installed (cunet/art on a fresh install), its bundled stand-in
    (``store.BUNDLE_FALLBACKS``), so the style works and /api/info names what runs."""
    out = {}
    for name, folder in STYLES.items():
        try:
            find_model(model_filename("scale"), style=folder, mode="scale")
            out[name] = folder
        except ModelNotFoundError:
            out[name] = BUNDLE_FALLBACKS.get(name, folder)
    return out


def _styles_available(styles: dict[str, str]) -> dict:
    """For each style: its model folder and which modes have models installed."""
    out = {}
    for name, folder in styles.items():
        modes = {}
        for mode, level in (("noise", 1), ("scale", None), ("noise_scale", 1)):
            try:
                find_model(model_filename(mode, level), style=folder, mode=mode)
                modes[mode] = True
            except (ModelNotFoundError, ValueError):
                modes[mode] = False
        modes["noise_scale"] = modes["noise_scale"] or (modes["noise"] and modes["scale"])
        out[name] = {"models": folder, "modes": modes}
    return out
