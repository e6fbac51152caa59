"""What HTTP routes and the control transports use of the running server, as one typed FastAPI dependency.

`Server` is the only door from a route to the server the composition root built (`app.state.vergence`); routes name
it as a parameter (`server: Server`) and see this interface, never the composition root itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from vergence.auth import Authenticator
    from vergence.config import Settings
    from vergence.control.commander import Commander
    from vergence.events import EventBus
    from vergence.outputs.base import Outputs
    from vergence.outputs.webrtc import WebRtcPeers
    from vergence.recording.recordings import Recordings
    from vergence.streams import Streams


@dataclass(frozen=True, slots=True)
class Parts:
    """What a service is built from (`create_service(parts)` in its module): the settings, the streams, the event bus,
    the commander, the authenticator every door that takes credentials shares, and what ends the server (the local
    inboxes' `kill`, PiStreamer's)."""

    settings: Settings
    streams: Streams
    events: EventBus
    commander: Commander
    auth: Authenticator
    shutdown: Callable[[], None]


class ServerContext(Protocol):
    """The running server as routes see it."""

    settings: Settings
    streams: Streams
    commander: Commander
    events: EventBus
    outputs: Outputs
    recordings: Recordings
    webrtc: WebRtcPeers | None
    client_reports: dict[int, tuple[float, dict[str, Any]]]

    def report(self, client_id: int, report: dict[str, Any]) -> None: ...

    def stats(self, operator: bool = True) -> dict[str, Any]: ...


def install(app: Starlette, server: ServerContext) -> None:
    """Make `server` what routes of `app` reach (the composition root calls this once the server is built)."""
    app.state.vergence = server


def server_context(connection: HTTPConnection) -> ServerContext:
    """The running server, for code that holds the request."""
    return connection.app.state.vergence  # type: ignore[no-any-return]


async def _server(connection: HTTPConnection) -> ServerContext:
    # async: FastAPI runs a plain `def` dependency on a worker thread, a thread hop for every request.
    return server_context(connection)


Server = Annotated[ServerContext, Depends(_server)]
