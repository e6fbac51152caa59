"""The `vergence` command: serve, cameras, ctl, install-service, hash-password, bench."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vergence.config import load_settings
from vergence.errors import ConfigError

SHUTDOWN_GRACE_S = 2
GIL_SWITCH_INTERVAL_S = 0.0005
CTL_TIMEOUT_S = 10.0

app = typer.Typer(help="Low-latency camera streaming with live digital pan/tilt/zoom.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks that print tables (they come with a checkout of vergence: bench/).", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")


@bench_app.callback()
def bench_group() -> None:
    # A bench ended by SIGTERM (timeout, CI, a supervisor) must still stop the servers and viewer processes it started:
    # Python's default would end it at once and skip their clean-up, leaving them running.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


BENCH_NEEDS_CHECKOUT = (
    "vergence bench: the benchmarks come with a checkout of vergence, not with the installed package: "
    "git clone vergence's repository, then in it `pip install -e '.[test]'` (or `bash scripts/test.sh`)"
)


def _checkout_root() -> Path | None:
    """The checkout this vergence runs from (an editable install: src/vergence/ in it), or None when installed."""
    import vergence

    root = Path(vergence.__file__).resolve().parents[2]
    if (root / "bench" / "__init__.py").is_file() and (root / "tests" / "support" / "__init__.py").is_file():
        return root
    return None


def _bench(name: str) -> Any:
    """`bench.<name>` of the checkout: the benchmarks live outside the package, beside the tests whose fixtures they
    share (tests/support), so the checkout's root goes first on sys.path. Exit 2 when there is no checkout."""
    import importlib

    root = _checkout_root()
    if root is None:
        typer.echo(BENCH_NEEDS_CHECKOUT, err=True)
        raise typer.Exit(2)
    if sys.path[:1] != [str(root)]:
        sys.path.insert(0, str(root))
    return importlib.import_module(f"bench.{name}")


