"""Where the command pipe goes by default: a directory only the server's account reaches."""

from __future__ import annotations

import json
from pathlib import Path

from vergence.control.transports.fifo import default_path


def test_systemd_runtime_directory_then_the_users_then_the_state_directory() -> None:
    both = {"RUNTIME_DIRECTORY": "/run/vergence", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert default_path(both) == Path("/run/vergence/commands")
    assert default_path({"XDG_RUNTIME_DIR": "/run/user/1000"}) == Path("/run/user/1000/vergence/commands")
    assert default_path({}) == Path("~/.local/state/vergence/commands").expanduser()


def test_status_read_through_the_pipe_does_not_grow_with_each_read(tmp_path) -> None:
    """A `status` result lists the FIFO's recent replies; kept whole, each kept `status` held all the ones before and
    the replies doubled in size with every read (2.6 KB to 2 GB by the 20th)."""
    from vergence.config import FifoSettings
    from vergence.control.transports.fifo import FifoInbox

    inbox = FifoInbox(FifoSettings(enabled=True, path=tmp_path / "commands"), commander=None)  # type: ignore[arg-type]
    sizes = []
    for _ in range(20):
        result = {"services": {"fifo": inbox.describe()}}  # what `status` answers
        inbox._record({"ok": True, "command": "status", "result": result}, "status")
        sizes.append(len(json.dumps(inbox.describe())))
    assert sizes[-1] < 2 * sizes[len(sizes) // 2] < 100_000, sizes
