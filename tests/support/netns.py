"""A private network for tests and benchmarks: this process moves into a new network namespace with loopback and a veth
pair of its own, so WebRTC's ICE has a non-loopback address to use (browsers and aioice ignore 127.0.0.1) and nothing
can reach any outside address.

Call `enter_private_network()` before any thread starts: a namespace belongs to the thread that enters it, and every
thread and child process started afterwards inherits it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from pathlib import Path

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
ADDRESSES = ("10.203.0.1", "10.203.0.2")  # the two ends of the veth pair, both ours
_state: dict[str, str | None] = {"address": None, "reason": "enter_private_network() was not called"}


def enter_private_network() -> str | None:
    """Enter a new network namespace with lo and a veth pair up; return None, or why it could not be done."""
    if _state["address"] is not None:
        return None
    reason = _enter()
    _state["reason"] = reason
    if reason is None:
        _state["address"] = ADDRESSES[0]
    return reason


def private_address() -> str | None:
    """The non-loopback address of the private network, or None when the process is not in one."""
    return _state["address"]


def why_no_private_network() -> str | None:
    return _state["reason"]


def _enter() -> str | None:
    if threading.active_count() > 1:
        return "threads are running already: the namespace would hold only this one"
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if Path(p).exists()), None)
    if ip is None:
        return "the ip command is missing: install iproute2"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        uid, gid = os.getuid(), os.getgid()
        # Without CAP_SYS_ADMIN: a user namespace of our own gives it, for this namespace only.
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            return f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}; run as root or allow user namespaces"
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    a, b = ADDRESSES
    for command in (
        "link set lo up",
        "link add vg0 type veth peer name vg1",
        f"addr add {a}/24 dev vg0",
        f"addr add {b}/24 dev vg1",
        "link set vg0 up",
        "link set vg1 up",
    ):
        result = subprocess.run([ip, *command.split()], capture_output=True, text=True)
        if result.returncode != 0:
            return f"ip {command}: {result.stderr.strip() or result.returncode}"
    return None
