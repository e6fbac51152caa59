"""A systemd unit that runs `vergence serve` as a given user: render its text, write it, say how to enable it."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vergence.errors import ConfigError
from vergence.files import write_atomically

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
DEVICE_GROUP = "video"  # owns /dev/video*, /dev/media* and, on Raspberry Pi OS, /dev/dma_heap/*
CONFIG_EXIT_STATUS = 2  # `vergence serve` exits 2 on invalid configuration: starting again cannot fix that
_UNIT_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")
_PLAIN_WORD = re.compile(r"^[A-Za-z0-9_@%$+=:,./-]+$")  # after escaping: no quotes needed


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """Who the service runs as."""

    name: str
    group: str
    home: Path


def invoking_user() -> str:
    """The user who ran the command: the one behind sudo, else the current one."""
    return os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name


def service_user(name: str) -> ServiceUser:
    """Look up a user's primary group and home; raise ConfigError for an unknown user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError as err:
        raise ConfigError(f"--user: there is no user {name!r} on this machine") from err
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)  # a group id without a name still works in Group=
    return ServiceUser(entry.pw_name, group, Path(entry.pw_dir))


def unit_name(name: str) -> str:
    """Check a service name (`vergence`, `vergence-front`, …) and return it without `.service`."""
    name = name.removesuffix(".service")
    if not _UNIT_NAME.match(name):
        raise ConfigError(f"--name: {name!r} is not a unit name (1-200 of A-Z a-z 0-9 _ . : @ -)")
    return name


def device_groups() -> list[str]:
    """The supplementary groups the service needs for cameras, as far as they exist here (a missing one fails the
    unit's start)."""
    try:
        grp.getgrnam(DEVICE_GROUP)
    except KeyError:
        return []
    return [DEVICE_GROUP]


def render_unit(
    *,
    name: str,
    user: ServiceUser,
    python: str,
    config: Path | None,
    supplementary_groups: list[str],
) -> str:
    """Return the text of a systemd unit running `python -m vergence serve [--config config]` as `user`."""
    command = [python, "-m", "vergence", "serve"] + (["--config", str(config)] if config else [])
    groups = f"SupplementaryGroups={' '.join(supplementary_groups)}\n" if supplementary_groups else ""
    return f"""\
# Written by `vergence install-service`; docs/security.md "Running as a service".
[Unit]
Description=vergence camera streaming ({name})
After=network-online.target
Wants=network-online.target
# A crash loop stops after 10 starts in a minute instead of spinning the CPU; `systemctl reset-failed {name}` clears it.
StartLimitIntervalSec=60
StartLimitBurst=10

[Service]
Type=exec
ExecStart={" ".join(exec_word(word) for word in command)}
User={user.name}
Group={user.group}
{groups}WorkingDirectory={_escape_specifiers(str(user.home))}
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=2
# Descriptors for viewers: vergence raises its soft limit to this at start and caps connections below it.
LimitNOFILE=65536
# /run/{name}, this user's alone (0750: its group may reach the command FIFO there, $RUNTIME_DIRECTORY/commands).
RuntimeDirectory={name}
RuntimeDirectoryMode=0750
# Exit status {CONFIG_EXIT_STATUS} is an invalid configuration: restarting cannot fix it, the journal says what is wrong.
RestartPreventExitStatus={CONFIG_EXIT_STATUS}
TimeoutStopSec=15
# Hardening that leaves cameras (/dev/video*, /dev/media*, /dev/dma_heap) and state and media in the user's home alone:
# no PrivateDevices and no ProtectHome. No PrivateTmp either: a command FIFO set in /tmp must stay visible to the programs
# that write commands into it.
NoNewPrivileges=yes
ProtectSystem=full
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""


def exec_word(word: str) -> str:
    """Quote one word of an ExecStart= line: `%` specifiers and `$` variables escaped, spaces and quotes in "…"."""
    escaped = _escape_specifiers(word).replace("$", "$$")
    if _PLAIN_WORD.match(escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_specifiers(text: str) -> str:
    if any(ord(char) < 32 for char in text):
        raise ConfigError(f"{text!r}: a control character cannot be written into a systemd unit")
    return text.replace("%", "%%")


def write_unit(path: Path, text: str, *, force: bool = False) -> bool:
    """Write the unit atomically (mode 0644); return False when the same text is there already. Raise ConfigError
    rather than replace a different file, unless `force`."""
    try:
        current = path.read_text()
    except FileNotFoundError:
        current = None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    if current == text:
        return False
    if current is not None and not force:
        raise ConfigError(f"{path} exists and differs: give --force to replace it")
    try:
        write_atomically(path, text, 0o644)
    except PermissionError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror} (run it with sudo, or --output -)") from err
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror}") from err
    return True


def enable_commands(name: str) -> list[list[str]]:
    """The commands that load the written unit and start it now and at every boot."""
    return [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", f"{name}.service"]]


def can_enable(path: Path) -> bool:
    """True when the unit is where systemd looks for it and systemctl is there to load it."""
    return path.parent == SYSTEM_UNIT_DIR and shutil.which("systemctl") is not None


def enable(name: str) -> None:
    """Reload systemd and enable and start the unit; raise ConfigError with systemctl's own message."""
    for command in enable_commands(name):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ConfigError(f"{' '.join(command)} failed: {result.stderr.strip() or result.returncode}")
