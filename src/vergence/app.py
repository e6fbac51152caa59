"""Composition root: build the hub and streams from Settings, expose them through FastAPI, start and stop in order."""

from __future__ import annotations

import asyncio
import functools
import gc
import importlib
import logging
import operator
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from vergence import __version__
from vergence.auth import Authenticator, AuthMiddleware
from vergence.config import Settings
from vergence.context import Parts, install
from vergence.control.commander import Commander
from vergence.control.controller import Controllers
from vergence.control.state import StateStore
from vergence.errors import VergenceError, redact_logs
from vergence.events import EventBus
from vergence.http.cors import CorsMiddleware
from vergence.http.refusal import refuse_error, refuse_invalid_request
from vergence.http_limits import BodyLimitMiddleware
from vergence.hub import Hub
from vergence.metrics import process_stats
from vergence.outputs.base import Outputs, Service
from vergence.recording.recordings import Recordings
from vergence.sessions import SERVER_ID_FILE, load_server_id
from vergence.streams import Streams, build_streams, stereo_calibration

if TYPE_CHECKING:
    from vergence.outputs.webrtc import WebRtcPeers

log = logging.getLogger(__name__)

CLIENT_REPORT_TTL_S = 30.0


class Vergence:
    """The running server, built in one phase once the event loop runs: streams, their controllers, the commander,
    recordings, outputs and services, each given what it uses; `start` and `stop` run them in order."""

    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        auth: Authenticator,
        connections: Any = None,
        stop_serving: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth  # one for every door that takes credentials: failed logins count at all of them
        self.connections = connections  # connections.ConnectionGuard under `vergence serve`
        self.events = EventBus(loop)  # every state change, for everyone who tells others about changes
        self.hub = Hub()
        self.client_reports: dict[int, tuple[float, dict[str, Any]]] = {}
        self.streams = build_streams(settings, self.hub, loop, self.events)
        # Controllers before the first frame: the saved view is set before anything is captured.
        # Pan, tilt and zoom move the cameras; the stereo stream moves with its rig, the depth stream with the eyes.
        cameras = {camera.id: self.streams[camera.id] for camera in settings.cameras}
        self.controllers = Controllers(cameras, StateStore(settings.state.path), self.events)
        if settings.stereo.enabled:
            stereo = settings.stereo
            self.controllers.add_rig(
                stereo.left, stereo.right, (stereo.left_offset_px, stereo.right_offset_px), stereo.id
            )
        processing = settings.processing
        for stream in self.streams.values():
            self.controllers.add_processing(stream, processing.plugin_budget_ms, processing.plugin_dir)
        calibration = stereo_calibration(settings) if settings.stereo.enabled else None
        self.controllers.add_tracking(settings.tracking, calibration)
        self.recordings = Recordings(settings, self.streams, self.events)
        self.outputs = build_outputs(settings, self.streams)  # [[udp]] and [[restream]] by id
        # The commander lists the services in its status; two of them (the inbox, the FIFO) take their commands to it.
        self.services: list[Service] = []
        self.commander = Commander(
            settings, self.streams, self.controllers, self.outputs, self.services, self.recordings
        )
        # What ends the server (the local inboxes' `kill`): `vergence serve` gives uvicorn's clean exit.
        stop = stop_serving or raise_sigterm
        self.services += build_services(Parts(settings, self.streams, self.events, self.commander, auth, stop))
        self.webrtc: WebRtcPeers | None = None
        if settings.webrtc.enabled:
            from vergence.control.transports.datachannel import DataChannelControl
            from vergence.outputs.webrtc import WebRtcPeers  # ConfigError naming aiortc when it is missing

            self.webrtc = WebRtcPeers(settings.webrtc, DataChannelControl(self).attach)

    async def start(self) -> None:
        """Start the sources, then the recordings, the enabled outputs and every service."""
        for stream in self.streams.values():
            stream.start()
        await self.start_outputs()

    async def start_outputs(self) -> None:
        """Start the enabled outputs and every service; one that fails to start is logged, the rest go on."""
        # An output that cannot start (a host that does not resolve yet: a drone booting before its network) is
        # logged and can be started later by command; a service that cannot start (a port in use, a missing package)
        # is a configuration error and stops the start.
        self.recordings.start()
        for output in self.outputs.values():
            if output.enabled:
                try:
                    await output.start()
                except VergenceError as err:
                    log.error("output %s did not start: %s", output.id, err)
        for service in self.services:
            try:
                await service.start()
            except VergenceError as err:
                log.error("%s did not start: %s", service.name, err)
                raise

    async def stop_outputs(self) -> None:
        if self.webrtc is not None:
            await self.webrtc.close()
        for service in reversed(self.services):
            await service.stop()
        for output in self.outputs.values():
            await output.stop()
        await self.recordings.close()

    async def stop(self) -> None:
        """Stop outputs and services, save the control state, then stop the sources."""
        await self.stop_outputs()
        self.controllers.stop_tracking("the server stopped")
        await self.controllers.flush()
        for stream in self.streams.values():
            stream.stop()

    def report(self, client_id: int, report: dict[str, Any]) -> None:
        self.client_reports[client_id] = (time.monotonic(), report)

    def stats(self, operator: bool = True) -> dict[str, Any]:
        horizon = time.monotonic() - CLIENT_REPORT_TTL_S
        self.client_reports = {key: value for key, value in self.client_reports.items() if value[0] >= horizon}
        return {
            "streams": {stream_id: stream.stats() for stream_id, stream in self.streams.items()},
            "clients": [report for _, report in self.client_reports.values()],
            "outputs": {output_id: output.describe() for output_id, output in self.outputs.items()},
            "services": {service.name: service.describe() for service in self.services},
            "recordings": self.recordings.describe(),
            "webrtc": self.webrtc.describe(peers=operator) if self.webrtc is not None else {"enabled": False},
            "process": process_stats(),
            "connections": self.connections.describe() if self.connections is not None else None,
        }


