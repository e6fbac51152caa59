"""Schemathesis against the live server's /openapi.json: every operation, valid and invalid inputs, no 5xx, and every
answer as the schema declares it.

Phases: the schema's examples, coverage (boundary and type-violating values of each parameter), then random fuzzing, in
both modes (inputs the schema allows and inputs it forbids). Path parameters are mostly the server's real ids (cam0,
stereo, udp0, …) rather than random text, so the fuzzing gets past the 404 of an unknown camera into the handlers.
Nothing is left out: the endless MJPEG stream is requested too, its status and headers checked, then hung up on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.conftest import ServerProcess
from tests.fuzz.harness import INPUTS, OUTPUTS, STREAMS, assert_survived
from tests.fuzz.strategies import often

MJPEG = "/stream/{stream_id}.mjpeg"
KNOWN_IDS = {"camera": STREAMS, "stream_id": STREAMS, "output_id": OUTPUTS, "name": ("home", "door", "a")}
REQUEST_TIMEOUT_S = 15.0
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
SENT: Counter[str] = Counter()  # cases sent, by operation
STATUSES: Counter[int] = Counter()  # the answers' status codes

schemathesis.serializer.alias("application/sdp", "text/plain")  # WebRTC offers are SDP text


@pytest.fixture(scope="module")
def openapi(fuzz_server: ServerProcess) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "seed": 20_251_121,
            "generation": {"mode": "all", "max-examples": 70, "deterministic": True},
            "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
        }
    )
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json", config=config)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        if not path_parameters:
            return st.just(path_parameters)
        return st.fixed_dictionaries(
            {
                name: often(st.sampled_from(KNOWN_IDS[name]), st.just(value)) if name in KNOWN_IDS else st.just(value)
                for name, value in path_parameters.items()
            }
        )

    return schema


schema = schemathesis.pytest.from_fixture("openapi")


@schema.parametrize()
def test_every_operation_answers_without_a_server_error(case: Any, fuzz_server: ServerProcess) -> None:
    if case.operation.path == MJPEG:
        _check_endless_stream(case, fuzz_server)
    else:
        response = case.call(base_url=fuzz_server.url, timeout=REQUEST_TIMEOUT_S)
        SENT[case.operation.label] += 1
        STATUSES[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)


def _check_endless_stream(case: Any, server: ServerProcess) -> None:
    """GET /stream/{id}.mjpeg never ends when the stream exists: check its status and headers, then hang up (its first
    part may be a second away: a paused camera repeats its picture once a second)."""
    kwargs = case.as_transport_kwargs(base_url=server.url)
    with httpx.stream(
        "GET", kwargs["url"], params=kwargs.get("params"), headers=kwargs.get("headers"), timeout=REQUEST_TIMEOUT_S
    ) as response:
        SENT[case.operation.label] += 1
        STATUSES[response.status_code] += 1
        assert response.status_code < 500, f"GET {kwargs['url']}: {response.status_code}"
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("multipart/x-mixed-replace")


def test_the_fuzzing_reached_every_operation_and_the_server_survived(fuzz_server: ServerProcess) -> None:
    assert SENT, "run with the test above: it sends the cases this one counts"
    paths = httpx.get(f"{fuzz_server.url}/openapi.json").json()["paths"]
    operations = {f"{method.upper()} {path}" for path, methods in paths.items() for method in methods}
    print(f"schemathesis: {sum(SENT.values())} cases over {len(SENT)} operations: {dict(SENT)}")
    print(f"schemathesis: answers by status: {dict(sorted(STATUSES.items()))}")
    assert operations <= set(SENT), f"never fuzzed: {sorted(operations - set(SENT))}"
    assert sum(SENT.values()) >= INPUTS["openapi"], f"only {sum(SENT.values())} cases sent"
    assert_survived(fuzz_server)
