"""Where the command pipe goes by default: a directory only the server's account reaches."""

from __future__ import annotations

from pathlib import Path

from vergence.control.transports.fifo import default_path


def test_systemd_runtime_directory_then_the_users_then_the_state_directory() -> None:
    both = {"RUNTIME_DIRECTORY": "/run/vergence", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert default_path(both) == Path("/run/vergence/commands")
    assert default_path({"XDG_RUNTIME_DIR": "/run/user/1000"}) == Path("/run/user/1000/vergence/commands")
    assert default_path({}) == Path("~/.local/state/vergence/commands").expanduser()
