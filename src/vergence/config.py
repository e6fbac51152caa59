"""Typed configuration: TOML file, then VERGENCE_* environment variables, then command-line flags; errors name the key."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from vergence.errors import ConfigError
from vergence.passwords import parse_password

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
MIN_SIDE_PX, MAX_WIDTH_PX, MAX_HEIGHT_PX = 16, 7680, 4320
_Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


def _parse_size(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        width, height = int(value[0]), int(value[1])
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"expected WIDTHxHEIGHT such as 1280x720, got {value!r}")
        width, height = int(match[1]), int(match[2])
    if not (MIN_SIDE_PX <= width <= MAX_WIDTH_PX and MIN_SIDE_PX <= height <= MAX_HEIGHT_PX):
        raise ValueError(f"{width}x{height} is outside {MIN_SIDE_PX}x{MIN_SIDE_PX} … {MAX_WIDTH_PX}x{MAX_HEIGHT_PX}")
    if width % 2 or height % 2:
        raise ValueError(f"{width}x{height}: width and height must be even (4:2:0 video)")
    return width, height


Size = Annotated[
    tuple[int, int],
    BeforeValidator(_parse_size),
    PlainSerializer(lambda size: f"{size[0]}x{size[1]}", return_type=str),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginSettings(_Section):
    """A processing plugin of one camera: a Python file or an importable module (docs/plugins.md)."""

    name: str = Field(
        "", pattern=r"^[A-Za-z0-9_.-]{0,40}$", description="plugin name, 1-40 of A-Z a-z 0-9 _ . - (default: from path)"
    )
    path: str | None = Field(None, min_length=1, description="a .py file defining process(frame, ctx) or process_image")
    module: str | None = Field(None, min_length=1, description="or a dotted module name, e.g. vergence.plugins.motion")
    enabled: bool = Field(True, description="run it from the start")
    options: dict[str, Any] = Field(default_factory=dict, description="passed to the plugin as ctx.options")

    @model_validator(mode="after")
    def _one_source(self) -> PluginSettings:
        if (self.path is None) == (self.module is None):
            raise ValueError("give either path or module")
        if not self.name:
            stem = Path(self.path).stem if self.path else (self.module or "").rsplit(".", 1)[-1]
            self.name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:40] or "plugin"
        return self


class CameraSettings(_Section):
    """One camera: a source and the picture it delivers."""

    id: str = Field("cam0", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="stream id: 1-32 of A-Z a-z 0-9 _ -")
    source: str = Field(
        "testpattern",
        min_length=1,
        description="a source name (testpattern, picamera2, av) or a file path, URL or /dev/videoN (read through PyAV)",
    )
    size: Size = Field((1280, 720), description=f"WIDTHxHEIGHT, even, {MIN_SIDE_PX}…{MAX_WIDTH_PX}x{MAX_HEIGHT_PX}")
    fps: float = Field(30.0, gt=0, le=240, description="frames per second, 0 < fps ≤ 240")
    loop: bool = Field(True, description="play a file source again from the start when it ends")
    options: dict[str, str] = Field(
        default_factory=dict,
        description="backend options: FFmpeg options for av; camera_index, tuning_file, hflip, vflip for picamera2",
    )
    max_zoom: float = Field(8.0, ge=1, le=64, description="largest zoom factor, 1 … 64")
    grayscale: bool = Field(False, description="send the picture without colour (RPI-CameraStreaming's export as gray)")
    plugins: list[PluginSettings] = Field(default_factory=list, description="processing plugins of this camera")

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]


class H264Settings(_Section):
    """The H.264 encoder shared by every H.264 consumer of a stream."""

    encoder: Literal["auto", "libx264", "h264_v4l2m2m"] = Field(
        "auto", description="auto tries h264_v4l2m2m, then libx264"
    )
    bitrate_bps: int | None = Field(
        None,
        ge=100_000,
        le=50_000_000,
        description="100000 ≤ bitrate_bps ≤ 50000000; unset: by picture size and rate, 0.2 bit per pixel (5.5 Mbit/s "
        "at 1280x720@30, 12.4 at 1920x1080@30), chosen on the test camera's camera-like scene",
    )
    gop_frames: int = Field(60, ge=1, le=600, description="frames between keyframes, 1 … 600")
    profile: Literal["baseline", "main", "high"] = Field("baseline", description="baseline, main or high")
    threads: int = Field(2, ge=1, le=16, description="libx264 slice threads, 1 … 16")


class JpegSettings(_Section):
    """The JPEG encoder behind MJPEG viewers and snapshots."""

    quality: int = Field(80, ge=1, le=100, description="JPEG quality, 1 … 100")


class HubSettings(_Section):
    """Fan-out buffers."""

    h264_buffer_packets: int = Field(
        90,
        ge=2,
        le=10_000,
        description="packets an H.264 subscriber may fall behind before it is cut to the next keyframe",
    )
    encoder_linger_s: float = Field(
        2.0, ge=0, le=600, description="seconds an encoder keeps running after its last consumer left, 0 … 600"
    )
    viewer_stall_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="a WebSocket viewer whose connection takes nothing for this long is cut (s), 0 < … ≤ 3600",
    )


class ServerSettings(_Section):
    """HTTP/WebSocket server."""

    host: str = Field("0.0.0.0", min_length=1, description="address to bind")
    port: int = Field(8000, ge=1, le=65535, description="TCP port, 1 … 65535")
    ws: Literal["websockets-sansio", "websockets", "wsproto", "auto"] = Field(
        "websockets-sansio", description="uvicorn WebSocket implementation"
    )
    send_buffer_bytes: int = Field(
        131_072,
        ge=0,
        le=64 * 1024 * 1024,
        description="kernel send buffer per connection in bytes, 0 (kernel autotuning) … 67108864",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="debug, info, warning or error")
    direct_send: bool = Field(
        True,
        description="write video messages straight to each viewer's socket (websockets-sansio only; false: through "
        "ASGI, several times the CPU per viewer)",
    )
    max_body_kb: int = Field(
        1024,
        ge=1,
        le=1024 * 1024,
        description="largest request body in KiB, 1 … 1048576 (413 beyond, before it is read)",
    )
    body_timeout_s: float = Field(30.0, gt=0, le=3600, description="a request body must be complete within this (s)")
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="a connection must complete its request headers within this (s)"
    )
    max_connections: int = Field(
        4096, ge=16, le=1_000_000, description="connections at once, 16 … 1000000 (lowered to fit the file limit)"
    )
    max_connections_per_client: int = Field(
        128,
        ge=1,
        le=1_000_000,
        description="connections one client (address, or account on this machine) holds at once",
    )
    tls: Literal["off", "auto"] = Field(
        "off", description="off, or auto: make and keep a self-signed certificate in tls_dir (unless tls_cert is given)"
    )
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) to serve https with; needs tls_key")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    tls_dir: Path = Field(
        Path("~/.local/state/vergence/tls"), description="where tls = auto keeps its self-signed certificate and key"
    )

    @model_validator(mode="after")
    def _check_tls(self) -> ServerSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        return self

    @property
    def https(self) -> bool:
        """True when the server speaks TLS (a given certificate, or tls = auto)."""
        return self.tls == "auto" or self.tls_cert is not None


Role = Literal["viewer", "operator"]


class TokenSettings(_Section):
    """A bearer token (`Authorization: Bearer …`, `?token=…`, or the page's session cookie) and the role it grants."""

    name: str = Field(
        ..., pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="who holds it, as logs and /api/session show it"
    )
    token: SecretStr = Field(..., min_length=16, max_length=512, description="the secret, 16-512 characters")
    role: Role = Field("viewer", description="viewer (watch) or operator (watch and command)")


class UserSettings(_Section):
    """A user of HTTP basic auth (the browser's own login prompt) and the role they get."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="user name, 1-64 of A-Z a-z 0-9 _ . @ -")
    password: SecretStr = Field(
        ...,
        min_length=8,
        max_length=512,
        description="scrypt:… from `vergence hash-password` (salted, slow: best), the password itself, or the old "
        "unsalted sha256:<64 hex digits> of it",
    )
    role: Role = Field("viewer", description="viewer (watch) or operator (watch and command)")

    @field_validator("password")
    @classmethod
    def _check_hash(cls, password: SecretStr) -> SecretStr:
        parse_password(password.get_secret_value())  # a malformed hash: ValueError, which names no secret
        return password


class AuthSettings(_Section):
    """Who may watch and who may command, on every HTTP and WebSocket route (docs/security.md)."""

    tokens: list[TokenSettings] = Field(default_factory=list, description="bearer tokens with their roles")
    users: list[UserSettings] = Field(default_factory=list, description="basic-auth users with their roles")
    anonymous: Literal["auto", "none", "viewer", "operator"] = Field(
        "auto",
        description="role of a request without credentials: auto = none once tokens or users are set, else operator "
        "from this machine (loopback) and viewer from elsewhere",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="other page origins (https://host:port) allowed to open WebSockets and send commands",
    )
    session_days: float = Field(30.0, gt=0, le=365, description="how long the page's login cookie lasts (days)")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="reverse proxies (addresses or networks, 127.0.0.1, 10.0.0.0/8) whose X-Forwarded-For / Forwarded "
        "names the real client; a request with such headers from anyone else is never the loopback operator",
    )
    login_free_failures: int = Field(
        5, ge=1, le=1000, description="wrong credentials a client may give in a row before it has to wait, 1 … 1000"
    )
    login_delay_s: float = Field(
        1.0, gt=0, le=3600, description="its first wait (s), doubling with each further failure, 0 < … ≤ 3600"
    )
    login_max_delay_s: float = Field(
        60.0, gt=0, le=3600, description="the longest wait (s) between a client's attempts, 0 < … ≤ 3600"
    )
    login_log_interval_s: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="after a client's first failed logins, one line per this many s, 0 < … ≤ 86400",
    )

    @model_validator(mode="after")
    def _check_unique(self) -> AuthSettings:
        names = [token.name for token in self.tokens] + [user.name for user in self.users]
        if len(set(names)) != len(names):
            raise ValueError(f"token and user names must be unique, got {names}")
        secrets = [token.token.get_secret_value() for token in self.tokens]
        if len(set(secrets)) != len(secrets):
            raise ValueError("two tokens are the same")
        for origin in self.allowed_origins:
            if not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"allowed_origins: {origin!r} is not scheme://host[:port]")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {proxy!r} is not an address or network") from None
        if self.login_max_delay_s < self.login_delay_s:
            raise ValueError(
                f"login_max_delay_s = {self.login_max_delay_s:g} must be at least login_delay_s = {self.login_delay_s:g}"
            )
        return self

    @property
    def has_credentials(self) -> bool:
        return bool(self.tokens or self.users)


class StateSettings(_Section):
    """Where control state (PTZ, presets) is kept across restarts."""

    path: Path = Field(Path("~/.local/state/vergence/state.json"), description="state file (written atomically)")


class StereoSettings(_Section):
    """A derived side-by-side stream of two cameras, paired by capture time."""

    enabled: bool = Field(False, description="publish the stereo stream")
    id: str = Field("stereo", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="stream id of the pair")
    left: str = Field("cam0", description="camera id of the left eye")
    right: str = Field("cam1", description="camera id of the right eye")
    left_offset_px: tuple[int, int] = Field((0, 0), description="left eye calibration (dx, dy) in sensor pixels")
    right_offset_px: tuple[int, int] = Field((0, 0), description="right eye calibration (dx, dy) in sensor pixels")
    depth: bool = Field(False, description="also publish a colourized disparity stream of the pair")
    depth_id: str = Field("depth", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="stream id of the depth stream")
    depth_scale: float = Field(
        0.5, gt=0, le=1, description="the pair is matched at this fraction of its size, 0 < … ≤ 1"
    )
    depth_disparities: int = Field(
        64, ge=16, le=256, multiple_of=16, description="disparity search range at the matched size, 16 … 256, × 16"
    )
    calibration: Path | None = Field(
        None, description="stereo calibration (OpenCV YAML/XML or .npz: K1 D1 K2 D2 R T) to rectify the pair for depth"
    )


class ProcessingSettings(_Section):
    """Stabilization and plugins."""

    plugin_budget_ms: float = Field(
        8.0, gt=0, le=1000, description="a plugin runs inline only while every call fits this budget (ms), 0 < … ≤ 1000"
    )
    plugin_dir: Path | None = Field(
        None,
        description="the only directory plugins added at run time (API, commands) may come from, owned by the service "
        "user and writable by nobody else; unset (the default): no plugin can be added at run time, since a plugin is "
        "code that runs as vergence. Plugins in the config file are not affected",
    )


class TrackingSettings(_Section):
    """Following a target with the crop (`track` commands)."""

    method: Literal["template", "mil"] = Field(
        "template",
        description="template: correlation with the target's picture (about 0.5 ms a frame at 720p); mil: OpenCV's "
        "TrackerMIL (about 20-25 ms, loses the target when the view moves)",
    )
    point_box_pct: float = Field(
        12.0, gt=0, le=100, description="the side of the box a point stands for, % of the frame's height, 0 < … ≤ 100"
    )
    lost_after_s: float = Field(
        0.3, gt=0, le=10, description="a target not found for this long is lost (s), 0 < … ≤ 10"
    )
    draw: bool = Field(True, description="draw the tracked box on the stream (green: tracking, red: lost)")


class UdpOutputSettings(_Section):
    """H.264 to one UDP destination: RTP (with an SDP) or MPEG-TS, e.g. to a drone's ground station."""

    id: str = Field("udp0", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="output id: 1-32 of A-Z a-z 0-9 _ -")
    stream: str = Field("cam0", description="stream id to send")
    protocol: Literal["rtp", "mpegts"] = Field(
        "rtp", description="rtp (RTP/H.264, RFC 6184) or mpegts (MPEG-TS in UDP)"
    )
    host: str = Field("127.0.0.1", min_length=1, description="destination address or host name")
    port: int = Field(5600, ge=1, le=65535, description="destination UDP port, 1 … 65535 (RTCP goes to port + 1)")
    enabled: bool = Field(True, description="send from the start")
    packet_size: int = Field(
        1200, ge=200, le=1472, description="largest RTP datagram in bytes, 200 … 1472 (MPEG-TS sends 7 × 188 = 1316)"
    )
    pace_mbps: float = Field(
        20.0, ge=0, le=1000, description="spread each frame's datagrams at this rate (Mbit/s), 0 = send at once"
    )
    payload_type: int = Field(96, ge=96, le=127, description="RTP payload type, 96 … 127")
    sdp_path: Path | None = Field(None, description="also write the RTP session description to this file")


class RestreamSettings(_Section):
    """Push a stream's H.264 to a media server (RTMP or RTSP), reconnecting with backoff."""

    id: str = Field("push0", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="output id: 1-32 of A-Z a-z 0-9 _ -")
    stream: str = Field("cam0", description="stream id to push")
    url: str = Field(..., pattern=r"^(rtmps?|rtsps?)://", description="rtmp://, rtmps://, rtsp:// or rtsps:// URL")
    enabled: bool = Field(True, description="push from the start")
    retry_initial_s: float = Field(1.0, gt=0, le=60, description="first reconnect delay (s), doubled per failure")
    retry_max_s: float = Field(30.0, gt=0, le=600, description="longest reconnect delay (s)")


class WhipSettings(_Section):
    """Publish a stream's H.264 over WebRTC to a server that takes WHIP (an SFU: Janus, mediamtx, LiveKit, Cloudflare
    Stream), as encoded (no re-encode), reconnecting with backoff."""

    id: str = Field("whip0", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="output id: 1-32 of A-Z a-z 0-9 _ -")
    stream: str = Field("cam0", description="stream id to publish")
    url: str = Field(..., pattern=r"^https?://", description="the WHIP endpoint (http:// or https:// URL)")
    token: SecretStr | None = Field(None, max_length=4096, description="bearer token the endpoint asks for, if any")
    enabled: bool = Field(True, description="publish from the start")
    retry_initial_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay (s), doubled per failure")
    retry_max_s: float = Field(2.0, gt=0, le=600, description="longest reconnect delay (s)")
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="a session must connect within this time (s)")
    stall_timeout_s: float = Field(
        3.0, gt=0, le=120, description="a session whose server sends no receiver report for this long has failed (s)"
    )


