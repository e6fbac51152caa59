"""The fuzz suites' server: one per module, so one suite's leftovers (presets, ROIs, a paused camera) stay its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess
from tests.fuzz.harness import start_fuzz_server


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_fuzz_server(tmp_path_factory.mktemp("fuzz"))
    yield server
    server.stop()
