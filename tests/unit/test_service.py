"""`vergence install-service`: the systemd unit's text, its quoting (checked by systemd's own parser), writing it
without clobbering another unit, and the command line."""

from __future__ import annotations

import configparser
import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vergence import service
from vergence.cli import app
from vergence.errors import ConfigError

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
PI = service.ServiceUser("pi", "pi", Path("/home/pi"))


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def render(**changes) -> str:
    arguments = {
        "name": "vergence",
        "user": PI,
        "python": "/opt/vergence/bin/python",
        "config": Path("/etc/vergence/vergence.toml"),
        "supplementary_groups": ["video"],
        **changes,
    }
    return service.render_unit(**arguments)


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    """systemd's own parser on the unit file; it needs no running systemd (it loads the unit offline)."""
    assert SYSTEMD_ANALYZE, "systemd-analyze is not installed (apt-get install systemd)"
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )


def test_unit_runs_vergence_as_the_user_and_restarts_it_on_failure():
    unit = parse(render())

    assert unit["Unit"]["After"] == "network-online.target"
    assert unit["Unit"]["Wants"] == "network-online.target"
    assert int(unit["Unit"]["StartLimitIntervalSec"]) > 0 and int(unit["Unit"]["StartLimitBurst"]) > 1
    run = unit["Service"]
    assert run["ExecStart"] == "/opt/vergence/bin/python -m vergence serve --config /etc/vergence/vergence.toml"
    assert (run["User"], run["Group"], run["WorkingDirectory"]) == ("pi", "pi", "/home/pi")
    assert run["SupplementaryGroups"] == "video"
    assert (run["Restart"], run["RestartSec"]) == ("on-failure", "2")
    assert run["RestartPreventExitStatus"] == "2"  # an invalid config is not retried
    assert run["Environment"] == "PYTHONUNBUFFERED=1"
    assert (run["NoNewPrivileges"], run["ProtectSystem"]) == ("yes", "full")
    # Cameras, the home directory and the command FIFO in /tmp stay reachable.
    for key in ("PrivateDevices", "ProtectHome", "PrivateTmp", "DynamicUser"):
        assert key not in run
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_without_config_or_device_group():
    run = parse(render(config=None, supplementary_groups=[]))["Service"]
    assert run["ExecStart"] == "/opt/vergence/bin/python -m vergence serve"
    assert "SupplementaryGroups" not in run


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("/opt/vergence/bin/python", "/opt/vergence/bin/python"),
        ("/home/pi/my cams/vergence.toml", '"/home/pi/my cams/vergence.toml"'),
        ("/srv/100%/v.toml", "/srv/100%%/v.toml"),  # % starts a systemd specifier
        ("/srv/$HOME/v.toml", "/srv/$$HOME/v.toml"),  # $ starts an environment variable
        ('/srv/say "hi"\\.toml', '"/srv/say \\"hi\\"\\\\.toml"'),
    ],
)
def test_exec_start_words_are_quoted_for_systemd(word, quoted):
    assert service.exec_word(word) == quoted


def test_a_newline_cannot_reach_the_unit():
    with pytest.raises(ConfigError, match="control character"):
        service.exec_word("/srv/a\nExecStartPre=/bin/sh")


