"""The RTSP server's own process: GStreamer's gst-rtsp-server serving the access units vergence writes it on a pipe.

Run by the system's python3 (`[rtsp] python`), which has PyGObject and the GstRtspServer typelib from Debian's or
Raspberry Pi OS's packages; it imports nothing of vergence and nothing from the server's venv. One mount per stream,
`/<stream>`, each a shared media (`appsrc ! rtph264pay`): however many clients watch a stream, vergence writes its access
units once, and gst-rtsp-server sends them over RTP/UDP or interleaved in the RTSP connection as each client asked.

Pipe protocol (private to this module and vergence.outputs.rtsp). In: one JSON line of settings, then records, each a
header `>BHI` (kind, stream index or request id, payload length) and the payload: KIND_FRAME an Annex-B access unit
of stream `index`, KIND_ANSWER the answer to credentials request `index` (a role name, or empty: refused). Out: lines
`ready`, `error <reason>`, `play <stream>` (a client is watching: send its access units, from a keyframe), `idle
<stream>` (nobody is: stop), `clients <n>`, `auth <id> <client address> <Authorization header>`.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
from typing import IO, Any

RECORD = struct.Struct(">BHI")
KIND_FRAME, KIND_ANSWER = 1, 2
#: How long a client's credentials may wait for vergence's answer before they count as refused.
AUTH_TIMEOUT_S = 5.0
ROLE = "viewer"
#: appsrc's caps: what vergence's encoders write (Annex-B, one access unit per buffer).
CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"
#: config-interval=0: vergence's keyframes carry their SPS/PPS already; the payloader would put another copy before each
#: IDR slice, between the slices of one picture, which FFmpeg then decodes as separate pictures (half of each lost).
#: appsrc drops what comes while it holds MAX_QUEUED_BYTES (a pipeline that stopped taking data): memory stays bounded.
MAX_QUEUED_BYTES = 8_000_000
LAUNCH = (
    f'( appsrc name=src is-live=true do-timestamp=true format=time caps="{CAPS}" '
    f"max-bytes={MAX_QUEUED_BYTES} leaky-type=downstream "
    "! rtph264pay name=pay0 pt=96 config-interval=0 )"
)


class Child:
    """The RTSP server and the two pipes to vergence."""

    def __init__(self, settings: dict[str, Any], stdin: IO[bytes], stdout: IO[bytes]) -> None:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

        Gst.init(None)
        self.Gst, self.GstRtsp, self.GstRtspServer = Gst, GstRtsp, GstRtspServer
        self.settings = settings
        self.streams: list[str] = settings["streams"]
        self._stdin, self._stdout = stdin, stdout
        self._out = threading.Lock()
        self._sources: dict[int, Any] = {}  # stream index → the appsrc of its prepared media
        self._sources_lock = threading.Lock()
        self._answers: dict[int, str] = {}
        self._answered = threading.Condition()
        self._next_request = 0
        self.clients = 0
        self.loop = GLib.MainLoop()
        self.server = GstRtspServer.RTSPServer(address=settings["host"], service=str(settings["port"]))
        mounts = self.server.get_mount_points()
        for index, stream in enumerate(self.streams):
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(LAUNCH)
            factory.set_shared(True)
            factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP)
            factory.add_role_from_structure(
                Gst.Structure.new_from_string(
                    f"{ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
                )
            )
            factory.connect("media-configure", self._configured, index)
            mounts.add_factory(f"/{stream}", factory)
        self.server.set_auth(self._auth(settings["auth"]))
        self.server.connect("client-connected", self._client_connected)

    def _auth(self, required: bool) -> Any:
        GstRtsp, GstRtspServer = self.GstRtsp, self.GstRtspServer
        child = self

        class Auth(GstRtspServer.RTSPAuth):  # type: ignore[misc,name-defined]
            """Every client's credentials go to vergence, which knows the tokens and users (and holds off guessers)."""

            def do_authenticate(self, ctx: Any) -> bool:
                ok, value = ctx.request.get_header(child.GstRtsp.RTSPHeaderField.AUTHORIZATION, 0)
                if ok != child.GstRtsp.RTSPResult.OK or not value:
                    return False
                address = ctx.conn.get_ip() if ctx.conn is not None else ""
                role = child.ask(address, value)
                if role != ROLE:
                    return False
                ctx.set_token(child.token())
                return True

        if not required:  # anonymous clients are viewers: everyone gets the viewer's token, nobody is asked
            auth = GstRtspServer.RTSPAuth()
            auth.set_default_token(self.token())
            return auth
        auth = Auth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        auth.set_realm("vergence")
        return auth

    def token(self) -> Any:
        """A token carrying the viewer role, which every mount lets watch."""
        token = self.GstRtspServer.RTSPToken()
        token.set_string(self.GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
        return token

    # --- vergence's side ---------------------------------------------------------------------------------------------

    def say(self, line: str) -> None:
        with self._out:
            self._stdout.write(line.encode() + b"\n")
            self._stdout.flush()

    def ask(self, address: str, authorization: str) -> str:
        """Hand a client's credentials to vergence and wait for the role it grants ("" when refused)."""
        with self._answered:
            request = self._next_request = (self._next_request + 1) % 65536
            self._answers.pop(request, None)
        self.say(f"auth {request} {address or '-'} {' '.join(authorization.split())}")
        with self._answered:
            self._answered.wait_for(lambda: request in self._answers, AUTH_TIMEOUT_S)
            return self._answers.pop(request, "")

    def read(self) -> None:
        """Reader thread: push each access unit into its stream's media, hand answers to their askers."""
        Gst = self.Gst
        try:
            while True:
                head = self._stdin.read(RECORD.size)
                if len(head) < RECORD.size:
                    break
                kind, index, size = RECORD.unpack(head)
                payload = self._stdin.read(size)
                if len(payload) < size:
                    break
                if kind == KIND_ANSWER:
                    with self._answered:
                        self._answers[index] = payload.decode()
                        self._answered.notify_all()
                    continue
                with self._sources_lock:
                    source = self._sources.get(index)
                if source is not None:
                    source.emit("push-buffer", Gst.Buffer.new_wrapped(payload))
        finally:
            self.loop.quit()  # vergence closed the pipe (or went away): the server ends with it

    def _configured(self, factory: Any, media: Any, index: int) -> None:
        source = media.get_element().get_by_name("src")
        with self._sources_lock:
            self._sources[index] = source
        media.connect("unprepared", self._unprepared, index, source)
        self.say(f"play {self.streams[index]}")

    def _unprepared(self, media: Any, index: int, source: Any) -> None:
        with self._sources_lock:
            if self._sources.get(index) is not source:
                return
            del self._sources[index]
        self.say(f"idle {self.streams[index]}")

    def _client_connected(self, server: Any, client: Any) -> None:
        self.clients += 1
        self.say(f"clients {self.clients}")
        client.connect("closed", self._client_closed)

    def _client_closed(self, client: Any) -> None:
        self.clients -= 1
        self.say(f"clients {self.clients}")

    def run(self) -> int:
        if self.server.attach(None) == 0:
            self.say(f"error cannot listen on {self.settings['host']}:{self.settings['port']} (in use?)")
            return 1
        threading.Thread(target=self.read, name="rtsp-pipe", daemon=True).start()
        self.say("ready")
        self.loop.run()
        return 0


def main(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    settings = json.loads(stdin.readline())
    try:
        child = Child(settings, stdin, stdout)
    except (ImportError, ValueError) as err:  # gi missing, or a typelib (ValueError: Namespace … not available)
        stdout.write(f"error missing {err}\n".encode())
        stdout.flush()
        return 1
    return child.run()


if __name__ == "__main__":
    sys.exit(main(sys.stdin.buffer, sys.stdout.buffer))
