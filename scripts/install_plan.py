"""Decide what scripts/install.sh does on this machine: Debian packages, the venv, pip's constraints, the picamera2 check.

Runs with the system python3 before any venv exists, so it uses the standard library alone. `plan(facts)` is pure;
`gather()` reads the facts of the real machine. `python3 scripts/install_plan.py [--test]` prints the plan as bash
assignments for install.sh (`--json`: as JSON) and says on stderr why, exiting 1 when the install cannot go on;
`--constraints FILE` writes pip's constraints once apt has installed what it had to; `--facts FILE` plans for the
machine a JSON file describes.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TEST_DEBS = (
    *("chromium", "mosquitto", "nginx", "libnginx-mod-rtmp", "ffmpeg", "iproute2", "xvfb", "prometheus"),
    # GStreamer: the [rtsp] server (gst-rtsp-server on the system's python3) and the RTSP client the tests play it with.
    *("python3-gi", "gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good"),
    *("gstreamer1.0-tools", "gstreamer1.0-libav"),
    "janus",  # the SFU the [[whip]] tests publish to
)
# npm fetches jMuxer for the tests of pi-h264-to-browser's pages; Debian's package only where no npm is on PATH (NodeSource's
# nodejs, for one, brings its own and conflicts with Debian's).
NPM_DEB = "npm"
TEST_BUILD_DEBS = ("libcap-dev",)  # python-prctl, which the test suite installs, compiles against libcap's headers
VENV_DEB = "python3-venv"
PICAMERA2_DEB = "python3-picamera2"
# Raspberry Pi OS builds these for its python3 and picamera2 loads them: pip must keep the system's versions, above all
# numpy, against which the others' compiled parts were built.
SYSTEM_PINS = ("numpy", "simplejpeg", "av", "pillow")
SYSTEM_PYTHON_DIR = Path("/usr/bin")
PICAMERA2_HINT = (
    "check that python3-picamera2 is installed (`sudo apt install python3-picamera2`), that .venv sees the system's "
    "packages (include-system-site-packages = true in .venv/pyvenv.cfg; if not, `rm -rf .venv`) and that it was made "
    "by Debian's /usr/bin/python3, then run scripts/install.sh again"
)
# Without apt-get, say what to install in words a user of another package manager can act on.
_WITHOUT_APT = {
    VENV_DEB: "Python's venv module and ensurepip (Debian: python3-venv)",
    PICAMERA2_DEB: "picamera2 with libcamera's Python bindings for /usr/bin/python3 (Raspberry Pi OS: python3-picamera2)",
}
_RELEASE = re.compile(r"\d+(?:\.\d+)*")
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*\(?([^;()]*)")
_SPECIFIER = re.compile(r"\s*(===|~=|==|!=|<=|>=|<|>)\s*([^\s,]+)\s*")


@dataclass(frozen=True, slots=True)
class Facts:
    """What install.sh found on the machine."""

    os_release: Mapping[str, str] = field(default_factory=dict)  # /etc/os-release: ID, VERSION_ID, ...
    rpi_issue: bool = False  # /etc/rpi-issue exists (Raspberry Pi OS's build stamp)
    device_tree_model: str = ""  # /proc/device-tree/model, without its trailing NUL
    apt_get: bool = False  # /usr/bin/apt-get exists
    root: bool = False
    venv_module: bool = True  # python3 has venv and ensurepip (Debian splits them into python3-venv)
    system_python: bool = True  # python3 is Debian's /usr/bin one (no venv's, no pyenv's): apt installs for it
    picamera2_installed: bool = False  # python3-picamera2 per dpkg; without dpkg, python3 finds a picamera2 package
    installed_debs: frozenset[str] = frozenset()  # of the Debian packages the plan may want
    venv_system_site_packages: bool | None = None  # the existing .venv's include-system-site-packages; None: no .venv
    system_versions: Mapping[str, str] = field(default_factory=dict)  # of SYSTEM_PINS in python3's site-packages
    requirements: tuple[str, ...] = ()  # vergence's own, with the test extra's under --test
    test: bool = False  # install.sh --test
    npm: bool = True  # an npm command is on PATH


@dataclass(frozen=True, slots=True)
class Plan:
    """What install.sh does, in order: apt, the venv, pip (with constraints), the picamera2 check."""

    raspberry_pi_os: bool = False
    apt_packages: tuple[str, ...] = ()  # to apt-get install (empty when they cannot be: see errors)
    venv: str = "keep"  # "create", "recreate" (remove .venv first) or "keep"
    venv_args: tuple[str, ...] = ()  # for `python3 -m venv`
    pip_target: str = "."
    pin_system_packages: bool = False  # write constraints after apt (`--constraints FILE`) and give them to pip
    constraints: tuple[str, ...] = ()  # pip constraint lines, as far as the system's versions are known yet
    check_picamera2: bool = False  # .venv/bin/python must import picamera2 at the end
    notes: tuple[str, ...] = ()  # said on stderr; the install goes on
    pin_notes: tuple[str, ...] = ()  # said with the constraints
    errors: tuple[str, ...] = ()  # said on stderr; install.sh stops before changing anything


def is_raspberry_pi_os(facts: Facts) -> bool:
    """Tell Raspberry Pi OS (or another OS on a Raspberry Pi) from other systems."""
    os_id = facts.os_release.get("ID", "")
    return (
        os_id == "raspbian"  # the 32-bit image
        or (os_id == "debian" and facts.rpi_issue)  # the 64-bit image says debian
        or facts.device_tree_model.startswith("Raspberry Pi")
    )


def plan(facts: Facts) -> Plan:
    """Decide the install from the facts."""
    pi = is_raspberry_pi_os(facts)
    notes: list[str] = []
    errors: list[str] = []
    if pi and not facts.system_python:
        errors.append(
            "python3 here is not Debian's /usr/bin/python3, so a venv made from it cannot see Raspberry Pi OS's "
            "picamera2: put /usr/bin first on PATH (or `pyenv shell system`, or leave the active venv) and run "
            "scripts/install.sh again"
        )

    wanted: list[str] = []
    if not facts.venv_module:
        wanted.append(VENV_DEB)
    if pi and not facts.picamera2_installed:
        wanted.append(PICAMERA2_DEB)
    needed_now = list(wanted)  # without these there is no usable install; test packages are only needed by the tests
    if facts.test:
        wanted += [deb for deb in TEST_DEBS + TEST_BUILD_DEBS if deb not in facts.installed_debs]
        if not facts.npm:
            wanted.append(NPM_DEB)

    apt_packages: tuple[str, ...] = ()
    if wanted and not facts.apt_get:
        # Never call apt-get where there is none: name what is missing instead.
        if needed_now:
            what = "; ".join(_WITHOUT_APT[deb] for deb in needed_now)
            errors.append(
                f"this machine has no apt-get to install what vergence needs: {what}. Install it, then run scripts/install.sh again"
            )
        if rest := [deb for deb in wanted if deb not in needed_now]:
            notes.append(
                f"no apt-get here: install {', '.join(rest)} (Debian's names) or this system's equivalents before running the tests"
            )
    elif wanted and not facts.root:
        names = " ".join(wanted)
        errors.append(f"need root to install {names}: run `sudo apt install {names}`, then scripts/install.sh again")
    elif wanted:
        apt_packages = tuple(wanted)
        notes.append(f"installing {' '.join(wanted)}")

    if facts.venv_system_site_packages is None:
        venv = "create"
    elif pi and not facts.venv_system_site_packages:
        venv = "recreate"
        notes.append(
            "recreating .venv with --system-site-packages: the one there cannot see Raspberry Pi OS's picamera2 "
            "(what was installed into it by hand must be installed again)"
        )
    else:
        venv = "keep"

    constraints: tuple[str, ...] = ()
    pin_notes: tuple[str, ...] = ()
    if pi:
        constraints, pin_notes, pin_errors = pins(facts.system_versions, facts.requirements)
        errors += pin_errors

    return Plan(
        raspberry_pi_os=pi,
        apt_packages=apt_packages,
        venv=venv,
        venv_args=("--system-site-packages",) if pi else (),
        pip_target=".[test]" if facts.test else ".",
        pin_system_packages=pi,
        constraints=constraints,
        check_picamera2=pi,
        notes=tuple(notes),
        pin_notes=pin_notes,
        errors=tuple(errors),
    )


def pins(
    versions: Mapping[str, str], requirements: Iterable[str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Return pip's constraint lines keeping the system's packages, with notes and errors where vergence needs newer."""
    specifiers = requirement_specifiers(requirements)
    lines: list[str] = []
    notes: list[str] = []
    errors: list[str] = []
    for name in SYSTEM_PINS:
        version = versions.get(name)
        if version is None:
            continue
        wanted = specifiers.get(name, [])
        if all(satisfies(version, op, spec) for op, spec in wanted):
            lines.append(f"{name}=={version}")
            continue
        # Pinning an older version than vergence requires would only make pip give up, so the venv gets its own copy.
        need = name + ",".join(op + spec for op, spec in wanted)
        if name == "numpy":
            # NumPy keeps its binary interface within a major version: the system's modules compiled against numpy 1.24
            # load with 1.26, never with 2.x.
            major = release(version)[0]
            if any(op in ("==", "===", ">=", ">", "~=") and release(spec)[:1] > (major,) for op, spec in wanted):
                errors.append(
                    f"vergence needs {need} but Raspberry Pi OS's picamera2 is built against numpy {version}: "
                    f"a numpy {major + 1} in .venv would break it. This needs a newer Raspberry Pi OS release"
                )
            else:
                lines.append(f"numpy<{major + 1}")
                notes.append(
                    f"Raspberry Pi OS has numpy {version}, vergence needs {need}: .venv gets a newer numpy {major}.x, which picamera2's compiled parts still load"
                )
        else:
            notes.append(
                f"Raspberry Pi OS has {name} {version}, vergence needs {need}: .venv gets its own {name}, which picamera2 then uses too"
            )
    return tuple(lines), tuple(notes), tuple(errors)