@app.command()
def serve(
    source: Annotated[str | None, typer.Option(help="testpattern, or a file, URL or /dev/videoN")] = None,
    size: Annotated[str | None, typer.Option(help="picture size WIDTHxHEIGHT, e.g. 1280x720")] = None,
    fps: Annotated[float | None, typer.Option(help="frames per second")] = None,
    host: Annotated[str | None, typer.Option(help="address to bind (default 0.0.0.0)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000)")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file")] = None,
    tls: Annotated[
        str | None,
        typer.Option(metavar="[off|auto]", help="auto: https with a self-signed certificate made once and kept"),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="https with this PEM certificate (chain); needs --tls-key")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="the PEM private key of --tls-cert")] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="also show the stream in a window on this machine's display ([preview])")
    ] = False,
) -> None:
    """Serve the cameras: page at http(s)://HOST:PORT/, API docs at /docs."""
    camera_flags: dict[str, Any] = {
        k: v for k, v in {"source": source, "size": size, "fps": fps}.items() if v is not None
    }
    given = {"host": host, "port": port, "tls": tls, "tls_cert": tls_cert, "tls_key": tls_key}
    server_flags: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    try:
        settings = load_settings(
            config, camera_flags, server_flags, {"preview": {"enabled": True}} if preview else None
        )
    except ConfigError as err:
        typer.echo(f"vergence: {err}", err=True)
        raise typer.Exit(2) from None

    import uvicorn

    # A thread leaving C code (an encoder) waits for the GIL up to this long while another thread holds it; the 5 ms
    # default adds whole milliseconds to a frame's way through. 0.5 ms costs little and keeps hand-offs prompt.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    from vergence.app import create_app
    from vergence.connections import ConnectionGuard, guarded, raise_file_limit
    from vergence.outputs.ws_direct import DirectWebSocketProtocol

    direct = settings.server.ws == "websockets-sansio" and settings.server.direct_send

    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from vergence.errors import REDACTING_FILTER

    for handler in logging.getLogger().handlers:
        handler.addFilter(REDACTING_FILTER)  # whatever a library logs, URLs lose their secrets
    tls_files = None
    if settings.server.https:
        from vergence.tls import certificate_files

        try:
            tls_files = certificate_files(settings.server)
        except ConfigError as err:
            typer.echo(f"vergence: {err}", err=True)
            raise typer.Exit(2) from None
    scheme = "https" if tls_files else "http"
    shown_host = "localhost" if settings.server.host in ("0.0.0.0", "::", "127.0.0.1") else settings.server.host
    typer.echo(f"vergence: page at {scheme}://{shown_host}:{settings.server.port}/  API docs at /docs", err=True)
    app = create_app(settings)
    server_config = uvicorn.Config(
        app,
        ssl_certfile=str(tls_files[0]) if tls_files else None,
        ssl_keyfile=str(tls_files[1]) if tls_files else None,
        # The default implementation, with a direct send for video packets built once for every viewer (ws_direct.py).
        ws=DirectWebSocketProtocol if direct else settings.server.ws,
        # Browsers offer permessage-deflate and uvicorn accepts by default: every video message was then deflated once
        # per viewer (H.264 and JPEG do not compress), 1.6 % of a core per 720p30 viewer (docs/benchmarks.md, fan-out).
        ws_per_message_deflate=False,
        ws_max_size=settings.server.max_body_kb * 1024,  # a WebSocket message is held whole, as a body would be
        log_level=settings.server.log_level,
        access_log=False,
        # uvicorn would take X-Forwarded-For from 127.0.0.1 at its word and rewrite the client address before vergence
        # sees it; which proxies to believe is [auth] trusted_proxies, decided in one place (auth.py).
        proxy_headers=False,
        # MJPEG responses never end by themselves: without a bound, one open viewer holds up shutdown forever.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    # Every connection is admitted by the guard (caps per client and in total, a deadline for request headers).
    server_config.load()
    guard = ConnectionGuard(settings.server, settings.auth.trusted_proxies, raise_file_limit())
    server_config.http_protocol_class = guarded(server_config.http_protocol_class, guard)
    app.state.connections = guard
    try:
        sock = listen_socket(settings.server.host, settings.server.port, settings.server.send_buffer_bytes)
    except OSError as err:
        typer.echo(f"vergence: cannot listen on {settings.server.host}:{settings.server.port}: {err}", err=True)
        raise typer.Exit(1) from None
    server = uvicorn.Server(server_config)
    # What the local inboxes' `kill` (PiStreamer's) calls: uvicorn's own clean shutdown, then exit status 0.
    app.state.stop_serving = lambda: setattr(server, "should_exit", True)
    server.run(sockets=[sock])


def listen_socket(host: str, port: int, send_buffer_bytes: int) -> socket.socket:
    """Bind the listening socket; accepted connections inherit its send buffer size.

    A small fixed send buffer keeps a stalled viewer's backlog in the hub, where its policy drops to the next keyframe,
    instead of seconds of stale video queued in the kernel (Linux autotuning grows it to megabytes).
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@app.command()
def cameras(
    config: Annotated[
        Path | None, typer.Option(help="TOML config file: the size, rate and tuning of its picamera2 cameras")
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(help="picture size WIDTHxHEIGHT for every camera (default: the config's, else 1280x720)"),
    ] = None,
    fps: Annotated[
        float | None, typer.Option(help="frames per second for every camera (default: the config's, else 30)")
    ] = None,
    frames: Annotated[int, typer.Option(min=0, help="frames to read from each camera (0: do not stream)")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """List the Raspberry Pi cameras, the sensor mode vergence takes from each, the H.264 encoder; stream a few frames."""
    import json
    import os

    from vergence.cameras import describe_cameras, flag_overrides, format_report

    try:
        settings = load_settings(config)
        overrides = flag_overrides(size, fps)
    except ConfigError as err:
        typer.echo(f"vergence cameras: {err}", err=True)
        raise typer.Exit(2) from None
    # libcamera logs every camera it registers and configures at INFO on stderr: keep its warnings and errors only.
    os.environ.setdefault("LIBCAMERA_LOG_LEVELS", "*:WARN")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    configured = [camera for camera in settings.cameras if camera.source == "picamera2"]
    report = describe_cameras(configured, settings.h264, overrides, frames)
    if json_out:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        typer.echo(format_report(report), nl=False)
    for problem in report.problems:
        typer.echo(f"vergence cameras: {problem}", err=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def commands() -> None:
    """Print every command: its JSON fields and its text form (the table of docs/protocol.md)."""
    from vergence.control.commands import command_table

    typer.echo(command_table(), nl=False)


@app.command(context_settings={"ignore_unknown_options": True})
def ctl(
    words: Annotated[
        list[str] | None, typer.Argument(help="a command line: zoom 2, zoom in, bitrate 2500, photo …")
    ] = None,
    url: Annotated[str, typer.Option(envvar="VERGENCE_URL", help="the server to command")] = "http://127.0.0.1:8000",
    json_command: Annotated[
        str | None, typer.Option("--json", help='the command as JSON instead: \'{"type": "zoom", "value": 2}\'')
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="VERGENCE_TOKEN", help="an operator token (better: the environment variable)")
    ] = None,
    cafile: Annotated[
        Path | None,
        typer.Option(
            envvar="VERGENCE_CAFILE",
            help="trust this PEM certificate for https, e.g. the server's own ~/.local/state/vergence/tls/cert.pem",
        ),
    ] = None,
) -> None:
    """Send one command to a running server and print its reply (exit 1 when refused). Commands: docs/protocol.md."""
    import json
    import ssl
    import urllib.error
    import urllib.request

    context = None
    if cafile is not None:
        try:
            context = ssl.create_default_context(cafile=str(cafile.expanduser()))
        except (OSError, ssl.SSLError) as err:
            typer.echo(f"vergence ctl: cannot trust {cafile}: {err}", err=True)
            raise typer.Exit(2) from None

    if json_command is not None:
        body, content_type = json_command.encode(), "application/json"
    elif words:
        body, content_type = " ".join(words).encode(), "text/plain"
    else:
        typer.echo(
            'vergence ctl: give a command, e.g. `vergence ctl zoom 2` or --json \'{"type": "status"}\'', err=True
        )
        raise typer.Exit(2)
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url.rstrip('/')}/api/commands", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=CTL_TIMEOUT_S, context=context) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as err:
        text = err.read().decode()  # a refused command: the reply says why
        if err.code in (401, 403) and '"ok"' not in text:  # refused at the door, not by the commander
            hint = "" if token else " (give an operator token: VERGENCE_TOKEN=… or --token)"
            typer.echo(f"vergence ctl: {url} refused: {_detail(text)}{hint}", err=True)
            raise typer.Exit(2) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        hint = ""
        if isinstance(reason, ssl.SSLCertVerificationError) and cafile is None:
            hint = " (a self-signed server? trust its certificate: --cafile or VERGENCE_CAFILE=<its tls_dir>/cert.pem)"
        typer.echo(f"vergence ctl: cannot reach {url}: {reason}{hint}", err=True)
        raise typer.Exit(2) from None
    try:
        reply = json.loads(text)
    except ValueError:
        typer.echo(f"vergence ctl: unexpected answer from {url}: {text[:200]}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(reply, indent=2))
    if not reply.get("ok"):
        raise typer.Exit(1)


def _detail(text: str) -> str:
    import json

    try:
        return str(json.loads(text)["detail"])
    except (ValueError, KeyError, TypeError):
        return text[:200]


@app.command("install-service")
def install_service(
    user: Annotated[
        str | None,
        typer.Option(help="run it as this user (default: who ran this, also behind sudo; never root unasked)"),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file for `vergence serve --config`")] = None,
    name: Annotated[str, typer.Option(help="service name")] = "vergence",
    output: Annotated[
        str | None, typer.Option(help="where to write the unit (default /etc/systemd/system/NAME.service; - prints it)")
    ] = None,
    enable: Annotated[
        bool, typer.Option(help="systemctl daemon-reload and enable --now (else the commands are printed)")
    ] = False,
    force: Annotated[bool, typer.Option(help="replace a different unit of the same name")] = False,
) -> None:
    """Write a systemd unit that runs `vergence serve` at boot as a user, restarting it when it fails."""
    import shlex

    from vergence import service

    try:
        unit = service.unit_name(name)
        account = service.service_user(user or service.invoking_user())
        if account.name == "root" and user != "root":
            raise ConfigError("refusing to run the service as root: give --user NAME (or --user root if you mean it)")
        config_path = config.expanduser().absolute() if config else None
        if config_path is not None and not config_path.is_file():
            raise ConfigError(f"--config: {config_path} is not a file")
        text = service.render_unit(
            name=unit,
            user=account,
            python=sys.executable,  # the interpreter of the environment vergence is installed in
            config=config_path,
            supplementary_groups=service.device_groups(),
        )
        if output == "-":
            typer.echo(text, nl=False)
            return
        path = Path(output).expanduser().absolute() if output else service.SYSTEM_UNIT_DIR / f"{unit}.service"
        written = service.write_unit(path, text, force=force)
    except ConfigError as err:
        typer.echo(f"vergence install-service: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"vergence: {'wrote' if written else 'unchanged:'} {path} (runs as {account.name})", err=True)
    if enable and service.can_enable(path):
        try:
            service.enable(unit)
        except ConfigError as err:
            typer.echo(f"vergence install-service: {err}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"vergence: {unit} is enabled and running; its log: journalctl -u {unit} -f", err=True)
        return
    if enable:
        typer.echo(
            f"vergence: not enabled: {path} is not in {service.SYSTEM_UNIT_DIR} or systemctl is missing", err=True
        )
    commands = "".join(f"\n  sudo {shlex.join(command)}" for command in service.enable_commands(unit))
    typer.echo(f"To start it now and at every boot:{commands}\nIts log: journalctl -u {unit} -f", err=True)


@app.command("hash-password")
def hash_password() -> None:
    """Print a salted scrypt hash of a password for `[[auth.users]] password`: asked for twice, or read from stdin.

    Never from the command line, which other users see in the process list and shells keep in their history.
    """
    import getpass

    from vergence import passwords

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            typer.echo("vergence hash-password: the two passwords differ", err=True)
            raise typer.Exit(2)
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")  # the first line, spaces and all
    if len(password) < passwords.MIN_PASSWORD_CHARS:
        typer.echo(
            f"vergence hash-password: a password needs {passwords.MIN_PASSWORD_CHARS} characters or more", err=True
        )
        raise typer.Exit(2)
    typer.echo(passwords.hash_password(password))


SCENE_HELP = "the test camera's scene: camera (as hard to encode as a real camera) or simple"


@bench_app.command("latency")
def bench_latency(
    seconds: Annotated[float, typer.Option(help="measuring time per player mode")] = 10.0,
    size: Annotated[str, typer.Option(help="picture size")] = "1280x720",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    players: Annotated[str, typer.Option(help="comma-separated player modes")] = "webrtc,webcodecs,mse,mjpeg",
    floor: Annotated[bool, typer.Option(help="also measure the bare floor pipeline")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
    check: Annotated[
        bool, typer.Option(help="exit 1 when a WebCodecs goal (p50, p95, ratio to the floor) fails")
    ] = False,
    scene: Annotated[str, typer.Option(help=SCENE_HELP)] = "camera",
) -> None:
    """Measure capture→decoded latency per player mode in headless Chromium, beside a bare floor pipeline."""
    _bench("latency").run(
        seconds=seconds,
        size=size,
        fps=fps,
        players=players.split(","),
        floor=floor,
        json_out=json_out,
        check=check,
        scene=scene,
    )


@bench_app.command("quality")
def bench_quality(
    sizes: Annotated[str, typer.Option(help="comma-separated picture sizes")] = "1280x720,1920x1080",
    bitrates: Annotated[
        str, typer.Option(help="comma-separated bitrates in bit/s to compare (default: vergence's for each size)")
    ] = "",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    seconds: Annotated[float, typer.Option(help="seconds of video per measurement")] = 10.0,
    scene: Annotated[str, typer.Option(help=SCENE_HELP)] = "camera",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
) -> None:
    """PSNR (mean, minimum), bitrate and largest frame of vergence's H.264 settings on the test camera's scene."""
    rates = [int(float(rate)) for rate in bitrates.split(",") if rate.strip()] or None
    _bench("quality").run(sizes.split(","), rates, fps=fps, seconds=seconds, scene=scene, json_out=json_out)


@bench_app.command("preview")
def bench_preview(
    seconds: Annotated[float, typer.Option(help="measuring time")] = 10.0,
    size: Annotated[str, typer.Option(help="picture size (and the virtual display's)")] = "1280x720",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
) -> None:
    """Capture→window latency of `serve --preview` on an Xvfb display (x11grab), and the server's and ffplay's CPU."""
    _bench("preview").run(seconds=seconds, size=size, fps=fps, json_out=json_out)


@bench_app.command("tracking")
def bench_tracking(
    seconds: Annotated[float, typer.Option(help="seconds per run")] = 10.0,
    size: Annotated[str, typer.Option(help="picture size")] = "1280x720",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
) -> None:
    """Tracking methods side by side on the test camera's moving target: cost per frame, error, losses."""
    _bench("tracking").run(seconds=seconds, size=size, fps=fps, json_out=json_out)


@bench_app.command("rtsp")
def bench_rtsp(
    seconds: Annotated[float, typer.Option(help="measuring time per client")] = 10.0,
    size: Annotated[str, typer.Option(help="picture size")] = "1280x720",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    scene: Annotated[str, typer.Option(help=SCENE_HELP)] = "camera",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
) -> None:
    """Capture→decoded latency over [rtsp] (GStreamer's rtspsrc, TCP and UDP) and its CPU against a WebSocket viewer."""
    _bench("rtsp").run(seconds=seconds, size=size, fps=fps, scene=scene, json_out=json_out)


@bench_app.command("whip")
def bench_whip(
    seconds: Annotated[float, typer.Option(help="measuring time per phase")] = 10.0,
    size: Annotated[str, typer.Option(help="picture size")] = "1280x720",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    scene: Annotated[str, typer.Option(help=SCENE_HELP)] = "camera",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
) -> None:
    """Server CPU publishing over WHIP to Janus (started by the bench) against serving one WebSocket viewer."""
    _bench("whip").run(seconds=seconds, size=size, fps=fps, scene=scene, json_out=json_out)


@bench_app.command("dual")
def bench_dual(
    seconds: Annotated[float, typer.Option(help="measuring time")] = 20.0,
    size: Annotated[str, typer.Option(help="picture size of each camera")] = "1280x720",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    viewers: Annotated[int, typer.Option(help="WebSocket viewers per camera")] = 2,
    source: Annotated[str, typer.Option(help="testpattern, or picamera2 (real cameras on a Pi, else the fake)")] = (
        "testpattern"
    ),
    model: Annotated[str, typer.Option(help="the fake libcamera's sensor for picamera2: imx219, imx477, imx708")] = (
        "imx708"
    ),
    fake: Annotated[
        bool, typer.Option("--fake/--no-fake", help="picamera2 on the fake libcamera (off: real cameras)")
    ] = (True),
) -> None:
    """Server CPU with two cameras (test pattern or picamera2), PTZ moving on both and several viewers each."""
    _bench("dual").run(seconds=seconds, size=size, fps=fps, viewers=viewers, source=source, model=model, fake=fake)


@bench_app.command("webrtc")
def bench_webrtc(
    seconds: Annotated[float, typer.Option(help="measuring time for each phase")] = 20.0,
    size: Annotated[str, typer.Option(help="picture size")] = "1280x720",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    peers: Annotated[int, typer.Option(help="WebRTC peers at once, and encodes to compare with")] = 10,
    decode: Annotated[bool, typer.Option(help="decode on the bench's peers (default: count pictures only)")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
    scene: Annotated[str, typer.Option(help=SCENE_HELP)] = "camera",
) -> None:
    """Server CPU for N WebRTC peers (the stream's H.264 passed through) against N H.264 encodes of the same frames."""
    results = _bench("webrtc").run(
        seconds=seconds, size=size, fps=fps, peers=peers, decode=decode, json_out=json_out, scene=scene
    )
    if not results["pass"]:
        raise typer.Exit(1)


@bench_app.command("fanout")
def bench_fanout(
    viewers: Annotated[int, typer.Option(help="WebSocket viewers of one stream")] = 500,
    size: Annotated[str, typer.Option(help="picture size")] = "1280x720",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    seconds: Annotated[float, typer.Option(help="measuring time per phase")] = 20.0,
    client_processes: Annotated[int, typer.Option(help="processes the viewers are spread over")] = 4,
    stalled: Annotated[int, typer.Option(help="extra viewers that never read, in a phase of their own")] = 1,
    reference: Annotated[
        bool, typer.Option(help="also measure a bare uvicorn WebSocket fan-out of the same message size and rate")
    ] = True,
    deflate_offer: Annotated[
        bool, typer.Option(help="viewers offer permessage-deflate in their handshake, as browsers do")
    ] = True,
    viewer_poll_ms: Annotated[
        float, typer.Option(help="viewer processes read every N ms instead of as data arrives (0: as it arrives)")
    ] = 0.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
    check: Annotated[
        bool, typer.Option(help="exit 1 unless every viewer gets ≥ 29 fps with the server under 50 % of one core")
    ] = False,
    scene: Annotated[str, typer.Option(help=SCENE_HELP)] = "camera",
) -> None:
    """Server CPU and every viewer's frame rate for N WebSocket viewers of one stream, beside a bare uvicorn fan-out."""
    results = _bench("fanout").run(
        viewers=viewers,
        size=size,
        fps=fps,
        seconds=seconds,
        client_processes=client_processes,
        stalled=stalled,
        reference=reference,
        json_out=json_out,
        offer_deflate=deflate_offer,
        viewer_poll_ms=viewer_poll_ms,
        scene=scene,
    )
    if check and not results["passed"]:
        raise typer.Exit(1)


@bench_app.command("still")
def bench_still(
    stills: Annotated[int, typer.Option(help="full-resolution stills to take")] = 10,
    size: Annotated[str, typer.Option(help="video size while taking them")] = "1280x720",
    fps: Annotated[float, typer.Option(help="video frames per second")] = 30.0,
    model: Annotated[str, typer.Option(help="sensor of the fake picamera2: imx219, imx477, imx708")] = "imx708",
    fake: Annotated[
        bool, typer.Option(help="use the fake picamera2 of the source tree (--no-fake: the real camera)")
    ] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
) -> None:
    """Live-stream stall of full-resolution stills from a picamera2 camera (the fake one unless --no-fake)."""
    _bench("still").run(stills=stills, size=size, fps=fps, model=model, fake=fake, json_out=json_out)


@bench_app.command("soak")
def bench_soak(
    minutes: Annotated[float, typer.Option(help="how long to run")] = 10.0,
    size: Annotated[str, typer.Option(help="picture size")] = "1280x720",
    fps: Annotated[float, typer.Option(help="frames per second")] = 30.0,
    viewers: Annotated[int, typer.Option(help="steady WebSocket viewers")] = 4,
    sample_s: Annotated[float, typer.Option(help="seconds between samples")] = 10.0,
    warmup_s: Annotated[
        float, typer.Option(help="the load runs this long, stops, and the settled server is the baseline")
    ] = 60.0,
    rss_bound_mb: Annotated[float, typer.Option(help="most RSS growth allowed over the baseline (MB)")] = 32.0,
    churn_per_s: Annotated[float, typer.Option(help="viewers arriving and leaving per second")] = 20.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
    scene: Annotated[str, typer.Option(help=SCENE_HELP)] = "camera",
) -> None:
    """A server under steady viewers, PTZ, churn and recordings for minutes: do fds, tasks, threads or RSS grow?"""
    results = _bench("soak").run(
        minutes=minutes,
        size=size,
        fps=fps,
        viewers=viewers,
        sample_s=sample_s,
        warmup_s=warmup_s,
        rss_bound_mb=rss_bound_mb,
        churn_per_s=churn_per_s,
        json_out=json_out,
        scene=scene,
    )
    if not results["pass"]:
        raise typer.Exit(1)


def main() -> None:
    app()