# Outputs by config section (a list of entries each), and services by config section (enabled or not): each module is
# imported only when its section is used, and makes its part with `create_output(entry, streams)` or
# `create_service(parts)` (or the function after a colon). A missing optional package is a ConfigError naming it.
OUTPUTS = {"udp": "vergence.outputs.udp", "restream": "vergence.outputs.restream", "whip": "vergence.outputs.whip"}
SERVICES = {
    "zmq": "vergence.control.transports.zmq",
    "mqtt": "vergence.control.transports.mqtt",
    "tcp": "vergence.outputs.tcp",
    "inbox": "vergence.control.transports.sqlite",
    "fifo": "vergence.control.transports.fifo",
    "compat.pistreamer": "vergence.control.transports.fifo:create_pistreamer_service",
    "compat.camera_web_stream": "vergence.outputs.camera_web_stream",
    "compat.rpi_camerastreaming": "vergence.control.transports.rpi_camerastreaming",
    "preview": "vergence.outputs.preview",
    "rtsp": "vergence.outputs.rtsp",
    "foxglove": "vergence.outputs.foxglove",
    "ros2": "vergence.outputs.ros2",
}


def raise_sigterm() -> None:
    """End the server as a service manager does, where nothing better was given: SIGTERM, which uvicorn answers with
    a clean shutdown (the lifespan stops every part: recordings are closed, outputs and services stopped)."""
    signal.raise_signal(signal.SIGTERM)


def build_outputs(settings: Settings, streams: Streams) -> Outputs:
    """The configured outputs by id."""
    outputs = Outputs()
    for section, module in OUTPUTS.items():
        for entry in getattr(settings, section):
            outputs[entry.id] = importlib.import_module(module).create_output(entry, streams)
    return outputs


