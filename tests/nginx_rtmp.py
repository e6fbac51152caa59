"""A real nginx with the RTMP module for tests, on a free 127.0.0.1 port, and ffmpeg/ffprobe pulls from it."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.daemons import require, stop, wait_listening

NGINX = Path("/usr/sbin/nginx")
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
#: Input options for pulling a live stream: give up after 5 s without data (ffprobe and ffmpeg wait forever on a silent
#: RTMP server otherwise) and probe one second, not five: FLV announces its streams up front.
LIVE_INPUT = ("-rw_timeout", "5000000", "-analyzeduration", "1000000")

# One process (no master, no worker): nothing to drop privileges to when the tests run as root, and a SIGKILL takes the
# whole server down at once, as a crash would. wait_key: a player joining gets video from a keyframe on.
CONFIG = """\
load_module {module};
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{ live on; wait_key on; }}
    }}
}}
"""


@dataclass
class RtmpServer:
    """A running nginx-rtmp: publish to and play from `url(name)`."""

    process: subprocess.Popen[bytes]
    port: int
    prefix: Path

    def url(self, name: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything politely."""
        self.process.kill()
        self.process.wait()


def nginx_available() -> bool:
    return (NGINX.exists() or shutil.which("nginx") is not None) and RTMP_MODULE.exists()


@contextlib.contextmanager
def running_nginx_rtmp(prefix: Path, port: int | None = None) -> Iterator[RtmpServer]:
    """Start nginx-rtmp with a tiny config in `prefix`, wait until its port accepts, stop it after.

    Give `port` to start a server again where one was (a restart after `kill()`).
    """
    require(nginx_available(), "nginx with the RTMP module (libnginx-mod-rtmp)")
    binary = str(NGINX) if NGINX.exists() else str(shutil.which("nginx"))
    port = port or free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(CONFIG.format(module=RTMP_MODULE, prefix=prefix, port=port))
    with (prefix / "stderr.log").open("ab") as stderr:
        # -e: nginx opens its compiled-in error log before it reads the config; keep even that in the prefix.
        command = [binary, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
        process = subprocess.Popen(command, stdout=stderr, stderr=subprocess.STDOUT)
    server = RtmpServer(process, port, prefix)
    try:
        wait_listening(process, port, "nginx", server.log)
        yield server
    finally:
        stop(process)


def probe(url: str, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """ffprobe a live URL; return its streams (empty when nothing could be read in time)."""
    command = ["ffprobe", "-v", "error", *LIVE_INPUT, "-show_streams", "-of", "json", url]
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return []
    if result.returncode != 0:
        return []
    return json.loads(result.stdout).get("streams", [])


def decode_frames(url: str, frames: int, width: int, height: int, timeout_s: float = 20.0) -> int:
    """Decode `frames` pictures from a live URL with ffmpeg; return how many whole width × height pictures came out."""
    command = ["ffmpeg", "-v", "error", *LIVE_INPUT, "-i", url]
    command += ["-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        output = err.stdout or b""
    else:
        output = result.stdout
    return len(output) // (width * height)
