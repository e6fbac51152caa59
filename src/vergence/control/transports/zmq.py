"""Commands over ZeroMQ: each request on the REP socket is one command (JSON or a text line), answered by its reply.
The sockets themselves (REP beside the frames' PUB, CURVE) are `outputs.zmq.ZmqService`, which hands each request here."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from vergence.control.commander import Commander, error_reply
from vergence.errors import CommandError

if TYPE_CHECKING:
    from vergence.context import Parts
    from vergence.outputs.base import Service

log = logging.getLogger(__name__)


class ZmqCommands:
    """Answers the requests of the REP socket."""

    def __init__(self, commander: Commander) -> None:
        self._commander = commander

    async def answer(self, parts: list[bytes]) -> bytes:
        """The reply to one request (a one-part message), as JSON; never raises, since REP must answer every request."""
        return json.dumps(await self._reply(parts), default=str).encode()

    async def _reply(self, parts: list[bytes]) -> dict[str, Any]:
        if len(parts) != 1:
            return error_reply(None, CommandError(f"a request is one message part, not {len(parts)}", code="invalid"))
        try:
            return await self._commander.handle(parts[0], source="zmq")
        except Exception as err:  # the commander never raises; if it did, the socket must still answer
            log.exception("ZeroMQ command failed")
            return error_reply(None, CommandError(f"internal error: {err}", code="internal_error"))


def create_service(parts: Parts) -> Service:
    """The `[zmq]` service: frames on PUB (outputs.zmq), this module's commands on REP."""
    from vergence.outputs.zmq import ZmqService  # ConfigError naming pyzmq when it is missing

    settings = parts.settings
    return ZmqService(settings.zmq, parts.streams, settings, ZmqCommands(parts.commander).answer)
