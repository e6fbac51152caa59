"""scripts/install_plan.py decides what scripts/install.sh does on Raspberry Pi OS, plain Debian and machines without apt;
install.sh itself is run against stand-ins for python3, apt-get and the venv's python that record what it asked of them."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_plan", SCRIPTS / "install_plan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


ip = _load()

REQUIREMENTS = ("av>=14", "numpy>=1.26", "simplejpeg>=1.7", "uvicorn[standard]>=0.35", "aiortc>=1.16,<2")
TEST_REQUIREMENTS = (*REQUIREMENTS, "pytest>=8,<9.1", "pillow>=10")
TEST_DEBS = list(ip.TEST_DEBS)
# Versions in Raspberry Pi OS bookworm, all older than vergence asks for.
BOOKWORM = {"numpy": "1.24.2", "simplejpeg": "1.6.6", "av": "12.3.0", "pillow": "9.4.0"}
NEW_ENOUGH = {"numpy": "1.26.4", "simplejpeg": "1.8.2", "av": "14.2.0", "pillow": "11.1.0"}

DEBIAN = ip.Facts(
    os_release={"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm"},
    apt_get=True,
    root=True,
    installed_debs=frozenset(),
    requirements=REQUIREMENTS,
)
PI = replace(
    DEBIAN,
    rpi_issue=True,
    device_tree_model="Raspberry Pi 5 Model B Rev 1.0",
    picamera2_installed=True,
    system_versions=NEW_ENOUGH,
)


# Raspberry Pi OS


def test_pi_with_picamera2_installed_gets_a_venv_seeing_the_system_with_its_versions_pinned():
    plan = ip.plan(PI)
    assert plan.raspberry_pi_os
    assert plan.apt_packages == ()
    assert (plan.venv, plan.venv_args) == ("create", ("--system-site-packages",))
    assert plan.pin_system_packages
    assert plan.constraints == ("numpy==1.26.4", "simplejpeg==1.8.2", "av==14.2.0", "pillow==11.1.0")
    assert plan.check_picamera2
    assert plan.pip_target == "."
    assert (plan.errors, plan.pin_notes) == ((), ())


def test_pi_pins_only_the_packages_the_system_has():
    plan = ip.plan(replace(PI, system_versions={"numpy": "1.26.4", "av": "14.2.0"}))
    assert plan.constraints == ("numpy==1.26.4", "av==14.2.0")


def test_pi_with_bookworm_versions_older_than_vergence_needs_keeps_numpy_1_and_says_what_pip_replaces():
    # Pinning numpy==1.24.2 against vergence's numpy>=1.26 would only make pip give up.
    plan = ip.plan(replace(PI, system_versions=BOOKWORM, requirements=TEST_REQUIREMENTS, test=True))
    assert plan.constraints == ("numpy<2",)
    assert plan.errors == ()
    notes = "\n".join(plan.pin_notes)
    assert "numpy 1.24.2, vergence needs numpy>=1.26: .venv gets a newer numpy 1.x" in notes
    for name, need in (("simplejpeg", "simplejpeg>=1.7"), ("av", "av>=14"), ("pillow", "pillow>=10")):
        assert f"has {name} {BOOKWORM[name]}, vergence needs {need}: .venv gets its own {name}" in notes


def test_pi_pins_pillow_exactly_when_only_the_test_extra_wants_a_newer_one():
    plan = ip.plan(replace(PI, system_versions=BOOKWORM))  # without --test nothing of vergence's asks for pillow
    assert "pillow==9.4.0" in plan.constraints


def test_pi_refuses_when_vergence_needs_a_numpy_major_the_system_lacks():
    plan = ip.plan(replace(PI, system_versions=BOOKWORM, requirements=("numpy>=2.1",)))
    assert not any(line.startswith("numpy") for line in plan.constraints)
    assert len(plan.errors) == 1
    assert "vergence needs numpy>=2.1 but Raspberry Pi OS's picamera2 is built against numpy 1.24.2" in plan.errors[0]


def test_pi_without_picamera2_as_root_installs_it_with_apt():
    plan = ip.plan(replace(PI, picamera2_installed=False, system_versions={}))
    assert plan.apt_packages == ("python3-picamera2",)
    assert plan.errors == ()
    assert "installing python3-picamera2" in plan.notes
    # Its numpy and the rest arrive with it: install.sh asks for the constraints again after apt.
    assert plan.pin_system_packages and plan.constraints == ()
    assert plan.check_picamera2


def test_pi_without_picamera2_not_as_root_says_to_sudo_apt_install_it():
    plan = ip.plan(replace(PI, picamera2_installed=False, root=False))
    assert plan.apt_packages == ()
    assert len(plan.errors) == 1
    assert "`sudo apt install python3-picamera2`" in plan.errors[0]


def test_pi_recreates_a_venv_made_without_system_site_packages_and_says_so():
    plan = ip.plan(replace(PI, venv_system_site_packages=False))
    assert (plan.venv, plan.venv_args) == ("recreate", ("--system-site-packages",))
    assert any(note.startswith("recreating .venv with --system-site-packages") for note in plan.notes)


def test_pi_keeps_a_venv_that_sees_the_system():
    plan = ip.plan(replace(PI, venv_system_site_packages=True))
    assert plan.venv == "keep" and plan.notes == ()


def test_pi_with_a_python3_other_than_debians_stops_before_making_a_venv_that_cannot_see_picamera2():
    plan = ip.plan(replace(PI, system_python=False))
    assert len(plan.errors) == 1 and "not Debian's /usr/bin/python3" in plan.errors[0]


def test_pi_test_mode_adds_the_test_packages_to_picamera2():
    plan = ip.plan(replace(PI, picamera2_installed=False, test=True, installed_debs=frozenset({"nginx"})))
    expected = ["python3-picamera2", *(deb for deb in TEST_DEBS if deb != "nginx"), "libcap-dev"]
    assert plan.apt_packages == tuple(expected)
    assert plan.pip_target == ".[test]"


@pytest.mark.parametrize(
    ("os_release", "rpi_issue", "model", "expected"),
    [
        ({"ID": "raspbian"}, False, "", True),  # 32-bit Raspberry Pi OS
        ({"ID": "debian"}, True, "", True),  # 64-bit Raspberry Pi OS
        ({"ID": "debian"}, False, "Raspberry Pi 4 Model B Rev 1.5", True),
        ({"ID": "ubuntu"}, False, "Raspberry Pi 5 Model B Rev 1.0", True),
        ({"ID": "debian"}, False, "", False),
        ({"ID": "ubuntu"}, True, "", False),  # a stray rpi-issue alone does not make Ubuntu Raspberry Pi OS
        ({"ID": "debian"}, False, "Pine64 RockPro64", False),
    ],
)
def test_raspberry_pi_os_detection(os_release, rpi_issue, model, expected):
    facts = replace(DEBIAN, os_release=os_release, rpi_issue=rpi_issue, device_tree_model=model)
    assert ip.is_raspberry_pi_os(facts) is expected


# plain Debian: today's behaviour


def test_debian_installs_as_before_without_system_site_packages_or_picamera2():
    plan = ip.plan(replace(DEBIAN, system_versions=NEW_ENOUGH))
    assert not plan.raspberry_pi_os
    assert plan.apt_packages == ()
    assert (plan.venv, plan.venv_args, plan.pip_target) == ("create", (), ".")
    assert not plan.pin_system_packages and plan.constraints == ()
    assert not plan.check_picamera2
    assert (plan.notes, plan.errors) == ((), ())


@pytest.mark.parametrize("system_site_packages", [False, True])
def test_debian_keeps_an_existing_venv_whatever_it_sees(system_site_packages):
    assert ip.plan(replace(DEBIAN, venv_system_site_packages=system_site_packages)).venv == "keep"


def test_debian_test_mode_installs_todays_packages_and_libcap_dev():
    plan = ip.plan(replace(DEBIAN, test=True))
    assert plan.apt_packages == (*TEST_DEBS, "libcap-dev")
    assert plan.notes == (f"installing {' '.join(TEST_DEBS)} libcap-dev",)
    assert plan.pip_target == ".[test]"
    assert not plan.check_picamera2 and plan.venv_args == ()


def test_debian_test_mode_leaves_out_what_dpkg_has():
    plan = ip.plan(replace(DEBIAN, test=True, installed_debs=frozenset({"chromium", "ffmpeg", "libcap-dev"})))
    assert plan.apt_packages == tuple(deb for deb in TEST_DEBS if deb not in ("chromium", "ffmpeg"))
    assert plan.apt_packages[:6] == ("mosquitto", "nginx", "libnginx-mod-rtmp", "iproute2", "xvfb", "prometheus")


def test_debian_test_mode_installs_debians_npm_only_where_no_npm_is_on_path():
    everything = frozenset([*TEST_DEBS, "libcap-dev"])
    assert ip.plan(replace(DEBIAN, test=True, installed_debs=everything, npm=True)).apt_packages == ()
    assert ip.plan(replace(DEBIAN, test=True, installed_debs=everything, npm=False)).apt_packages == ("npm",)
    assert ip.plan(replace(DEBIAN, test=False, npm=False)).apt_packages == ()  # the server itself needs no npm


def test_debian_test_mode_with_everything_installed_calls_no_apt():
    plan = ip.plan(replace(DEBIAN, test=True, root=False, installed_debs=frozenset([*TEST_DEBS, "libcap-dev"])))
    assert (plan.apt_packages, plan.errors) == ((), ())


def test_debian_without_venv_module_installs_python3_venv_first():
    plan = ip.plan(replace(DEBIAN, venv_module=False, test=True))
    assert plan.apt_packages == ("python3-venv", *TEST_DEBS, "libcap-dev")


def test_debian_not_as_root_names_every_package_to_install():
    plan = ip.plan(replace(DEBIAN, venv_module=False, root=False))
    assert plan.apt_packages == ()
    assert plan.errors == (
        "need root to install python3-venv: run `sudo apt install python3-venv`, then scripts/install.sh again",
    )


# no apt


def test_without_apt_a_missing_venv_module_is_named_and_no_apt_is_planned():
    plan = ip.plan(replace(DEBIAN, apt_get=False, venv_module=False))
    assert plan.apt_packages == ()
    assert len(plan.errors) == 1
    assert (
        "no apt-get" in plan.errors[0] and "Python's venv module and ensurepip (Debian: python3-venv)" in plan.errors[0]
    )


def test_without_apt_a_pi_missing_picamera2_names_it():
    plan = ip.plan(replace(PI, apt_get=False, picamera2_installed=False))
    assert plan.apt_packages == ()
    assert len(plan.errors) == 1 and "picamera2 with libcamera's Python bindings" in plan.errors[0]


def test_without_apt_test_packages_are_named_and_the_install_goes_on():
    plan = ip.plan(replace(DEBIAN, apt_get=False, test=True))
    assert (plan.apt_packages, plan.errors) == ((), ())
    assert plan.notes == (
        f"no apt-get here: install {', '.join([*TEST_DEBS, 'libcap-dev'])} (Debian's names) or this system's equivalents before running the tests",
    )


def test_without_apt_and_nothing_missing_plans_as_on_debian():
    plan = ip.plan(replace(DEBIAN, apt_get=False))
    assert plan == ip.plan(DEBIAN)


# versions and requirements


@pytest.mark.parametrize(
    ("version", "op", "spec", "expected"),
    [
        ("1.24.2", ">=", "1.26", False),
        ("1.26.0", ">=", "1.26", True),
        ("1.26", "==", "1.26.0", True),
        ("2.0.0", "<", "2", False),
        ("1.99", "<", "2", True),
        ("14.2.0", ">", "14", True),
        ("9.1.0", "<=", "9.1", True),
        ("1.16.1", "!=", "1.16.0", True),
        ("1.8.2", "~=", "1.8.0", True),
        ("1.9.0", "~=", "1.8.0", False),
        ("1.24.2", "==", "1.*", True),
        ("2.0.1", "!=", "2.0.*", False),
        ("1.24.2", "===", "1.24.2", True),
        ("1:1.24.2-1+deb12u1", ">=", "1.24", True),  # a Debian version string reads as its upstream release
    ],
)
def test_satisfies(version, op, spec, expected):
    assert ip.satisfies(version, op, spec) is expected


def test_requirement_specifiers_drop_extras_markers_and_urls():
    found = ip.requirement_specifiers(
        [
            "uvicorn[standard]>=0.35",
            "aiortc>=1.16,<2",
            "Simple_JPEG (>=1.7)",
            "numpy; python_version>'3'",
            "x @ https://h/x.whl",
        ]
    )
    assert found == {
        "uvicorn": [(">=", "0.35")],
        "aiortc": [(">=", "1.16"), ("<", "2")],
        "simple-jpeg": [(">=", "1.7")],
        "numpy": [],
    }


def test_project_requirements_read_pyproject_with_the_test_extra_only_under_test():
    plain = ip.project_requirements(ROOT / "pyproject.toml", test=False)
    with_test = ip.project_requirements(ROOT / "pyproject.toml", test=True)
    assert any(req.startswith("numpy") for req in plain)
    assert not any(req.startswith("pytest") for req in plain)
    assert set(plain) < set(with_test) and any(req.startswith("pytest") for req in with_test)


# gather, the CLI and install.sh


def _project(tmp_path: Path, venv_cfg: str | None) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    if venv_cfg is not None:
        (project / ".venv" / "bin").mkdir(parents=True)
        (project / ".venv" / "bin" / "python").write_text("#!/bin/sh\n")
        (project / ".venv" / "bin" / "python").chmod(0o755)
        (project / ".venv" / "pyvenv.cfg").write_text(venv_cfg)
    return project


def test_gather_reads_raspberry_pi_os_files_and_the_venv_config(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "etc" / "os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    )
    (root / "etc" / "rpi-issue").write_text("Raspberry Pi reference 2024-11-19\n")
    (root / "proc" / "device-tree" / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    project = _project(tmp_path, "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n")
    facts = ip.gather(test=True, root=root, project=project)
    assert facts.os_release == {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian", "VERSION_ID": "12"}
    assert facts.rpi_issue and facts.device_tree_model == "Raspberry Pi 5 Model B Rev 1.0"
    assert not facts.apt_get  # no usr/bin/apt-get under this root
    assert facts.venv_system_site_packages is False
    assert facts.test and any(req.startswith("pytest") for req in facts.requirements)
    assert facts.root is (os.geteuid() == 0)
    assert not facts.system_python  # pytest runs in .venv, not Debian's python3
    assert ip.is_raspberry_pi_os(facts)


def test_gather_without_os_files_or_venv(tmp_path):
    (tmp_path / "root" / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "root" / "usr" / "bin" / "apt-get").write_text("")
    facts = ip.gather(root=tmp_path / "root", project=_project(tmp_path, None))
    assert (facts.os_release, facts.rpi_issue, facts.device_tree_model) == ({}, False, "")
    assert facts.apt_get and facts.venv_system_site_packages is None
    assert not ip.is_raspberry_pi_os(facts)


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ("include-system-site-packages = true\n", True),
        ("Include-System-Site-Packages=True\n", True),
        ("home = /usr/bin\n", False),
    ],
)
def test_venv_system_site_packages(tmp_path, cfg, expected):
    assert ip.venv_system_site_packages(_project(tmp_path, cfg) / ".venv") is expected


def test_shell_assignments_survive_bash_quoting():
    plan = ip.plan(replace(PI, picamera2_installed=False, test=True))
    script = (
        ip.shell_assignments(plan)
        + '\nprintf "%s\\n" "${APT_PACKAGES[@]}" -- "${VENV_ARGS[@]}" -- "$PIP_TARGET" "$PICAMERA2_HINT"'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [
        "python3-picamera2",
        *TEST_DEBS,
        "libcap-dev",
        "--",
        "--system-site-packages",
        "--",
        ".[test]",
        ip.PICAMERA2_HINT,
    ]


def test_install_sh_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPTS / "install.sh")], check=True)


def _system_python3() -> str:
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3")
    if python is None:
        pytest.skip("no python3")
    return python


@pytest.mark.skipif(
    Path("/etc/rpi-issue").exists() or Path("/proc/device-tree/model").exists(), reason="plans for plain Debian only"
)
def test_cli_with_the_system_python3_plans_for_this_plain_debian_machine():
    python = _system_python3()
    script = f'eval "$({python} scripts/install_plan.py)"; printf "%s\\n" "${{APT_PACKAGES[*]}}" "$VENV" "${{#VENV_ARGS[@]}}" "$PIP_TARGET" "$PIN_SYSTEM_PACKAGES" "$CHECK_PICAMERA2"'
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    apt, venv, venv_args, target, pin, check = result.stdout.splitlines()
    assert "python3-picamera2" not in apt.split()
    assert venv in ("create", "keep") and venv_args == "0"
    assert (target, pin, check) == (".", "0", "0")

    result = subprocess.run(
        [python, "scripts/install_plan.py", "--test", "--json"], cwd=ROOT, capture_output=True, text=True
    )
    plan = json.loads(result.stdout)
    assert not plan["raspberry_pi_os"] and plan["pip_target"] == ".[test]" and plan["venv_args"] == []
    assert set(plan["apt_packages"]) <= {*TEST_DEBS, "libcap-dev", "python3-venv"}


def test_cli_constraints_are_written_from_facts_after_apt(tmp_path):
    facts = replace(PI, root=False, test=True, system_versions=BOOKWORM, requirements=TEST_REQUIREMENTS)
    (tmp_path / "facts.json").write_text(json.dumps(_facts_json(facts)))
    constraints = tmp_path / "constraints.txt"
    command = [sys.executable, str(SCRIPTS / "install_plan.py"), "--facts", str(tmp_path / "facts.json")]
    # The test packages still missing would stop the plan, not the constraints that come after apt.
    assert subprocess.run(command, capture_output=True, text=True).returncode == 1
    result = subprocess.run([*command, "--constraints", str(constraints)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert constraints.read_text() == "numpy<2\n"
    assert result.stderr.splitlines() == [f"install.sh: {note}" for note in ip.plan(facts).pin_notes]


def test_cli_constraints_are_empty_off_a_pi(tmp_path):
    (tmp_path / "facts.json").write_text(json.dumps(_facts_json(replace(DEBIAN, system_versions=NEW_ENOUGH))))
    constraints = tmp_path / "constraints.txt"
    command = [sys.executable, str(SCRIPTS / "install_plan.py"), "--facts", str(tmp_path / "facts.json")]
    subprocess.run([*command, "--constraints", str(constraints)], check=True)
    assert constraints.read_text() == ""


# install.sh against stand-ins: python3 runs the real plan from a facts file, apt-get and the venv's python only log.

_PYTHON3 = """#!/bin/bash
if [ "$1" = scripts/install_plan.py ]; then shift; exec {real} scripts/install_plan.py --facts {facts} "$@"; fi
if [ "$1" = -m ] && [ "$2" = venv ]; then
  echo "venv ${{*:3}}" >> {log}
  mkdir -p "${{@: -1}}/bin" && cp {venv_python} "${{@: -1}}/bin/python"
  exit 0
