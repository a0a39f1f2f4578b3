"""``cadence serve``'s HTTP side: a FastAPI app over a :class:`~cadence.cluster.serve.service.CountingService`.

Routes (JSON unless said; the OpenAPI schema is at ``/openapi.json``, browsable at ``/docs``):

- ``POST /feeds`` ``{"source", "name", "live", "strategy", "rate", "window_seconds", "stride_seconds"}``
  -> 201 ``{"id", ...}``
- ``GET /feeds``, ``GET /feeds/{id}``, ``DELETE /feeds/{id}`` (stops it; its final count stays)
- ``GET /feeds/{id}/events``: Server-Sent Events ``count``, ``repetition`` and ``state``
- ``GET /feeds/{id}/history``, ``/repetitions``: what the store holds; ``/frame.jpg``: a recent frame
- ``GET /metrics``: Prometheus text; ``GET /health``; ``GET /``: the live page

A token, when set, guards every route: ``Authorization: Bearer T``, a ``cadence_token`` cookie (the
page sets it when opened as ``/?token=T``, so its requests carry it), or ``?token=T``.  Without
it a request gets 401.
"""

from __future__ import annotations

import asyncio
import secrets
from importlib import resources
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cadence.pipelines.params import check_value
from cadence.pipelines.pose import STRATEGIES
from cadence.pipelines.repetitions import RepetitionCounting

from cadence.cluster.serve import metrics
from cadence.cluster.serve.service import CountingService, FeedSpec, FeedView

TOKEN_COOKIE = "cadence_token"


class FeedRequest(BaseModel):
    """A feed to count."""

    model_config = ConfigDict(extra="forbid")

    source: str | int | list[str] = Field(description="a video file, a camera index, an RTSP or HTTP URL, "
                                                      "or a list of files played back to back")
    name: str | None = Field(None, description="how lists show it (default: the source)")
    live: bool | None = Field(None, description="read at the source's pace, dropping frames when behind "
                                                "(default: true for cameras and URLs)")
    strategy: Literal[STRATEGIES] = Field(RepetitionCounting.strategy,  # type: ignore[valid-type]
                                          description="whose count is the headline when several people are in view")
    rate: float | Literal["all"] | None = Field(
        RepetitionCounting.rate, description="frames posed a second at most, one in a whole step of the source's "
                                             "(15: every other frame of a 30 fps camera); 'all' or null: every frame")
    window_seconds: float = Field(RepetitionCounting.window_seconds, description="seconds of poses per window")
    stride_seconds: float | None = Field(RepetitionCounting.stride_seconds,
                                         description="seconds between counts (default: 0.5, or the window if shorter)")
    per_person: bool = Field(True, description="also track and count everyone in view on their own (people)")
    labels: dict[str, str] | None = Field(None, description="run the feed on a Ray node carrying these node labels "
                                                             "(ray start --labels), e.g. a camera one site reaches")

    @field_validator("rate", "window_seconds", "stride_seconds")
    @classmethod
    def _as_the_job_accepts(cls, value: object, info) -> object:
        value = None if value == "all" else value
        return check_value(RepetitionCounting, info.field_name, value)


def create_app(service: CountingService, token: str | None = None) -> FastAPI:
    app = FastAPI(title="cadence serve", summary="Counts exercise repetitions on many camera feeds at once.",
                  version="1")
    guarded = [Depends(_token_check(token))]
    app.include_router(_feed_routes(service), dependencies=guarded)
    app.include_router(_feed_output_routes(service), dependencies=guarded)
    app.include_router(_site_routes(service, token), dependencies=guarded)

    @app.get("/health")
    def health() -> JSONResponse:
        """200 while the driver runs; 503 with its error otherwise.  Needs no token."""
        if service.error is not None:
            return JSONResponse({"ok": False, "error": repr(service.error)}, status_code=503)
        return JSONResponse({"ok": True, "feeds": len(service.feeds())})

    return app


def _token_check(token: str | None):
    def authorised(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else \
            request.cookies.get(TOKEN_COOKIE) or request.query_params.get("token") or ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "a token is required: send 'Authorization: Bearer TOKEN' "
                                     "(or open the page as /?token=TOKEN)", headers={"WWW-Authenticate": "Bearer"})

    return authorised


def _view(service: CountingService, feed_id: str) -> FeedView:
    try:
        return service.feed(feed_id)
    except KeyError:
        raise HTTPException(404, f"no feed with id {feed_id!r}; GET /feeds lists them") from None