def normalize(name: str) -> str:
    """Return a distribution name in PEP 503's form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_specifiers(requirements: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """Map each requirement's name to its version specifiers (extras and markers dropped)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if match is None or "@" in match.group(2):  # a direct URL says no version
            continue
        specs = found.setdefault(normalize(match.group(1)), [])
        for part in match.group(2).split(","):
            if spec := _SPECIFIER.fullmatch(part):
                specs.append((spec.group(1), spec.group(2)))
    return found


def release(version: str) -> tuple[int, ...]:
    """Return a version's release numbers: 1.24.2 from 1.24.2rc1 or 1:1.24.2-1."""
    match = _RELEASE.search(version.partition(":")[2] or version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def satisfies(version: str, op: str, spec: str) -> bool:
    """Tell whether a version meets one specifier, comparing release numbers (an unknown operator passes: pip judges)."""
    if op == "===":
        return version == spec
    have = release(version)
    if spec.endswith(".*") and op in ("==", "!="):
        prefix = release(spec[:-2])
        return (have[: len(prefix)] == prefix) == (op == "==")
    want = release(spec)
    width = max(len(have), len(want))
    have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
    if op == "~=":
        prefix = release(spec)[:-1]
        return have >= want and have[: len(prefix)] == prefix
    return {
        "==": have == want,
        "!=": have != want,
        ">=": have >= want,
        ">": have > want,
        "<=": have <= want,
        "<": have < want,
    }.get(op, True)


def gather(test: bool = False, *, root: Path = Path("/"), project: Path = PROJECT) -> Facts:
    """Read the facts of this machine (root: where /etc and /proc are; project: where pyproject.toml and .venv are)."""
    os_release = _read(root / "etc/os-release") or _read(root / "usr/lib/os-release")
    dpkg = shutil.which("dpkg-query") is not None
    installed = installed_debs(TEST_DEBS + TEST_BUILD_DEBS + (PICAMERA2_DEB,)) if dpkg else frozenset()
    system_dirs = site.getsitepackages()  # what a --system-site-packages venv sees (not ~/.local)
    if dpkg:
        picamera2 = PICAMERA2_DEB in installed
    else:
        picamera2 = importlib.machinery.PathFinder.find_spec("picamera2", system_dirs) is not None
    return Facts(
        os_release=parse_os_release(os_release),
        rpi_issue=(root / "etc/rpi-issue").exists(),
        device_tree_model=_read(root / "proc/device-tree/model").rstrip("\x00").strip(),
        apt_get=(root / "usr/bin/apt-get").exists(),
        root=os.geteuid() == 0,
        venv_module=all(importlib.machinery.PathFinder.find_spec(name) is not None for name in ("venv", "ensurepip")),
        system_python=sys.prefix == sys.base_prefix and Path(sys.executable).resolve().parent == SYSTEM_PYTHON_DIR,
        picamera2_installed=picamera2,
        installed_debs=installed,
        venv_system_site_packages=venv_system_site_packages(project / ".venv"),
        system_versions=system_versions(system_dirs),
        requirements=project_requirements(project / "pyproject.toml", test),
        test=test,
        npm=shutil.which("npm") is not None,
    )


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release's KEY=value lines, unquoting the values."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            try:
                words = shlex.split(value)
            except ValueError:  # an unbalanced quote: keep the text as it is
                words = [value.strip("\"'")]
            fields[key] = " ".join(words)
    return fields


def installed_debs(names: Iterable[str]) -> frozenset[str]:
    """Return which of these Debian packages dpkg has installed."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Status}\n", *names], capture_output=True, text=True, check=False
    )  # exits 1 when it knows some name not at all; the others are still listed
    return frozenset(line.split()[0] for line in result.stdout.splitlines() if line.endswith(" install ok installed"))


def venv_system_site_packages(venv: Path) -> bool | None:
    """Return a venv's include-system-site-packages, or None when there is no venv there."""
    if not os.access(venv / "bin" / "python", os.X_OK):
        return None
    for line in _read(venv / "pyvenv.cfg").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "include-system-site-packages":
            return value.strip().lower() == "true"
    return False  # venv's default


def system_versions(paths: list[str]) -> dict[str, str]:
    """Return the versions of SYSTEM_PINS installed in these site-packages directories (first found wins, as in import)."""
    found: dict[str, str] = {}
    for name in SYSTEM_PINS:
        for dist in importlib.metadata.distributions(name=name, path=paths):
            found[name] = dist.version
            break
    return found


def project_requirements(pyproject: Path, test: bool) -> tuple[str, ...]:
    """Return the project's dependencies, with the test extra's when test."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extra = project.get("optional-dependencies", {}).get("test", []) if test else []
    return tuple(project.get("dependencies", [])) + tuple(extra)


def load_facts(text: str, test: bool = False, project: Path = PROJECT) -> Facts:
    """Read facts from JSON (Facts' fields; requirements default to the project's), to plan for another machine."""
    data = json.loads(text)
    data["test"] = test or data.get("test", False)
    data["installed_debs"] = frozenset(data.get("installed_debs", ()))
    if "requirements" in data:
        data["requirements"] = tuple(data["requirements"])
    else:
        data["requirements"] = project_requirements(project / "pyproject.toml", data["test"])
    return Facts(**data)


def shell_assignments(result: Plan) -> str:
    """Render the plan as bash assignments for install.sh to eval."""

    def array(items: Iterable[str]) -> str:
        return "(" + " ".join(shlex.quote(item) for item in items) + ")"

    return "\n".join(
        [
            f"APT_PACKAGES={array(result.apt_packages)}",
            f"VENV={shlex.quote(result.venv)}",
            f"VENV_ARGS={array(result.venv_args)}",
            f"PIP_TARGET={shlex.quote(result.pip_target)}",
            f"PIN_SYSTEM_PACKAGES={int(result.pin_system_packages)}",
            f"CHECK_PICAMERA2={int(result.check_picamera2)}",
            f"PICAMERA2_HINT={shlex.quote(PICAMERA2_HINT)}",
        ]
    )


def _say(lines: Iterable[str]) -> None:
    for line in lines:
        print(f"install.sh: {line}", file=sys.stderr)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    """Print the plan for this machine, or write its constraints; exit 1 when the install cannot go on."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="also what the test suite needs (install.sh --test)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON rather than bash assignments")
    parser.add_argument("--constraints", type=Path, metavar="FILE", help="write pip's constraints to FILE (after apt)")
    parser.add_argument("--facts", type=Path, metavar="FILE", help="plan from facts in a JSON file, not this machine's")
    args = parser.parse_args(argv)
    facts = load_facts(args.facts.read_text(), args.test) if args.facts else gather(args.test)
    result = plan(facts)
    if args.constraints is not None:
        # After apt, with python3-picamera2's packages in place, only the pins are left to decide.
        lines, notes, errors = (
            pins(facts.system_versions, facts.requirements) if result.pin_system_packages else ((), (), ())
        )
        _say(notes)
        args.constraints.write_text("".join(f"{line}\n" for line in lines))
    elif args.json:
        print(json.dumps(asdict(result), indent=2))
        errors = result.errors
    else:
        errors = result.errors
        if not errors:  # what would have been done is no news when nothing is
            _say(result.notes)
            print(shell_assignments(result))
    _say(errors)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