fi
exec {real} "$@"
"""
_VENV_PYTHON = """#!/bin/bash
if [ "$1" = -m ] && [ "$2" = pip ]; then
  echo "pip ${{*:3}}" | sed 's/--constraint [^ ]*/--constraint FILE/' >> {log}
  for ((i = 1; i < $#; i++)); do [ "${{!i}}" = --constraint ] && j=$((i + 1)) && sed 's/^/constraint /' "${{!j}}" >> {log}; done
  exit 0
fi
echo "python $*" >> {log}
echo "ModuleNotFoundError: No module named 'picamera2'" >&2
exit {import_rc}
"""


def _run_install_sh(
    tmp_path: Path, facts: dict, *args: str, import_rc: int = 1
) -> tuple[subprocess.CompletedProcess, list[str]]:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    for name in ("install.sh", "install_plan.py"):
        shutil.copy(SCRIPTS / name, project / "scripts")
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.write_text("")
    (tmp_path / "facts.json").write_text(json.dumps(facts))
    values = {
        "real": sys.executable,
        "facts": tmp_path / "facts.json",
        "log": log,
        "venv_python": bin_dir / "venv-python",
    }
    stubs = {
        "python3": _PYTHON3.format(**values),
        "venv-python": _VENV_PYTHON.format(log=log, import_rc=import_rc),
        "apt-get": f'#!/bin/bash\necho "apt-get $*" >> {log}\n',
        # The test-only downloads (npm's packages, simple-whip-server's .deb) are logged, not fetched.
        "npm": f'#!/bin/bash\necho "npm $*" >> {log}\n',
        "dpkg-deb": f'#!/bin/bash\necho "dpkg-deb $1 $(basename "$2") $3" >> {log}\n',
    }
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "scripts/install.sh", *args], cwd=project, env=env, capture_output=True, text=True)
    return result, log.read_text().splitlines()


def _facts_json(facts) -> dict:
    data = {name: getattr(facts, name) for name in facts.__dataclass_fields__}
    return {**data, "installed_debs": sorted(facts.installed_debs), "os_release": dict(facts.os_release)}


def test_install_sh_on_debian_does_what_it_did(tmp_path):
    result, log = _run_install_sh(tmp_path, _facts_json(DEBIAN), "--test")
    assert result.returncode == 0, result.stderr
    assert log == [
        "apt-get update -qq",
        f"apt-get install -y -qq --no-install-recommends {' '.join(TEST_DEBS)} libcap-dev",
        "venv .venv",
        "pip install -q --upgrade pip",
        "pip install -q -e .[test]",
        "pip install -q --no-deps picamera2==0.3.36",  # the real picamera2, over the fake libcamera in tests/fakes
        "npm install --prefix build/node --no-save --no-package-lock --no-audit --no-fund --loglevel=error "
        "jmuxer@2.1.1 whip-whep@1.2.0 express@4.18.2 body-parser@1.20.1 cors@2.8.5 colors@1.4.0 debug@4.3.4 "
        "websocket@1.0.34 async@3.2.4",
        "apt-get download -qq simple-whip-server",  # its Debian package conflicts with NodeSource's nodejs: unpacked
        "dpkg-deb -x simple-whip-server_*.deb build/simple-whip-server",
        "venv build/rosvenv",  # ROS 2 wheels in a venv of their own, for the [ros2] tests
        "pip install -q ros-rclpy==9.1.2 ros-sensor-msgs==5.5.1 ros-std-msgs==5.5.1 ros-rmw-fastrtps-cpp==9.3.3",
    ]
    assert f"install.sh: installing {' '.join(TEST_DEBS)} libcap-dev" in result.stderr


def test_install_sh_on_a_pi_installs_picamera2_recreates_the_venv_pins_and_reports_a_failed_import(tmp_path):
    facts = replace(PI, picamera2_installed=False, venv_system_site_packages=False, system_versions=BOOKWORM)
    project_venv = tmp_path / "project" / ".venv"
    project_venv.mkdir(parents=True)
    (project_venv / "made-by-hand").write_text("")
    result, log = _run_install_sh(tmp_path, _facts_json(facts))
    assert result.returncode == 1
    assert log == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends python3-picamera2",
        "venv --system-site-packages .venv",
        "pip install -q --upgrade pip",
        "pip install -q --constraint FILE -e .",
        "constraint numpy<2",
        "constraint pillow==9.4.0",
        "python -c import picamera2",
    ]
    assert not (project_venv / "made-by-hand").exists()
    assert "install.sh: recreating .venv with --system-site-packages" in result.stderr
    assert "install.sh: Raspberry Pi OS has numpy 1.24.2" in result.stderr
    assert (
        "install.sh: .venv/bin/python cannot import picamera2: ModuleNotFoundError: No module named 'picamera2'"
        in result.stderr
    )
    assert "`sudo apt install python3-picamera2`" in result.stderr


def test_install_sh_on_a_pi_succeeds_when_picamera2_imports(tmp_path):
    result, log = _run_install_sh(tmp_path, _facts_json(PI), import_rc=0)
    assert result.returncode == 0, result.stderr
    assert log[0] == "venv --system-site-packages .venv"
    assert log[-1] == "python -c import picamera2"
    assert "constraint numpy==1.26.4" in log


def test_install_sh_on_a_pi_not_as_root_changes_nothing(tmp_path):
    result, log = _run_install_sh(tmp_path, _facts_json(replace(PI, picamera2_installed=False, root=False)))
    assert result.returncode == 1
    assert log == []
    assert "run `sudo apt install python3-picamera2`" in result.stderr
