"""Loading a plugin by module name: a module imported as a plugin runs afresh when added again; any other module
already imported (the standard library, vergence itself) is never re-executed under the running server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vergence.pipeline.plugins import PluginSpec, load_module


def test_an_already_imported_module_is_not_reloaded() -> None:
    json.marker_of_this_test = True  # type: ignore[attr-defined]
    try:
        assert load_module(PluginSpec("j", module="json")) is json
        assert getattr(json, "marker_of_this_test", False)  # a reload would have run json's code again, dropping it
    finally:
        del json.marker_of_this_test  # type: ignore[attr-defined]


def test_a_plugin_module_added_again_runs_its_code_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "counting_plugin.py").write_text(
        "import builtins\nbuiltins.counting_runs = getattr(builtins, 'counting_runs', 0) + 1\n"
        "def process_image(image):\n    return image\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins

    try:
        load_module(PluginSpec("c", module="counting_plugin"))
        assert builtins.counting_runs == 1  # type: ignore[attr-defined]  # imported once, not imported and reloaded
        load_module(PluginSpec("c", module="counting_plugin"))
        assert builtins.counting_runs == 2  # type: ignore[attr-defined]
    finally:
        sys.modules.pop("counting_plugin", None)
        del builtins.counting_runs  # type: ignore[attr-defined]