class ZmqSettings(_Section):
    """ZeroMQ: frames on a PUB socket, commands on a REP socket."""

    enabled: bool = Field(False, description="open the sockets")
    pub: str = Field("tcp://127.0.0.1:5555", description="PUB endpoint to bind for frames (empty: no frames)")
    rep: str = Field("tcp://127.0.0.1:5556", description="REP endpoint to bind for commands (empty: no commands)")
    streams: list[str] = Field(default_factory=list, description="stream ids to publish (empty: every camera)")
    format: Literal["jpeg", "raw"] = Field("jpeg", description="jpeg, or raw BGR pixels with shape and dtype")
    fps: float = Field(0.0, ge=0, le=240, description="most frames per second per stream, 0 = every frame")
    hwm: int = Field(4, ge=1, le=10_000, description="messages queued per subscriber before ZeroMQ drops, 1 … 10000")
    curve_secret_key: SecretStr | None = Field(
        None, description="the server's CURVE secret key (Z85, 40 characters): encrypts both sockets"
    )
    curve_clients: list[str] = Field(
        default_factory=list,
        description="CURVE public keys (Z85) of the clients allowed in (empty: any client that knows the server's key)",
    )

    @model_validator(mode="after")
    def _check_curve(self) -> ZmqSettings:
        keys = [("curve_secret_key", self.curve_secret_key.get_secret_value())] if self.curve_secret_key else []
        keys += [(f"curve_clients[{i}]", key) for i, key in enumerate(self.curve_clients)]
        for name, key in keys:
            if not _Z85_KEY.match(key):
                raise ValueError(f"{name} is not a Z85 CURVE key (40 characters, as zmq.curve_keypair() makes)")
        if self.curve_clients and self.curve_secret_key is None:
            raise ValueError("curve_clients needs curve_secret_key")
        return self


