"""A real SFU for the [[whip]] tests: Debian's Janus (VideoRoom plugin) behind meetecho's simple-whip-server.

Janus runs with a configuration folder of the test's own: HTTP and WebSocket transports on 127.0.0.1, one H.264 room,
every other plugin, transport and event handler off. Janus (1.1.2) gathers no ICE candidate on loopback, nor does
aioice: media flows over the session's private network (tests/support/netns.py), whose addresses Janus is told to use.
simple-whip-server (unpacked from Debian's package by scripts/install.sh --test, its Node modules from npm) speaks WHIP
to vergence and Janus' WebSocket API to Janus; it listens once it has reached Janus, and reconnects every 2 s.

The subscriber is headless Chromium on a page of Janus' own origin that talks Janus' plain HTTP API (Debian ships no
janus.js): create a session, attach the VideoRoom plugin, join the room's publisher as a subscriber, answer its offer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.support.netns import private_address

PROJECT = Path(__file__).resolve().parents[2]
SWHIP = PROJECT / "build/simple-whip-server/usr/share/simple-whip-server"
NODE_MODULES = PROJECT / "build/node/node_modules"
ROOM = 1234
START_TIMEOUT_S = 20.0

JANUS_JCFG = """\
general: {{
  configs_folder = "{folder}"
  plugins_folder = "{lib}/plugins"
  transports_folder = "{lib}/transports"
  events_folder = "{lib}/events"
  loggers_folder = "{lib}/loggers"
  log_to_stdout = true
  debug_level = 4
  debug_colors = false
  session_timeout = 60
}}
media: {{
  ipv6 = false
  rtp_port_range = "20000-40000"
}}
nat: {{
  ignore_mdns = true
  {enforce}
}}
plugins: {{
  disable = "{plugins}"
}}
transports: {{
  disable = "libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}}
loggers: {{
  disable = "libjanus_jsonlog.so"
}}
events: {{
  broadcast = false
}}
"""
WEBSOCKETS_JCFG = """\
general: {{
  json = "plain"
  ws = true
  ws_port = {port}
  ws_ip = "127.0.0.1"
  wss = false
}}
admin: {{
  admin_ws = false
  admin_wss = false
}}
"""
HTTP_JCFG = """\
general: {{
  json = "plain"
  base_path = "/janus"
  http = true
  port = {port}
  ip = "127.0.0.1"
  https = false
}}
admin: {{
  admin_http = false
  admin_https = false
}}
"""
# fir_freq: Janus asks the publisher for a keyframe every 2 s, as a subscriber joining late needs one.
VIDEOROOM_JCFG = """\
general: {{
}}
room-{room}: {{
  description = "vergence test room"
  publishers = 3
  bitrate = 8000000
  fir_freq = 2
  videocodec = "h264"
  h264_profile = "42e01f"
}}
"""
WHIP_CONFIG = """\
module.exports = {{
  janus: {{ address: 'ws://127.0.0.1:{janus_ws}' }},
  port: {port},
  rest: '/whip',
  allowTrickle: true,
  strictETags: false,
  iceServers: []
}};
"""


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def _post_json(url: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _until(check: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not up within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)  # poll interval of a deadline loop


def _end(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Janus:
    """Janus on fixed ports of its own (it comes back on the same ones after `stop`, as simple-whip-server expects)."""

    folder: Path
    ws_port: int
    http_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/janus"

    def start(self) -> None:
        lib = next(Path("/usr/lib").glob("*/janus/plugins"), None)
        if shutil.which("janus") is None or lib is None:
            pytest.fail("Debian's janus is missing: scripts/install.sh --test installs it")
        plugins = ",".join(p.name for p in lib.glob("*.so") if p.name != "libjanus_videoroom.so")
        address = private_address()
        enforce = f'ice_enforce_list = "{address}"' if address is not None else ""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "janus.jcfg").write_text(
            JANUS_JCFG.format(folder=self.folder, lib=lib.parent, enforce=enforce, plugins=plugins)
        )
        (self.folder / "janus.transport.websockets.jcfg").write_text(WEBSOCKETS_JCFG.format(port=self.ws_port))
        (self.folder / "janus.transport.http.jcfg").write_text(HTTP_JCFG.format(port=self.http_port))
        (self.folder / "janus.plugin.videoroom.jcfg").write_text(VIDEOROOM_JCFG.format(room=ROOM))
        log = self.folder / "janus.log"
        self.process = subprocess.Popen(
            ["janus", "-F", str(self.folder), "-C", str(self.folder / "janus.jcfg"), "-o"],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        _until(lambda: "janus.plugin.videoroom" in _get(f"{self.api}/info")[1], "janus", self.process, log)

    def stop(self) -> None:
        _end(self.process, signal.SIGINT)  # its clean exit: sessions hung up


@dataclass
class WhipServer:
    """simple-whip-server in front of `janus`; `endpoint(id, token)` makes a WHIP URL."""

    folder: Path
    janus: Janus
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/whip"

    def start(self) -> None:
        if not (SWHIP / "src/server.js").is_file() or not (NODE_MODULES / "express").is_dir():
            pytest.fail(f"{SWHIP} or its Node modules are missing: scripts/install.sh --test unpacks them")
        if shutil.which("node") is None:
            pytest.fail("node is missing: simple-whip-server runs on Node.js")
        # server.js reads ./config.js beside it (the package's is a link into /etc) and serves ./web from its folder.
        app = self.folder / "app"
        (app / "src").mkdir(parents=True, exist_ok=True)
        for name in ("server.js", "whip-janus.js"):
            shutil.copy(SWHIP / "src" / name, app / "src" / name)
        (app / "web").mkdir(exist_ok=True)
        (app / "src/config.js").write_text(WHIP_CONFIG.format(janus_ws=self.janus.ws_port, port=self.port))
        log = self.folder / "whip.log"
        env = {**os.environ, "NODE_PATH": str(NODE_MODULES), "DEBUG": "whip:*,janus:*,-janus:vdebug"}
        self.process = subprocess.Popen(
            ["node", "src/server.js"],
            cwd=app,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        _until(lambda: _get(f"{self.base}/healthcheck")[0] == 200, "simple-whip-server", self.process, log)

    def endpoint(self, endpoint_id: str, token: str) -> str:
        status, text = _post_json(f"{self.base}/create", {"id": endpoint_id, "room": ROOM, "token": token})
        assert status == 200, f"simple-whip-server would not create {endpoint_id}: {status} {text}"
        return f"{self.base}/endpoint/{endpoint_id}"

    def stop(self) -> None:
        _end(self.process, signal.SIGTERM)


def start_sfu(folder: Path) -> tuple[Janus, WhipServer]:
    """Janus, then simple-whip-server in front of it (it waits for Janus before it listens)."""
    janus = Janus(folder / "janus", free_port(), free_port())
    janus.start()
    whip = WhipServer(folder / "whip", janus, free_port())
    try:
        whip.start()
    except BaseException:
        janus.stop()
        raise
    return janus, whip


SUBSCRIBER_PAGE = """<!doctype html><html><body><video autoplay muted playsinline></video><script>
window.frames = 0;
const post = async (path, body) => {
  const answer = await (await fetch('/janus' + path, {method: 'POST',
    body: JSON.stringify({transaction: Math.random().toString(36).slice(2), ...body})})).json();
  if (answer.janus === 'error') throw new Error(JSON.stringify(answer.error));
  return answer;
};
const pause = (ms) => new Promise((done) => setTimeout(done, ms));
window.subscribe = async (room, deadlineMs) => {
  const start = performance.now();
  const session = (await post('', {janus: 'create'})).data.id;
  const handle = (await post('/' + session, {janus: 'attach', plugin: 'janus.plugin.videoroom'})).data.id;
  const at = '/' + session + '/' + handle;
  let feed = null;
  while (feed === null) {  // the publisher may still be joining
    const found = await post(at, {janus: 'message', body: {request: 'listparticipants', room}});
    const publishers = (found.plugindata.data.participants || []).filter((p) => p.publisher);
    if (publishers.length) feed = publishers[0].id;
    else if (performance.now() - start > deadlineMs) throw new Error('no publisher in room ' + room);
    else await pause(100);
  }
  let offer = null;
  (async () => {  // Janus' events (the offer) come by long poll, which also keeps the session alive
    while (true) {
      const events = await (await fetch('/janus/' + session + '?maxev=10&rid=' + Date.now())).json();
      for (const event of [].concat(events)) if (event.jsep && event.jsep.type === 'offer') offer = event.jsep;
    }
  })();
  await post(at, {janus: 'message', body: {request: 'join', ptype: 'subscriber', room, streams: [{feed}]}});
  while (offer === null) {
    if (performance.now() - start > deadlineMs) throw new Error('no offer from Janus');
    await pause(20);
  }
  const pc = window.pc = new RTCPeerConnection({iceServers: []});
  pc.ontrack = (event) => {
    const video = document.querySelector('video');
    video.srcObject = new MediaStream([event.track]);
    const count = () => { window.frames++; video.requestVideoFrameCallback(count); };
    video.requestVideoFrameCallback(count);
  };
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  while (pc.iceGatheringState !== 'complete' && performance.now() - start < deadlineMs) await pause(20);
  await post(at, {janus: 'message', body: {request: 'start', room}, jsep: {type: 'answer', sdp: pc.localDescription.sdp}});
};
window.decoded = async () => {
  let decoded = 0;
  if (window.pc) (await window.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded || 0;
  });
  const video = document.querySelector('video');
  return {decoded, width: video.videoWidth, height: video.videoHeight, shown: window.frames};
};
</script></body></html>"""


def subscribe(page: Any, janus: Janus, deadline_ms: int = 20000) -> None:
    """Open the subscriber page on Janus' origin in `page` and subscribe to the room's publisher."""
    page_url = f"http://127.0.0.1:{janus.http_port}/vergence-test/subscriber.html"
    page.route(page_url, lambda route: route.fulfill(status=200, content_type="text/html", body=SUBSCRIBER_PAGE))
    page.goto(page_url)
    page.evaluate("([room, ms]) => window.subscribe(room, ms)", [ROOM, deadline_ms])
