"""Finding 1 (high): any local account ran code as the vergence user by adding a plugin from a path it wrote (with no
[auth], every loopback client is an operator). Plugins added at run time now come only from `[processing] plugin_dir`,
a directory the service user owns and nobody else can write, or are vergence's own modules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.controlws import command

PLUGIN = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")  # what an attacker's plugin would do: run as the service, at import


def process(frame, ctx):
    pass
"""


def plugin_file(folder: Path, name: str, marker: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(PLUGIN.format(marker=str(marker)))
    path.chmod(0o644)
    return path


def add(server: Any, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/api/cameras/cam0/plugins", json=body, timeout=10)


def test_a_plugin_file_from_anywhere_is_refused_by_default_and_never_runs(vergence_server, tmp_path):
    server = vergence_server("--size", "320x240")  # no [auth]: this loopback client is an operator
    marker = tmp_path / "ran"
    shared = tmp_path / "tmp-like"  # as /tmp would be: any account can write a file there
    path = plugin_file(shared, "evil", marker)
    shared.chmod(0o1777)
    response = add(server, {"path": str(path)})
    assert response.status_code == 403, response.text
    refused = response.json()
    assert (refused["ok"], refused["command"], refused["code"]) == (False, "plugin", "forbidden"), refused
    assert "plugin_dir" in refused["detail"] and refused["error"] == refused["detail"]
    assert not marker.exists()
    assert add(server, {"module": "json"}).status_code == 403  # any importable module: refused too
    # The same command from the other transports: a text line over REST, and the control WebSocket.
    line = f"plugin cam0 add evil path={path}"
    response = httpx.post(f"{server.url}/api/commands", content=line, headers={"Content-Type": "text/plain"})
    assert response.status_code == 403 and response.json()["code"] == "forbidden", response.text
    with connect(f"{server.ws_url}/ws/control", open_timeout=10) as control:
        control.recv(timeout=10)  # the state
        reply = command(control, {"type": "plugin", "stream": "cam0", "action": "add", "path": str(path)})
        assert (reply["ok"], reply["code"]) == (False, "forbidden") and "plugin_dir" in reply["error"], reply
        reply = command(control, "plugin add sneaky module=json", "m")
        assert (reply["ok"], reply["code"]) == (False, "forbidden"), reply
    assert not marker.exists()
    names = {plugin["name"] for plugin in httpx.get(f"{server.url}/api/cameras/cam0/plugins").json()}
    assert names.isdisjoint({"evil", "json", "sneaky"}), names
    assert add(server, {"module": "vergence.plugins.edges"}).status_code == 201  # vergence's own: allowed


def test_only_files_the_service_user_alone_can_write_in_plugin_dir_are_loaded(vergence_server, tmp_path):
    plugin_dir = tmp_path / "plugins"
    marker = tmp_path / "ran"
    good = plugin_file(plugin_dir, "good", tmp_path / "good-ran")
    plugin_dir.chmod(0o755)
    foreign = plugin_file(plugin_dir, "foreign", marker)
    os.chown(foreign, 65534, 65534)  # another account's file (nobody): it could rewrite it at will
    writable = plugin_file(plugin_dir, "writable", marker)
    writable.chmod(0o666)
    outside = plugin_file(tmp_path / "elsewhere", "outside", marker)
    (plugin_dir / "link.py").symlink_to(outside)
    server = vergence_server("--size", "320x240", env={"VERGENCE_PROCESSING__PLUGIN_DIR": str(plugin_dir)})

    for body in (
        {"path": str(foreign)},
        {"path": "writable.py"},
        {"path": str(outside)},
        {"path": "link.py"},
        {"path": "../elsewhere/outside.py"},
    ):
        response = add(server, body)
        assert response.status_code == 403, (body, response.text)
    assert not marker.exists()
    response = add(server, {"path": "good.py"})
    assert response.status_code == 201, response.text
    assert (tmp_path / "good-ran").read_text() == "ran"

    plugin_dir.chmod(0o777)  # the directory becomes writable by others: a file could be swapped in
    assert add(server, {"name": "again", "path": str(good)}).status_code == 403