class MqttSettings(_Section):
    """MQTT: JPEG frames, retained status, commands with replies and plugin results."""

    enabled: bool = Field(False, description="connect to the broker")
    host: str = Field("127.0.0.1", min_length=1, description="broker address")
    port: int = Field(1883, ge=1, le=65535, description="broker port, 1 … 65535")
    username: str | None = Field(None, description="broker user name")
    password: SecretStr | None = Field(None, description="broker password")
    client_id: str = Field("vergence", min_length=1, max_length=64, description="MQTT client id")
    topic: str = Field("vergence", pattern=r"^[^#+]{1,100}$", description="topic prefix, without wildcards")
    streams: list[str] = Field(
        default_factory=list, description="stream ids whose frames are published (empty: every camera)"
    )
    fps: float = Field(2.0, ge=0, le=60, description="frames per second per stream, 0 = no frames")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive (s)")


class TcpFeedSettings(_Section):
    """JPEG frames over plain TCP, each client asking for its own quality, size and rate."""

    enabled: bool = Field(False, description="listen for clients")
    host: str = Field("0.0.0.0", min_length=1, description="address to bind")
    port: int = Field(8100, ge=1, le=65535, description="TCP port, 1 … 65535")
    max_clients: int = Field(64, ge=1, le=1024, description="clients served at once, 1 … 1024")
    handshake_timeout_s: float = Field(5.0, gt=0, le=60, description="a client must send its request within this time")


