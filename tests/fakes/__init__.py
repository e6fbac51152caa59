"""Fakes of what needs hardware, put on sys.path only by the tests that want them: the libcamera binding (with the
Raspberry Pi pipeline handler behind it) and the DRM binding picamera2 imports. picamera2 itself is the real package
from PyPI, installed by the test setup."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

FAKES_DIR = Path(__file__).resolve().parent
_HARDWARE_PACKAGES = ("libcamera", "pykms", "kms")


def use_fake_libcamera(
    monkeypatch: pytest.MonkeyPatch, models: list[str] | tuple[str, ...] = ("imx219",)
) -> ModuleType:
    """Attach these sensor modules to the fake libcamera under the real picamera2; return the fake's `rig`.

    Each test gets a fresh camera manager (picamera2's and libcamera's), fresh counters, and its own tuning environment.
    """
    loaded = sys.modules.get("libcamera")
    if loaded is not None and not str(getattr(loaded, "__file__", "")).startswith(str(FAKES_DIR)):
        pytest.fail("the real libcamera is imported in this process: run the fake's tests apart from hardware tests")
    monkeypatch.syspath_prepend(str(FAKES_DIR))
    monkeypatch.delenv("LIBCAMERA_RPI_TUNING_FILE", raising=False)
    import libcamera
    import picamera2.picamera2

    libcamera.rig.attach(list(models))
    monkeypatch.setattr(libcamera.CameraManager, "_current", None)
    # picamera2 keeps its camera manager on the class: a new one per test, so no camera outlives its test.
    monkeypatch.setattr(picamera2.picamera2.Picamera2, "_cm", picamera2.picamera2.CameraManager())
    from vergence.sources import picamera2_setup

    monkeypatch.setattr(picamera2_setup, "sensor_modes_seen", {})
    monkeypatch.setattr(picamera2_setup, "tunings_open", {})
    return libcamera.rig


def fake_env(models: str = "imx219") -> dict[str, str]:
    """Environment for a vergence process that should find the fake cameras (PYTHONPATH and the sensor list)."""
    import os

    return {
        "PYTHONPATH": os.pathsep.join([str(FAKES_DIR), os.environ.get("PYTHONPATH", "")]),
        "VERGENCE_FAKE_LIBCAMERA_SENSORS": models,
    }


def hide_picamera2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import picamera2` fail, as on a machine without it, for the rest of the test."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("picamera2", *_HARDWARE_PACKAGES)]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("picamera2", "libcamera"):
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]  # None in sys.modules: ImportError
