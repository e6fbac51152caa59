"""Finding 6: FIFO takeover. Another local account that made the pipe first, in a directory everyone may write, had its
commands run; the reply file was opened through symbolic links, so vergence appended to a file it should not. The pipe
must now be the server's own and not writable by others, nothing is opened through a symbolic link, a reply file must
be the server's, and the default pipe lives in a directory only the server's account reaches.

The other account is real: nobody, through setpriv (tests/accounts.py)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.accounts import NOBODY, python_as_nobody
from tests.polling import poll


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every account may write, like /tmp (and under it, so nobody reaches it); sticky unless made 0777."""
    path = Path(tempfile.mkdtemp(prefix="vergence-shared-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path)


def fifo_env(fifo: Path, replies: Path | None = None) -> dict[str, str]:
    env = {"VERGENCE_FIFO__ENABLED": "true", "VERGENCE_FIFO__PATH": str(fifo)}
    if replies is not None:
        env["VERGENCE_FIFO__REPLY_PATH"] = str(replies)
    return env


def zoom(server) -> float:
    return httpx.get(f"{server.url}/api/cameras/cam0/ptz", timeout=5).json()["zoom"]


def write_line(fifo: Path, line: str) -> None:
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def processed(server) -> int:
    return httpx.get(f"{server.url}/api/stats", timeout=5).json()["services"]["fifo"]["processed"]


def test_a_pipe_another_account_made_first_stops_the_start(vergence_server, shared_dir):
    fifo = shared_dir / "vergence"
    python_as_nobody("import os, sys; os.mkfifo(sys.argv[1], 0o666)", str(fifo))
    with pytest.raises(RuntimeError, match=r"belongs to nobody \(uid 65534\)"):
        vergence_server("--size", "320x180", env=fifo_env(fifo))
    assert fifo.lstat().st_uid == NOBODY  # theirs, left alone


def test_a_symbolic_link_in_place_of_the_pipe_is_refused(vergence_server, shared_dir):
    shared_dir.chmod(0o777)  # not sticky: anyone may put anything there
    target = shared_dir / "elsewhere"
    python_as_nobody(
        "import os, sys; os.mkfifo(sys.argv[1], 0o666); os.symlink(*sys.argv[1:])",
        str(target),
        str(shared_dir / "vergence"),
    )
    with pytest.raises(RuntimeError, match="fifo.path"):
        vergence_server("--size", "320x180", env=fifo_env(shared_dir / "vergence"))


def test_our_own_pipe_that_anyone_may_write_is_made_anew(vergence_server, tmp_path):
    fifo = tmp_path / "vergence"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    held = os.open(
        fifo, os.O_RDWR | os.O_NONBLOCK
    )  # someone who opened it while anyone could: a chmod would not stop them
    try:
        planted = os.fstat(held).st_ino
        server = vergence_server("--size", "320x180", env=fifo_env(fifo))
        info = fifo.lstat()
        assert stat.S_ISFIFO(info.st_mode) and info.st_ino != planted
        assert not info.st_mode & stat.S_IWOTH
        os.write(held, b"zoom 3\n")  # into the old pipe, which the server no longer reads
        write_line(fifo, "zoom 2")
        poll(lambda: zoom(server) == 2.0, "zoom 2 through the new pipe", deadline_s=10)
        assert os.read(held, 100) == b"zoom 3\n"
    finally:
        os.close(held)


@pytest.mark.parametrize("planted", ["symbolic link", "another account's file"])
def test_replies_never_reach_a_file_another_account_planted(vergence_server, shared_dir, tmp_path, planted):
    shared_dir.chmod(0o777)  # not sticky: the kernel's protected_symlinks does not apply here
    victim = tmp_path / "precious"
    victim.write_text("precious\n")
    replies = shared_dir / "replies"
    if planted == "symbolic link":
        python_as_nobody("import os, sys; os.symlink(*sys.argv[1:])", str(victim), str(replies))
    else:
        python_as_nobody(
            "import os, sys; os.close(os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o666))", str(replies)
        )
    fifo = tmp_path / "in.fifo"
    server = vergence_server("--size", "320x180", env=fifo_env(fifo, replies))
    write_line(fifo, "zoom 2")
    poll(lambda: processed(server) == 1, "the command run", deadline_s=10)
    assert victim.read_text() == "precious\n"
    if planted == "another account's file":
        assert replies.read_text() == ""
    assert "replies are not written there" in server.log()


def test_the_default_pipe_is_in_the_users_runtime_directory(vergence_server, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {"VERGENCE_FIFO__ENABLED": "true", "XDG_RUNTIME_DIR": str(runtime)}
    server = vergence_server("--size", "320x180", env=env)
    fifo = runtime / "vergence" / "commands"
    assert fifo.is_fifo()
    assert stat.S_IMODE((runtime / "vergence").stat().st_mode) == 0o700
    write_line(fifo, "zoom 2")
    poll(lambda: zoom(server) == 2.0, "zoom 2 through the default pipe", deadline_s=10)