class InboxSettings(_Section):
    """Commands read from an SQLite table (PiStreamer's `commandmodel` layout)."""

    enabled: bool = Field(False, description="poll the table")
    path: Path = Field(Path("~/.local/state/vergence/commands.db"), description="SQLite database file")
    table: str = Field("commandmodel", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="table name")
    poll_s: float = Field(0.1, gt=0, le=60, description="seconds between looks for pending rows")
    keep_s: float = Field(86_400.0, ge=0, le=31_536_000, description="finished rows older than this are deleted (s)")


class FifoSettings(_Section):
    """Commands written as `<type> <value>` lines into a named pipe."""

    enabled: bool = Field(False, description="create and read the pipe")
    path: Path | None = Field(
        None,
        description="named pipe, made when missing (default: $RUNTIME_DIRECTORY/commands under systemd, else "
        "$XDG_RUNTIME_DIR/vergence/commands, else ~/.local/state/vergence/commands)",
    )
    reply_path: Path | None = Field(None, description="append each reply as a JSON line here (a file or a pipe)")


class PiStreamerCompat(_Section):
    """PiStreamer's interface where it lived (its command names work on every transport anyway)."""

    fifo: Path | None = Field(None, description="PiStreamer's named pipe, e.g. /tmp/pistreamer, read besides [fifo]")

    @property
    def enabled(self) -> bool:
        return self.fifo is not None


