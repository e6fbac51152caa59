"""Fuzzing POST /api/commands with text lines and JSON bodies: every answer is a reply with the status its code maps to,
never a 5xx (`HTTP_STATUS` maps `io_error` and `internal_error` to 500; no input may produce them)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import FUZZ_SETTINGS, INPUTS, assert_survived
from tests.fuzz.strategies import (
    command_lines,
    command_objects,
    deeply_nested,
    dumps,
    json_values,
    often,
    unjsonable,
)
from vergence.control.commands import COMMAND_TYPES
from vergence.errors import HTTP_STATUS

text_bodies = often(
    command_lines().map(lambda line: ("text/plain", line.encode())),
    st.one_of(
        command_objects().map(lambda command: ("text/plain", dumps(command).encode())),
        unjsonable(command_objects()).map(lambda command: ("text/plain", dumps(command).encode())),
        st.binary(max_size=200).map(lambda data: ("text/plain; charset=utf-8", data)),
        st.binary(max_size=200).map(lambda data: ("", data)),
    ),
)
json_bodies = often(
    command_objects().map(lambda command: ("application/json", dumps(command).encode())),
    st.one_of(
        json_values.map(lambda value: ("application/json", dumps(value).encode())),
        unjsonable(command_objects()).map(lambda command: ("application/json", dumps(command).encode())),
        st.sampled_from((31, 32, 33, 500, 5_000)).map(
            lambda depth: ("application/json", f'{{"type": "status", "id": {deeply_nested(depth)}}}'.encode())
        ),
        st.sampled_from(("1e999", "-1e999", "[1,]", "{", "")).map(
            lambda text: ("application/json", f'{{"type": "zoom", "value": {text}}}'.encode())
        ),
        st.binary(max_size=200).map(lambda data: ("application/json", data)),
    ),
)


def assert_replied(response: httpx.Response, content_type: str, body: bytes) -> None:
    """A reply as every transport sends it, under the status its code maps to."""
    where = f"POST /api/commands ({content_type!r}) {body[:300]!r}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    reply: Any = response.json()
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), f"{where}: {reply}"
    if reply["ok"]:
        assert response.status_code == 200 and isinstance(reply.get("result"), dict), f"{where}: {reply}"
        assert reply.get("command") in COMMAND_TYPES, f"{where}: {reply}"
        return
    assert isinstance(reply.get("code"), str) and isinstance(reply.get("error"), str), f"{where}: {reply}"
    assert response.status_code == HTTP_STATUS.get(reply["code"]), f"{where}: {response.status_code} {reply}"
    assert reply.get("detail") == reply["error"], f"{where}: {reply}"


def test_posted_commands_are_answered_with_replies_never_5xx(fuzz_server):
    sent = 0
    outcomes: Counter[str] = Counter()
    with httpx.Client(base_url=fuzz_server.url, timeout=15) as http:

        @settings(FUZZ_SETTINGS, max_examples=INPUTS["commands"] + 200)
        @given(request=st.one_of(text_bodies, json_bodies))
        def post(request: tuple[str, bytes]) -> None:
            nonlocal sent
            content_type, body = request
            headers = {"Content-Type": content_type} if content_type else {}
            response = http.post("/api/commands", content=body, headers=headers)
            sent += 1
            assert_replied(response, content_type, body)
            reply = response.json()
            outcomes[f"{response.status_code} {reply.get('command') if reply['ok'] else reply['code']}"] += 1

        post()
    print(f"POST /api/commands: {sent} requests sent; answers: {dict(outcomes.most_common())}")
    assert sent >= INPUTS["commands"], f"only {sent} requests sent"
    assert_survived(fuzz_server)