def test_systemd_accepts_the_unit_and_finds_an_interpreter_in_a_path_with_spaces(tmp_path):
    # An interpreter in a directory whose name needs quoting and escaping: systemd-analyze checks that the first
    # word of ExecStart, as systemd reads it, is an executable file.
    odd = tmp_path / "my venv 100%" / "bin"
    odd.mkdir(parents=True)
    (odd / "python").symlink_to(sys.executable)
    (tmp_path / "my config.toml").write_text("")
    me = service.service_user(pwd.getpwuid(os.getuid()).pw_name)
    path = tmp_path / "vergence-test.service"
    text = render(
        user=me,
        python=str(odd / "python"),
        config=tmp_path / "my config.toml",
        supplementary_groups=service.device_groups(),
    )
    service.write_unit(path, text)

    result = verify(path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys and bad values are only warnings

    (odd / "python").unlink()  # the same unit without its interpreter: verify does look at the path
    result = verify(path)
    assert result.returncode != 0 and f"{odd / 'python'} is not executable" in result.stderr


def test_write_unit_refuses_to_replace_a_different_unit(tmp_path):
    path = tmp_path / "vergence.service"
    assert service.write_unit(path, render()) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert service.write_unit(path, render()) is False  # the same text: nothing to do

    with pytest.raises(ConfigError, match="exists and differs: give --force"):
        service.write_unit(path, render(config=None))
    assert path.read_text() == render()
    assert service.write_unit(path, render(config=None), force=True) is True
    assert path.read_text() == render(config=None)
    assert [p.name for p in tmp_path.iterdir()] == ["vergence.service"]  # no temporary file left


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["install-service", *args], env=env)


def test_cli_prints_the_unit_for_the_sudo_user(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vergence.toml").write_text("")
    result = invoke("--output", "-", "--config", "vergence.toml", env={"SUDO_USER": "nobody"})

    assert result.exit_code == 0, result.output
    run = parse(result.stdout)["Service"]
    nobody = pwd.getpwnam("nobody")
    assert run["User"] == "nobody" and run["Group"] == grp.getgrgid(nobody.pw_gid).gr_name
    assert run["WorkingDirectory"] == nobody.pw_dir
    # The interpreter of the environment vergence runs from, and the config made absolute.
    assert run["ExecStart"] == f"{service.exec_word(sys.executable)} -m vergence serve --config " + service.exec_word(
        str(tmp_path / "vergence.toml")
    )


def test_cli_refuses_root_unless_asked_by_name(monkeypatch):
    refused = invoke("--output", "-", env={"SUDO_USER": "root"})
    assert refused.exit_code == 2 and "refusing to run the service as root" in refused.stderr
    assert refused.stdout == ""

    allowed = invoke("--output", "-", "--user", "root", env={"SUDO_USER": "root"})
    assert allowed.exit_code == 0 and parse(allowed.stdout)["Service"]["User"] == "root"


def test_cli_refuses_an_unknown_user_or_a_missing_config(tmp_path):
    unknown = invoke("--output", "-", "--user", "no-such-user-here")
    assert unknown.exit_code == 2 and "no user 'no-such-user-here'" in unknown.stderr
    missing = invoke("--output", "-", "--user", "nobody", "--config", str(tmp_path / "missing.toml"))
    assert missing.exit_code == 2 and "missing.toml is not a file" in missing.stderr


def test_cli_writes_once_and_refuses_to_overwrite_a_different_unit(tmp_path):
    path = tmp_path / "units" / "cams.service"
    first = invoke("--output", str(path), "--user", "nobody", "--name", "cams")
    assert first.exit_code == 0, first.output
    assert f"wrote {path}" in first.stderr
    assert "sudo systemctl enable --now cams.service" in first.stderr and "journalctl -u cams" in first.stderr
    written = path.read_text()

    again = invoke("--output", str(path), "--user", "nobody", "--name", "cams")
    assert again.exit_code == 0 and "unchanged" in again.stderr

    (tmp_path / "other.toml").write_text("")
    other = ("--output", str(path), "--user", "nobody", "--name", "cams", "--config", str(tmp_path / "other.toml"))
    refused = invoke(*other)
    assert refused.exit_code == 2 and "exists and differs: give --force" in refused.stderr
    assert path.read_text() == written

    forced = invoke(*other, "--force")
    assert forced.exit_code == 0 and "other.toml" in path.read_text()


def test_cli_enables_only_units_in_the_system_directory(tmp_path):
    # Outside /etc/systemd/system, --enable runs no systemctl: it says so and prints the commands.
    result = invoke("--output", str(tmp_path / "v.service"), "--user", "nobody", "--enable")
    assert result.exit_code == 0, result.output
    assert "not enabled" in result.stderr and "sudo systemctl daemon-reload" in result.stderr