class CameraWebStreamCompat(_Section):
    """camera-web-stream's interface: its TCP feed (`qhhh` request, `qhhh14s` header) and its MQTT topic."""

    tcp_port: int | None = Field(None, ge=1, le=65535, description="serve its TCP clients on this port (it used 7999)")
    host: str = Field("0.0.0.0", min_length=1, description="address the TCP port binds")
    max_clients: int = Field(16, ge=1, le=1024, description="TCP clients served at once")
    stream: str | None = Field(None, description="the stream its clients get (default: the first)")
    mqtt_topic: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=r"^[^#+]+$",
        description="publish base64 JPEGs here on the [mqtt] broker, e.g. pi_camera",
    )
    mqtt_fps: float = Field(10.0, gt=0, le=60, description="frames per second on mqtt_topic")

    @property
    def enabled(self) -> bool:
        return self.tcp_port is not None


class RpiCameraStreamingCompat(_Section):
    """RPI-CameraStreaming-for-multiple-users' interface: single-part JPEGs on PUB, its requests on REP, its ROI file."""

    pub: str | None = Field(None, description="PUB endpoint its viewers subscribe to, e.g. tcp://*:5555")
    rep: str | None = Field(None, description="REP endpoint for its requests, e.g. tcp://*:5558")
    roi_file: Path | None = Field(None, description="its ROI file, read at start and written by SaveROIs")
    stream: str | None = Field(None, description="the stream it publishes and its requests act on (default: the first)")

    @property
    def enabled(self) -> bool:
        return self.pub is not None or self.rep is not None


class PreviewSettings(_Section):
    """A window on the device's own display showing one stream (`vergence serve --preview`): FFmpeg's player fed the
    stream's pictures as the encoders get them (no encode at all), under X11, Wayland or a DRM/KMS console."""

    enabled: bool = Field(False, description="open the window at start (`vergence serve --preview`)")
    stream: str | None = Field(None, description="the stream it shows (default: the first)")
    fullscreen: bool = Field(False, description="fill the screen (on a console without a desktop, say)")
    player: str = Field("ffplay", min_length=1, description="the ffplay command (Debian and Raspberry Pi OS: ffmpeg)")


class RtspSettings(_Section):
    """An RTSP server (`rtsp://HOST:8554/<stream>`) on GStreamer's gst-rtsp-server, for NVRs, VLC and ground software:
    each stream's own H.264 (no re-encode) over RTP/UDP or TCP-interleaved, viewers as in [auth]."""

    enabled: bool = Field(False, description="serve RTSP")
    host: str = Field("0.0.0.0", min_length=1, description="address to bind")
    port: int = Field(8554, ge=1, le=65535, description="TCP port, 1 … 65535")
    streams: list[str] = Field(default_factory=list, description="streams served, each at /<stream> (empty: all)")
    python: str = Field(
        "/usr/bin/python3",
        min_length=1,
        description="the system Python that has GStreamer's bindings (python3-gi, gir1.2-gst-rtsp-server-1.0)",
    )