def build_services(parts: Parts) -> list[Service]:
    """The enabled server-wide services, in a fixed order (started in it, stopped in reverse)."""
    services = []
    for section, where in SERVICES.items():
        if operator.attrgetter(section)(parts.settings).enabled:
            module, _, factory = where.partition(":")
            services.append(getattr(importlib.import_module(module), factory or "create_service")(parts))
    return services


def create_app(settings: Settings) -> FastAPI:
    """Build the FastAPI application for `settings`; the server is built and started with it, and stops with it.

    `app.state.connections` may hold the ConnectionGuard the HTTP server admits connections with (its counts show in
    /api/stats), and `app.state.stop_serving` what ends the HTTP server cleanly (for `kill`; default: SIGTERM)."""
    # One for every door that takes credentials (HTTP, the TCP feed): a client's failed logins count at all of them.
    server_id_file = settings.state.path.expanduser().parent / SERVER_ID_FILE
    auth = Authenticator(settings.auth, server_id=functools.partial(load_server_id, server_id_file))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connections = getattr(app.state, "connections", None)
        stop_serving = getattr(app.state, "stop_serving", None)  # `vergence serve` sets it: uvicorn's clean exit
        vergence = Vergence(settings, asyncio.get_running_loop(), auth, connections, stop_serving)
        install(app, vergence)  # routes reach it through vergence.context.Server
        try:
            await vergence.start()
            # What start-up made (modules, settings, the app's routes: hundreds of thousands of objects) lives as long
            # as the process: out of the collector's sight, a full collection takes milliseconds instead of the
            # ~150 ms that stalled every viewer's picture after a burst of connections.
            gc.freeze()
            yield
        finally:
            await vergence.stop()

    app = FastAPI(
        title="vergence",
        version=__version__,
        description="Low-latency camera streaming. Wire formats: docs/protocol.md.",
        lifespan=lifespan,
    )
    app.add_middleware(AuthMiddleware, auth=auth)
    # A body too large is refused before anything but the CORS preflight looks at the request.
    server = settings.server
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=server.max_body_kb * 1024, timeout_s=server.body_timeout_s)
    # Outside authentication: a browser's preflight carries no credentials (only for [auth] allowed_origins' pages).
    app.add_middleware(CorsMiddleware, allowed_origins=settings.auth.allowed_origins)
    app.add_exception_handler(RequestValidationError, refuse_invalid_request)
    app.add_exception_handler(VergenceError, refuse_error)
    # uvicorn logs each WebSocket's path with its query string, where browsers carry `?token=`.
    redact_logs("uvicorn.error", "uvicorn.access")

    from vergence.auth import router as auth_router
    from vergence.control.transports.rest import router as commands_router
    from vergence.control.transports.websocket import router as control_router
    from vergence.http.metrics import router as metrics_router
    from vergence.http.recordings import router as recordings_router
    from vergence.http.streams import router as streams_router
    from vergence.http.video import router as video_router
    from vergence.http.webrtc import router as webrtc_router

    app.include_router(auth_router)
    app.include_router(streams_router)
    app.include_router(control_router)
    app.include_router(commands_router)
    app.include_router(video_router)
    app.include_router(webrtc_router)
    app.include_router(recordings_router)
    app.include_router(metrics_router)
    if settings.compat.pi_h264_to_browser:
        from vergence.http.compat import router as compat_router

        app.include_router(compat_router)  # its pages' /ws/ and /cam0/, /cam1/ (docs/migrating.md)
        if settings.compat.pi_h264_to_browser_pages is not None:
            from vergence.http.compat import pages_router

            app.include_router(pages_router)  # the pages themselves, at /compat/

    static = resources.files("vergence") / "web" / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/stereo", include_in_schema=False)
    async def stereo_page() -> RedirectResponse:
        """Both eyes side by side, full screen: the page for a phone in a VR viewer."""
        stream = settings.stereo.id if settings.stereo.enabled else settings.cameras[0].id
        return RedirectResponse(f"/?stream={stream}&view=vr")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), headers={"Cache-Control": "no-cache"})

    return app
