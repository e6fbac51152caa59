"""Processing control of one stream: overlays, regions of interest, stabilization and plugins; persisted and published."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vergence.config import PluginSettings
from vergence.control.commands import OverlayChange, Roi
from vergence.errors import CommandError, InvalidCommand, NotFound
from vergence.events import EventBus
from vergence.pipeline.overlay import OverlaySettings, RoiBox, TextItem
from vergence.pipeline.plugins import Plugin, PluginError, PluginSpec, load_module
from vergence.stream import Stream

log = logging.getLogger(__name__)
# Plugins vergence ships: importable by name at run time (their code is vergence's own).
SHIPPED_PLUGINS = "vergence.plugins."

MAX_ROIS = 64


def check_runtime_plugin(settings: PluginSettings, plugin_dir: Path | None) -> PluginSettings:
    """Refuse (CommandError "forbidden") a plugin added at run time unless it is one vergence ships (a module of
    `vergence.plugins`) or a file in `plugin_dir` that only the service user (or root) owns and can write, in a
    directory likewise. A plugin is code run as vergence: a file another account can write or swap would be that
    account running code as the service."""
    if settings.module is not None:
        if settings.module.startswith(SHIPPED_PLUGINS):
            return settings
        raise CommandError(
            f"plugin {settings.name}: at run time only vergence's own modules ({SHIPPED_PLUGINS}…) or a file in "
            "[processing] plugin_dir; list other modules under [[cameras.plugins]] in the config",
            code="forbidden",
        )
    if plugin_dir is None:
        raise CommandError(
            "plugin files cannot be added at run time: set [processing] plugin_dir to a directory only the service "
            "user can write, or list the plugin under [[cameras.plugins]] in the config",
            code="forbidden",
        )
    directory = plugin_dir.expanduser().resolve()
    path = (directory / (settings.path or "")).resolve()  # an absolute path stays itself; a symlink is followed
    if path.parent != directory:
        raise CommandError(f"plugin {settings.name}: {settings.path} is not a file in {directory}", code="forbidden")
    if not path.is_file():
        raise NotFound(f"plugin {settings.name}: no file {path}")
    for place in (directory, path):
        info = os.stat(place)
        if info.st_uid not in (0, os.geteuid()) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise CommandError(
                f"plugin {settings.name}: {place} must be owned by the service user and writable by nobody else",
                code="forbidden",
            )
    return settings.model_copy(update={"path": str(path)})  # loaded from where it was checked, not a name again


class ProcessingController:
    """Overlays, ROIs, stabilization and plugins of one stream. Runs on the event loop; each change reaches the capture
    thread as one reference swap on `stream.processing`."""

    def __init__(
        self,
        stream: Stream,
        saved: dict[str, Any],
        budget_ms: float,
        on_change: Callable[[], None],
        events: EventBus,
        plugin_dir: Path | None = None,
    ) -> None:
        self.stream = stream
        self.processing = stream.processing
        self.budget_ms = budget_ms
        self.plugin_dir = plugin_dir
        self._on_change = on_change
        self._events = events
        self.rois: dict[str, Roi] = {}
        for name, values in saved.get("rois", {}).items():
            try:
                self.rois[str(name)] = Roi.model_validate(values)
            except ValidationError:
                log.warning("ignoring saved ROI %r of %s", name, stream.id)
        try:
            self._apply_overlay(OverlayChange.model_validate(saved.get("overlay", {})))
        except (ValidationError, ValueError):
            log.warning("ignoring saved overlay of %s", stream.id)
        self.processing.stabilize = bool(saved.get("stabilize", False))
        self._push_rois()
        self.plugins: dict[str, Plugin] = {}
        self.load_errors: dict[str, str] = {}  # plugins that failed to load at start: listed with their error
        self._runtime_plugins: dict[str, PluginSettings] = {}  # added over the API: kept across restarts
        enabled = saved.get("plugins_enabled", {})
        specs = list(stream.camera.plugins)
        for values in saved.get("plugins", []):
            try:
                settings = PluginSettings.model_validate(values)
            except ValidationError:
                log.warning("ignoring saved plugin %r of %s", values, stream.id)
                continue
            self._runtime_plugins[settings.name] = settings
            specs.append(settings)
        runtime = set(self._runtime_plugins)
        for settings in specs:
            settings = settings.model_copy(update={"enabled": bool(enabled.get(settings.name, settings.enabled))})
            try:
                if settings.name in runtime:  # saved from the API: allowed only as it would be now
                    settings = check_runtime_plugin(settings, self.plugin_dir)
                self._load(settings)
            except (CommandError, PluginError) as err:  # the stream goes on without it; the API shows the error
                log.error("%s", err)
                self.load_errors[settings.name] = str(err)

    # ---- overlays

    def _apply_overlay(self, change: OverlayChange) -> None:
        current = self.processing.overlay
        changes = change.model_dump(include=set(OverlayChange.model_fields), exclude_none=True)
        if "texts" in changes:
            changes["texts"] = [TextItem(**text) for text in changes["texts"]]
        values = {**{f.name: getattr(current, f.name) for f in fields(current)}, **changes}
        self.processing.overlay = OverlaySettings(**values)  # a new object: the capture thread sees old or new, whole

    def set_overlay(self, change: OverlayChange) -> dict[str, Any]:
        """Change any overlay settings; the others stay."""
        try:
            self._apply_overlay(change)
        except ValueError as err:
            raise InvalidCommand(str(err)) from None
        self._changed("overlay", self.describe_overlay())
        return self.describe_overlay()

    def describe_overlay(self) -> dict[str, Any]:
        return asdict(self.processing.overlay)

    # ---- regions of interest

    def set_roi(self, name: str, roi: Roi) -> dict[str, Any]:
        """Create or replace the ROI `name`."""
        if name not in self.rois and len(self.rois) >= MAX_ROIS:
            raise CommandError(f"{self.stream.id} already has {MAX_ROIS} ROIs")
        self.rois[name] = roi
        self._push_rois()
        self._changed("rois", {"rois": self.describe_rois()})
        return {"name": name, **roi.model_dump()}

    def delete_roi(self, name: str) -> dict[str, Any]:
        if self.rois.pop(name, None) is None:
            raise NotFound(f"no ROI {name!r} on {self.stream.id}")
        self._push_rois()
        self._changed("rois", {"rois": self.describe_rois()})
        return {"stream": self.stream.id, "rois": self.describe_rois()}

    def describe_rois(self) -> list[dict[str, Any]]:
        return [{"name": name, **roi.model_dump()} for name, roi in sorted(self.rois.items())]

    def _push_rois(self) -> None:
        self.processing.rois = tuple(
            RoiBox(name, roi.x1, roi.y1, roi.x2, roi.y2, roi.colour) for name, roi in sorted(self.rois.items())
        )

    # ---- stabilization

    def set_stabilize(self, enabled: bool) -> dict[str, Any]:
        self.processing.stabilize = enabled
        self._changed("stabilize", {"enabled": enabled})
        return {"stream": self.stream.id, "enabled": enabled}

    # ---- plugins

    def _load(self, settings: PluginSettings) -> Plugin:
        if settings.name in self.plugins:
            raise CommandError(f"{self.stream.id} already has a plugin named {settings.name!r}")
        spec = PluginSpec(settings.name, settings.path, settings.module, settings.enabled, dict(settings.options))
        module = load_module(spec)
        stream = self.stream
        plugin = Plugin(
            spec,
            module,
            stream.id,
            self.budget_ms,
            self._events.publish_threadsafe,  # plugins speak from capture and plugin threads
            lambda: self.processing.plugin_context(stream.info.width, stream.info.height),
        )
        self.plugins[settings.name] = plugin
        self.load_errors.pop(settings.name, None)
        self.processing.plugins = tuple(self.plugins.values())
        return plugin

    def add_plugin(self, settings: PluginSettings) -> dict[str, Any]:
        """Load a plugin now (from a file path or a module name) and keep it across restarts."""
        settings = check_runtime_plugin(settings, self.plugin_dir)
        try:
            plugin = self._load(settings)
        except PluginError as err:
            raise InvalidCommand(str(err)) from None
        self._runtime_plugins[settings.name] = settings
        self._changed("plugins", {"plugins": self.describe_plugins()})
        return plugin.describe()

    def set_plugin_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        plugin = self._plugin(name)
        plugin.set_enabled(enabled)
        described = plugin.describe()
        self._events.publish({"type": "plugin", **described})
        self._on_change()
        return described

    def remove_plugin(self, name: str) -> dict[str, Any]:
        plugin = self._plugin(name)
        plugin.close()
        del self.plugins[name]
        self._runtime_plugins.pop(name, None)
        self.processing.plugins = tuple(self.plugins.values())
        self._changed("plugins", {"plugins": self.describe_plugins()})
        return {"stream": self.stream.id, "plugins": self.describe_plugins()}

    def _plugin(self, name: str) -> Plugin:
        plugin = self.plugins.get(name)
        if plugin is None:
            raise NotFound(f"no plugin {name!r} on {self.stream.id}; plugins: {', '.join(self.plugins) or 'none'}")
        return plugin

    def describe_plugins(self) -> list[dict[str, Any]]:
        listed = [plugin.describe() for plugin in self.plugins.values()]
        listed += [
            {"stream": self.stream.id, "name": name, "state": "error", "enabled": False, "error": message}
            for name, message in self.load_errors.items()
        ]
        return listed

    # ---- common

    def _changed(self, kind: str, body: dict[str, Any]) -> None:
        self._events.publish({"type": kind, "stream": self.stream.id, **body})
        self._on_change()

    def describe(self) -> dict[str, Any]:
        """Everything a new controller needs to show this stream's processing."""
        return {
            "overlay": self.describe_overlay(),
            "rois": self.describe_rois(),
            "stabilize": self.processing.stabilize,
            "plugins": self.describe_plugins(),
        }

    def saved(self) -> dict[str, Any]:
        return {
            "overlay": self.describe_overlay(),
            "rois": {name: roi.model_dump() for name, roi in self.rois.items()},
            "stabilize": self.processing.stabilize,
            "plugins": [settings.model_dump(mode="json") for settings in self._runtime_plugins.values()],
            "plugins_enabled": {name: plugin.enabled for name, plugin in self.plugins.items()},
        }

    def close(self) -> None:
        for plugin in self.plugins.values():
            plugin.close()