class FoxgloveSettings(_Section):
    """A Foxglove WebSocket server (the `foxglove-sdk` package) for Foxglove and other robotics tools: every stream as
    `foxglove.CompressedVideo` (its own H.264) and `foxglove.CompressedImage` (JPEG), the calibration, PTZ and tracking
    state, and PTZ, track and every other command back in (services, or JSON published on `/command`)."""

    enabled: bool = Field(False, description="serve the Foxglove WebSocket protocol")
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="address to bind; the protocol has no credentials, so anyone who reaches it can watch (and command, "
        "with `commands`): loopback by default",
    )
    port: int = Field(8765, ge=1, le=65535, description="TCP port, 1 … 65535")
    streams: list[str] = Field(default_factory=list, description="streams published (empty: all)")
    commands: bool = Field(True, description="take commands from Foxglove clients (services and /command)")
    unauthenticated: bool = Field(
        False,
        description="with [auth] set, bind a non-loopback host anyway: everyone who reaches the port may watch and "
        "(with `commands`) command, without credentials",
    )


class Ros2Settings(_Section):
    """A ROS 2 node: each camera as sensor_msgs/CompressedImage and CameraInfo stamped with the capture time, the stereo
    pair as left/right with one stamp, and a command topic (std_msgs/String) onto the one command model."""

    enabled: bool = Field(False, description="run the ROS 2 node")
    python: str = Field(
        "python3",
        min_length=1,
        description="the Python that has rclpy, sensor_msgs and std_msgs (on a robot: the system's, with ROS sourced)",
    )
    node: str = Field("vergence", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$", description="the node's name")
    namespace: str = Field("", pattern=r"^(/[A-Za-z][A-Za-z0-9_]*)*$", description="the node's namespace (/robot)")
    streams: list[str] = Field(default_factory=list, description="streams published (empty: every camera and the pair)")
    commands: bool = Field(True, description="take commands on `command_topic`")
    command_topic: str = Field(
        "vergence/command",
        pattern=r"^/?[A-Za-z][A-Za-z0-9_/]*$",
        description="std_msgs/String: a command, JSON or text",
    )


class CompatSettings(_Section):
    """The interfaces of the projects vergence replaces, each where it lived; all off by default (docs/migrating.md)."""

    pi_h264_to_browser: bool = Field(
        False, description="its pages' sockets: video /ws/, /cam0/, /cam1/, its X:/Y:/Z: crop messages, /ptz/"
    )
    pi_h264_to_browser_pages: Path | None = Field(
        None,
        description="its pages' folder (web/, with jmuxer.min.js), served at /compat/ with $port, $fps, $width, … "
        "filled in as its server did",
    )
    pistreamer: PiStreamerCompat = Field(default_factory=PiStreamerCompat)
    camera_web_stream: CameraWebStreamCompat = Field(default_factory=CameraWebStreamCompat)
    rpi_camerastreaming: RpiCameraStreamingCompat = Field(default_factory=RpiCameraStreamingCompat)

    @model_validator(mode="after")
    def _check_pages(self) -> CompatSettings:
        pages = self.pi_h264_to_browser_pages
        if pages is not None:
            if not self.pi_h264_to_browser:
                raise ValueError("pi_h264_to_browser_pages needs pi_h264_to_browser = true (the pages' sockets)")
            if not pages.expanduser().is_dir():
                raise ValueError(f"pi_h264_to_browser_pages: {pages} is not a folder")
        return self


class IceServerSettings(_Section):
    """One STUN or TURN server a WebRTC peer may use (none by default: vergence never calls outside on its own)."""

    urls: list[str] = Field(..., min_length=1, description="stun:host:port, turn:host:port or turns:host:port URLs")
    username: str | None = Field(None, description="TURN user name")
    credential: SecretStr | None = Field(None, description="TURN password")

    @model_validator(mode="after")
    def _check_urls(self) -> IceServerSettings:
        for url in self.urls:
            if not re.match(r"^(stun|turns?):[^\s]+$", url):
                raise ValueError(f"{url!r} is not a stun:, turn: or turns: URL")
        return self


class WebRtcSettings(_Section):
    """WebRTC viewing: the stream's own H.264 sent to every peer (no encode per peer), WHEP-style signalling."""

    enabled: bool = Field(True, description="answer offers at POST /api/webrtc/{stream}")
    ice_servers: list[IceServerSettings] = Field(
        default_factory=list, description="STUN/TURN servers for peers behind NAT (empty: host candidates only)"
    )
    max_peers: int = Field(32, ge=1, le=512, description="peers served at once, 1 … 512")
    max_peers_per_client: int = Field(
        4, ge=1, le=512, description="peers one client address may hold at once, 1 … 512 (the rest get 429)"
    )
    connect_timeout_s: float = Field(15.0, gt=0, le=300, description="a peer not connected by then is dropped (s)")
    stall_timeout_s: float = Field(
        10.0, gt=0, le=300, description="a connected peer that sends no RTCP report for this long is dropped (s)"
    )


class MediaSettings(_Section):
    """Where photos (and recordings) are written."""

    dir: Path = Field(
        Path("~/vergence-media"), description="directory for photos and recordings (created when missing)"
    )
    photo_dirs: list[Path] = Field(
        default_factory=list,
        description="directories a photo may be written into by path (PiStreamer's `take_photo /mnt/sd/DCIM/x.jpg`); "
        "none by default: photos go to `dir` by name",
    )


class RecordingSettings(_Section):
    """Recordings (MP4 or MCAP segments in [media] dir), the pre-event buffer behind clips, and the free-space guard."""

    format: Literal["mp4", "mcap"] = Field(
        "mp4",
        description="mp4: fragmented MP4; mcap: MCAP (foxglove.CompressedVideo beside PTZ, tracking, plugin results "
        "and GPS on their own channels; needs foxglove-sdk)",
    )
    segment_mb: float = Field(
        125.0, gt=0, le=65536, description="a new segment starts at the first keyframe after this many MB, > 0"
    )
    segment_s: float = Field(
        0.0, ge=0, le=86400, description="… or after this many seconds, 0 … 86400 (0: roll by size only)"
    )
    min_free_mb: float = Field(
        256.0, ge=0, description="refuse to start, and stop with an error, when the disk has less free space (MB)"
    )
    pre_event_s: float = Field(
        0.0,
        ge=0,
        le=300,
        description="seconds of encoded video each camera keeps for clips, 0 … 300 (0: off; > 0 keeps its H.264 encoder running)",
    )
    post_event_s: float = Field(10.0, ge=0, le=3600, description="seconds a clip records after its trigger, 0 … 3600")
    clip_triggers: list[str] = Field(
        default_factory=list,
        description='plugin results that trigger a clip: "plugin" (a result with a true `trigger`) or "plugin:key"',
    )

    @model_validator(mode="after")
    def _check_triggers(self) -> RecordingSettings:
        for trigger in self.clip_triggers:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}(:[A-Za-z_][A-Za-z0-9_]*)?", trigger):
                raise ValueError(f'clip_triggers: {trigger!r} is not "plugin" or "plugin:key"')
        return self


