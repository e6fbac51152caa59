"""Finding 7: behind a reverse proxy on the same machine every request arrives from 127.0.0.1 with a loopback Host, so
the loopback-operator rule gave the whole network the operator role. A request that says it was forwarded is now never
the loopback operator, unless it comes from a proxy listed in `[auth] trusted_proxies`, and then the client that proxy
names decides."""

from __future__ import annotations

import httpx
import pytest

MOVE = {"zoom": 2.0}


def put_ptz(server, headers: dict[str, str]) -> int:
    return httpx.put(f"{server.url}/api/cameras/cam0/ptz", json=MOVE, headers=headers, timeout=10).status_code


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "192.0.2.7"},
        {"Forwarded": "for=192.0.2.7;proto=http"},
        {"X-Real-IP": "192.0.2.7"},
        {"Via": "1.1 nginx"},
        {"X-Forwarded-For": "127.0.0.1"},  # the proxy's own say-so is worth nothing unless the proxy is trusted
    ],
)
def test_a_forwarded_request_is_not_the_loopback_operator(vergence_server, headers):
    server = vergence_server("--size", "320x240")
    assert put_ptz(server, headers) == 403
    assert httpx.get(f"{server.url}/api/streams", headers=headers, timeout=10).status_code == 200  # still a viewer
    assert put_ptz(server, {}) == 200  # this machine, directly: the operator, as before


def test_a_trusted_proxy_passes_on_who_the_client_is(vergence_server):
    server = vergence_server("--size", "320x240", env={"VERGENCE_AUTH__TRUSTED_PROXIES": '["127.0.0.1"]'})
    assert put_ptz(server, {"X-Forwarded-For": "192.0.2.7"}) == 403  # a LAN client through the proxy: a viewer
    assert put_ptz(server, {"X-Forwarded-For": "192.0.2.7, 127.0.0.1"}) == 403  # spoofed hop behind the proxy
    assert put_ptz(server, {"X-Forwarded-For": "127.0.0.1"}) == 200  # someone on this machine through the proxy
    assert put_ptz(server, {"Forwarded": 'for="[::1]:4711"'}) == 200


NGINX_PROXY = """\
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;  # what a reverse proxy set-up guide gives
        }}
    }}
}}
"""


def test_through_a_real_nginx_reverse_proxy_the_network_is_not_the_operator(vergence_server, tmp_path):
    import subprocess

    from tests.conftest import free_port
    from tests.daemons import stop, wait_listening
    from tests.nginx_rtmp import NGINX

    server = vergence_server("--size", "320x240")
    prefix, port = tmp_path / "nginx", free_port()
    prefix.mkdir()
    config = prefix / "nginx.conf"
    config.write_text(NGINX_PROXY.format(prefix=prefix, port=port, upstream=server.port))
    command = [str(NGINX), "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_listening(process, port, "nginx", lambda: (prefix / "error.log").read_text(errors="replace"))
        proxied = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{proxied}/api/streams", timeout=10).status_code == 200  # watching through it works
        # The request reaches vergence from 127.0.0.1 with Host 127.0.0.1:port: without the rule, an operator.
        response = httpx.put(f"{proxied}/api/cameras/cam0/ptz", json=MOVE, timeout=10)
        assert response.status_code == 403, response.text
    finally:
        stop(process)
