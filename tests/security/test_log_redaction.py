"""Finding 9: a percent-encoded key (`?%74oken=…`) authenticated, since the server decodes the query, but the log
redaction matched only the plain name, so the token reached the log."""

from __future__ import annotations

import httpx
from websockets.sync.client import connect

from vergence.errors import redact

TOKEN = "s3cret-token-value-0123456789"


def test_redaction_reads_parameter_names_as_the_server_decodes_them():
    for query in (f"?%74oken={TOKEN}", f"?TOKEN={TOKEN}", f"?to%6Ben={TOKEN}&x=1", f"&%6b%65%79={TOKEN}"):
        assert TOKEN not in redact(f"GET /api/streams{query} HTTP/1.1"), query
    assert redact("GET /x?zoom=2&tokens=3") == "GET /x?zoom=2&tokens=3"  # other names untouched


def test_an_encoded_token_authenticates_and_never_reaches_the_log(vergence_server, tmp_path):
    config = tmp_path / "auth.toml"
    config.write_text(f'[[auth.tokens]]\nname = "ops"\nrole = "operator"\ntoken = "{TOKEN}"\n')
    server = vergence_server("--config", str(config), "--size", "320x240")
    assert httpx.get(f"{server.url}/api/streams", timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/api/streams?%74oken={TOKEN}", timeout=10).status_code == 200
    # uvicorn logs each WebSocket with its query: where a browser's token travels.
    with connect(f"{server.ws_url}/ws/control?%74oken={TOKEN}", open_timeout=10) as control:
        control.recv(timeout=10)
    server.stop()
    log = server.log()
    assert "/ws/control?%74oken=***" in log, log
    assert TOKEN not in log