class Settings(_Section):
    """All of vergence's configuration."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    cameras: list[CameraSettings] = Field(default_factory=lambda: [CameraSettings()], min_length=1)
    h264: H264Settings = Field(default_factory=H264Settings)
    jpeg: JpegSettings = Field(default_factory=JpegSettings)
    hub: HubSettings = Field(default_factory=HubSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    stereo: StereoSettings = Field(default_factory=StereoSettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    udp: list[UdpOutputSettings] = Field(default_factory=list, description="RTP / MPEG-TS UDP outputs")
    restream: list[RestreamSettings] = Field(default_factory=list, description="pushes to RTMP / RTSP servers")
    whip: list[WhipSettings] = Field(default_factory=list, description="WebRTC publishes to WHIP endpoints")
    zmq: ZmqSettings = Field(default_factory=ZmqSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    tcp: TcpFeedSettings = Field(default_factory=TcpFeedSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    fifo: FifoSettings = Field(default_factory=FifoSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    webrtc: WebRtcSettings = Field(default_factory=WebRtcSettings)
    compat: CompatSettings = Field(default_factory=CompatSettings)
    preview: PreviewSettings = Field(default_factory=PreviewSettings)
    rtsp: RtspSettings = Field(default_factory=RtspSettings)
    foxglove: FoxgloveSettings = Field(default_factory=FoxgloveSettings)
    ros2: Ros2Settings = Field(default_factory=Ros2Settings)

    @model_validator(mode="after")
    def _check_cameras(self) -> Settings:
        ids = [camera.id for camera in self.cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}")
        if self.stereo.depth and not self.stereo.enabled:
            raise ValueError("stereo.depth needs stereo.enabled = true")
        if self.stereo.enabled:
            by_id = {camera.id: camera for camera in self.cameras}
            for side in ("left", "right"):
                if getattr(self.stereo, side) not in by_id:
                    raise ValueError(
                        f"stereo.{side} = {getattr(self.stereo, side)!r} is not a camera id ({', '.join(ids)})"
                    )
            left, right = by_id[self.stereo.left], by_id[self.stereo.right]
            if left.id == right.id or left.size != right.size or left.fps != right.fps:
                raise ValueError("stereo needs two different cameras of the same size and frame rate")
            if self.stereo.id in by_id:
                raise ValueError(f"stereo.id {self.stereo.id!r} is already a camera id")
            if self.stereo.depth and self.stereo.depth_id in (*by_id, self.stereo.id):
                raise ValueError(f"stereo.depth_id {self.stereo.depth_id!r} is already a stream id")
        output_ids = [output.id for section in (self.udp, self.restream, self.whip) for output in section]
        if len(set(output_ids)) != len(output_ids):
            raise ValueError(f"udp, restream and whip ids must be unique, got {output_ids}")
        known = self.stream_ids()
        wanted = [(f"udp[{i}].stream", output.stream) for i, output in enumerate(self.udp)]
        wanted += [(f"restream[{i}].stream", output.stream) for i, output in enumerate(self.restream)]
        wanted += [(f"whip[{i}].stream", output.stream) for i, output in enumerate(self.whip)]
        wanted += [
            (f"{section}.streams", stream)
            for section in ("zmq", "mqtt", "rtsp", "foxglove", "ros2")
            for stream in getattr(self, section).streams
        ]
        if self.compat.camera_web_stream.mqtt_topic is not None and not self.mqtt.enabled:
            raise ValueError("compat.camera_web_stream.mqtt_topic needs [mqtt] enabled = true (its broker)")
        if self.compat.rpi_camerastreaming.stream is not None:
            wanted.append(("compat.rpi_camerastreaming.stream", self.compat.rpi_camerastreaming.stream))
        if self.preview.stream is not None:
            wanted.append(("preview.stream", self.preview.stream))
        if self.compat.camera_web_stream.stream is not None:
            wanted.append(("compat.camera_web_stream.stream", self.compat.camera_web_stream.stream))
        for key, stream in wanted:
            if stream not in known:
                raise ValueError(f"{key} = {stream!r} is not a stream id ({', '.join(known)})")
        return self

    def stream_ids(self) -> list[str]:
        """Every stream id the server will publish: cameras, then the stereo pair and depth."""
        ids = [camera.id for camera in self.cameras]
        if self.stereo.enabled:
            ids.append(self.stereo.id)
            if self.stereo.depth:
                ids.append(self.stereo.depth_id)
        return ids


class _Environment(BaseSettings):
    """Collects VERGENCE_* variables as raw values; Settings validates them with the other layers."""

    model_config = SettingsConfigDict(env_prefix="VERGENCE_", env_nested_delimiter="__", extra="ignore")
    server: dict[str, Any] = {}
    auth: dict[str, Any] = {}
    cameras: list[dict[str, Any]] | None = None
    h264: dict[str, Any] = {}
    jpeg: dict[str, Any] = {}
    hub: dict[str, Any] = {}
    state: dict[str, Any] = {}
    stereo: dict[str, Any] = {}
    processing: dict[str, Any] = {}
    tracking: dict[str, Any] = {}
    udp: list[dict[str, Any]] | None = None
    restream: list[dict[str, Any]] | None = None
    whip: list[dict[str, Any]] | None = None
    zmq: dict[str, Any] = {}
    mqtt: dict[str, Any] = {}
    tcp: dict[str, Any] = {}
    inbox: dict[str, Any] = {}
    fifo: dict[str, Any] = {}
    media: dict[str, Any] = {}
    recording: dict[str, Any] = {}
    webrtc: dict[str, Any] = {}
    preview: dict[str, Any] = {}
    rtsp: dict[str, Any] = {}
    foxglove: dict[str, Any] = {}
    ros2: dict[str, Any] = {}


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err


def load_settings(
    config_file: Path | None = None,
    camera_flags: dict[str, Any] | None = None,
    server_flags: dict[str, Any] | None = None,
    section_flags: dict[str, dict[str, Any]] | None = None,
) -> Settings:
    """Build Settings from the file, the environment and the flags (later wins); raise ConfigError naming the key."""
    data: dict[str, Any] = _read_toml(config_file) if config_file else {}
    try:
        env = _Environment()
    except ValidationError as err:
        raise ConfigError(_describe(err, prefix="VERGENCE_")) from err
    env_layer = {key: _json_values(value) for key, value in env.model_dump().items() if value not in ({}, None)}
    data = _merge(data, env_layer)
    if server_flags:
        data = _merge(data, {"server": server_flags})
    if section_flags:
        data = _merge(data, section_flags)  # {"preview": {"enabled": True}} for --preview
    if camera_flags:
        cameras = [dict(camera) for camera in data.get("cameras") or [{}]]
        cameras[0] = {**cameras[0], **camera_flags}
        data["cameras"] = cameras
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from err


def _json_values(section: Any) -> Any:
    """Decode JSON lists and tables given to one key of a section (`VERGENCE_ZMQ__STREAMS='["cam0"]'`); text that is
    not JSON stays text, for the validator to name."""
    if not isinstance(section, dict):
        return section
    decoded = dict(section)
    for key, value in section.items():
        if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                decoded[key] = json.loads(value)
    return decoded


_SECRET_KEYS = {"token", "password", "credential"}


def _describe(err: ValidationError, prefix: str = "") -> str:
    lines = []
    for error in err.errors():
        key = _key_name(error["loc"])
        allowed = _allowed(error["loc"])
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        if _SECRET_KEYS & {str(part) for part in error["loc"]}:
            shown = ""  # never echo a secret, even a bad one
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"invalid config: {prefix}{key}{shown}: {message}" + (f" (allowed: {allowed})" if allowed else ""))
    return "\n".join(lines)


def _key_name(loc: tuple[Any, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _allowed(loc: tuple[Any, ...]) -> str | None:
    """Return the description of the field at `loc`, which states its allowed values."""
    model: Any = Settings
    description = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return description
        field = fields[part]
        description = field.description
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        model = next((arg for arg in args if isinstance(arg, type) and issubclass(arg, BaseModel)), annotation)
    return description