def _feed_routes(service: CountingService) -> APIRouter:
    """Adding, listing and stopping feeds; the nodes they run on."""
    router = APIRouter()

    @router.post("/feeds", status_code=201)
    def add_feed(request: FeedRequest) -> dict:
        """Start counting a feed."""
        try:
            return service.add(FeedSpec(**request.model_dump())).to_dict()
        except ValueError as e:
            raise HTTPException(422, str(e)) from None

    @router.get("/feeds")
    def list_feeds() -> list[dict]:
        """Every feed: state, count, frames, frames dropped, latency, error."""
        return [v.to_dict() for v in service.feeds()]

    @router.get("/nodes")
    def list_nodes() -> list[dict]:
        """The Ray nodes running feeds: node id, address, CPUs, feeds running there, frames read there."""
        return service.nodes()

    @router.get("/feeds/{feed_id}")
    def get_feed(feed_id: str) -> dict:
        return _view(service, feed_id).to_dict()

    @router.delete("/feeds/{feed_id}")
    def delete_feed(feed_id: str) -> dict:
        """Stop a feed; it stays listed with its final count."""
        _view(service, feed_id)
        return service.remove(feed_id).to_dict()

    return router


def _feed_output_routes(service: CountingService) -> APIRouter:
    """What a feed has counted: its history, repetitions, a recent frame and its live events."""
    router = APIRouter()

    @router.get("/feeds/{feed_id}/history")
    def history(feed_id: str) -> list[dict]:
        """The feed's latest count updates (up to 2,000), oldest first."""
        _view(service, feed_id)
        return service.history(feed_id)

    @router.get("/feeds/{feed_id}/repetitions")
    def repetitions(feed_id: str) -> list[dict]:
        _view(service, feed_id)
        return service.repetitions(feed_id)

    @router.get("/feeds/{feed_id}/frame.jpg", response_class=Response)
    def frame(feed_id: str) -> Response:
        """A recent frame with everyone found drawn (404 until one is made)."""
        _view(service, feed_id)
        jpeg = service.preview(feed_id)
        if not jpeg:
            raise HTTPException(404, "no frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get("/feeds/{feed_id}/events", response_class=EventSourceResponse)
    async def events(feed_id: str, request: Request):
        """Server-Sent Events: ``state`` first, then ``count`` per update, ``repetition`` per repetition
        counted, ``state`` per change."""
        current = _view(service, feed_id)
        subscriber = service.subscribe(feed_id)
        try:
            yield ServerSentEvent(event="state", data={"state": current.state, "count": current.count,
                                                       "error": current.error})
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), timeout=5)
                except asyncio.TimeoutError:  # (not the built-in TimeoutError before Python 3.11)
                    continue
                yield ServerSentEvent(event=event["event"], data=event["data"])
        finally:
            service.unsubscribe(feed_id, subscriber)

    return router


def _site_routes(service: CountingService, token: str | None) -> APIRouter:
    """The live page and the Prometheus metrics."""
    router = APIRouter()
    figures = metrics.registry(service)
    html = resources.files("cadence.cluster.serve").joinpath("static/index.html").read_text()  # read once

    @router.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        body, content_type = metrics.exposition(figures)
        return Response(body, media_type=content_type)

    @router.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        """The live page: every feed with its state, count, a recent frame and its count over time."""
        response = HTMLResponse(html)
        if token is not None and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    return router


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _listen(host: str, port: int):
    """A socket listening on ``host:port`` (port 0: one the system picks), or an error a user can act on."""
    import socket

    from cadence.pipelines.errors import InputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        raise InputError(f"--host {host} --port {port}", f"cannot listen there ({error.strerror})",
                         "give another --port (--port 0 picks a free one and prints it), or stop the "
                         "process that holds it") from None


def serve(host: str = "127.0.0.1", port: int = 8000, store: str = "cadence-serve", address: str | None = None,
          token: str | None = None, pose_actors: int | None = None) -> None:
    """Run the service until interrupted: Ray (local, or the cluster at ``address``), the store, the
    HTTP server.  A host beyond loopback needs a token: Ray and this API have no other guard."""
    import uvicorn

    from cadence.pipelines.errors import InputError

    from cadence.cluster.runtime.connect import connected
    from cadence.cluster.serve.store import CountStore
    from cadence.cluster.counting.pipeline import PipelineSettings

    if host not in LOOPBACK and not token:
        raise InputError(f"--host {host}", "exposes the service beyond this machine without a token",
                         "give --token TOKEN (or set CADENCE_TOKEN), or keep --host 127.0.0.1")
    listening = _listen(host, port)  # before Ray starts: none of its processes can take the port
    port = listening.getsockname()[1]
    counts = CountStore(store)
    with listening, connected(address) as where:
        settings = PipelineSettings(reconnect=True, preview_seconds=1.0, pose_actors=pose_actors)
        service = CountingService(counts, settings)
        service.start()
        try:
            shown = "[" + host + "]" if ":" in host else host
            print(f"cadence serve: counting on Ray ({where['address']}, {where['nodes']} node(s), {where['cpus']} "
                  f"CPUs; each feed read, posed and counted on one node); store {counts.path}; "
                  f"{len(service.feeds())} feeds restored", flush=True)
            print(f"cadence serve: http://{shown}:{port}/ (API: /docs; token {'required' if token else 'off'})",
                  flush=True)
            config = uvicorn.Config(create_app(service, token), host=host, port=port, log_level="warning",
                                    timeout_graceful_shutdown=2)
            uvicorn.Server(config).run(sockets=[listening])
        finally:
            service.stop()
            counts.close()
