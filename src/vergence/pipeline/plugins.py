"""Processing plugins: user code that looks at each frame, draws on it and publishes results, never slowing the stream.

Two signatures are accepted, found by name in the plugin's module:

- the seed projects' `process_image(image)`: a BGR numpy image in; it draws in place and returns anything that is not an
  image (`True`, `None`), or returns the image it made. What it changed is kept as a "sticker" (the changed pixels) and
  shown on the frames. A plugin loaded from a file imports the modules beside it, as it did in the seed projects;
- `process(frame, ctx)`: a `PluginFrame` (read-only planes, `bgr()` on demand) and a `PluginContext` (ROIs, `roi_view`,
  `draw`, the camera's PTZ, `publish`, `options`). Drawings are recorded and drawn on the frames.

Every plugin starts on its own thread (its *branch*: a one-frame mailbox, the newest frame wins), so a slow one costs the
stream nothing; once its calls prove to fit the inline budget it moves inline, where its drawings land on the very frame
it saw. A plugin that raises is disabled and reported; the stream goes on.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from vergence.errors import ConfigError
from vergence.media.frame import Frame
from vergence.metrics import WindowedMean
from vergence.pipeline.draw import Canvas, font_scale, parse_colour
from vergence.pipeline.overlay import RoiBox

log = logging.getLogger(__name__)

#: Calls a plugin makes on its branch before it may move inline.
PROBE_CALLS = 5
#: An inline call this many times over the budget sends the plugin back to its branch.
DEMOTE_FACTOR = 2.0
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")

Emit = Callable[[dict[str, Any]], None]


class PluginError(ConfigError):
    """A plugin could not be loaded or has no usable entry point."""

    code = "plugin_error"


@dataclass(frozen=True, slots=True)
class RoiRect:
    """A region of interest in pixels of the frame a plugin sees."""

    name: str
    x1: int
    y1: int
    x2: int
    y2: int
    colour: str


def roi_rects(rois: Sequence[RoiBox], width: int, height: int) -> dict[str, RoiRect]:
    """Return the ROIs (corners in % of the frame) in pixels of a width x height frame, at least one pixel each way."""
    rects = {}
    for roi in rois:
        x1, x2 = round(roi.x1 * width / 100), round(roi.x2 * width / 100)
        y1, y2 = round(roi.y1 * height / 100), round(roi.y2 * height / 100)
        x1, y1 = min(x1, width - 1), min(y1, height - 1)
        rects[roi.name] = RoiRect(roi.name, x1, y1, max(x2, x1 + 1), max(y2, y1 + 1), roi.colour)
    return rects


class PluginFrame:
    """What a `process(frame, ctx)` plugin sees: the picture (read-only) and where it came from."""

    def __init__(self, frame: Frame) -> None:
        self.width, self.height = frame.width, frame.height
        self.seq, self.capture_ns, self.camera = frame.seq, frame.capture_ns, frame.camera
        self.i420 = frame.image
        self._bgr: np.ndarray | None = None

    def gray(self) -> np.ndarray:
        """Return the luma plane (a view: no copy)."""
        return self.i420[: self.height]

    def bgr(self) -> np.ndarray:
        """Return the picture as BGR, as OpenCV functions expect (converted on the first call only)."""
        if self._bgr is None:
            self._bgr = cv2.cvtColor(self.i420, cv2.COLOR_YUV2BGR_I420)
        return self._bgr


@dataclass(slots=True)
class Drawing:
    """Shapes a plugin asked to draw, in pixels of the frame it saw; replayed onto each frame until its next result."""

    ops: list[tuple[Any, ...]] = field(default_factory=list)

    def rect(self, x1: float, y1: float, x2: float, y2: float, colour: str = "lime", thickness: int = 2) -> None:
        """Draw a rectangle outline."""
        self.ops.append(("rect", round(x1), round(y1), round(x2), round(y2), parse_colour(colour), int(thickness)))

    def line(self, x1: float, y1: float, x2: float, y2: float, colour: str = "lime", thickness: int = 2) -> None:
        """Draw a line."""
        self.ops.append(("line", round(x1), round(y1), round(x2), round(y2), parse_colour(colour), int(thickness)))

    def circle(self, cx: float, cy: float, r: float, colour: str = "lime", thickness: int = 2) -> None:
        """Draw a circle (thickness -1: filled)."""
        self.ops.append(("circle", round(cx), round(cy), round(r), parse_colour(colour), int(thickness)))

    def text(self, text: str, x: float, y: float, colour: str = "white", size_pct: float = 3.0) -> None:
        """Write outlined text with its top-left corner at (x, y), `size_pct` of the frame height tall."""
        self.ops.append(("text", str(text), round(x), round(y), parse_colour(colour), float(size_pct)))

    def replay(self, canvas: Canvas) -> None:
        """Draw every recorded shape on `canvas`."""
        for op in self.ops:
            kind = op[0]
            if kind == "rect":
                canvas.rectangle(*op[1:])
            elif kind == "line":
                canvas.line(*op[1:])
            elif kind == "circle":
                canvas.circle(*op[1:])
            else:
                _, text, x, y, colour, size_pct = op
                scale = font_scale(max(4, round(canvas.height * size_pct / 100)))
                canvas.text(text, x, y, scale=scale, colour_rgb=colour, cache=False)


@dataclass(slots=True)
class Sticker:
    """The pixels a `process_image` plugin changed, per I420 plane: masks and their new values."""

    masks: tuple[np.ndarray, np.ndarray, np.ndarray]
    values: tuple[np.ndarray, np.ndarray, np.ndarray]

    def apply(self, canvas: Canvas) -> None:
        """Paste the changed pixels onto a frame of the same size."""
        for plane, mask, values in zip((canvas.y, canvas.u, canvas.v), self.masks, self.values, strict=True):
            np.copyto(plane, values, where=mask)


def sticker_of(before_bgr: np.ndarray, after_bgr: np.ndarray, width: int, height: int) -> Sticker | None:
    """Return what changed between two BGR pictures as an I420 sticker (None when nothing did)."""
    planes = []
    for bgr in (before_bgr, after_bgr):
        i420 = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420)
        quarter = (height // 2) * (width // 2)
        chroma = i420[height:].reshape(-1)
        planes.append(
            (
                i420[:height],
                chroma[:quarter].reshape(height // 2, width // 2),
                chroma[quarter:].reshape(height // 2, width // 2),
            )
        )
    masks = tuple(a != b for a, b in zip(planes[0], planes[1], strict=True))
    if not any(mask.any() for mask in masks):
        return None
    return Sticker(masks, planes[1])  # type: ignore[arg-type]


class PluginContext:
    """What a `process(frame, ctx)` plugin gets beside the frame: ROIs, drawing, PTZ, options and `publish`."""

    def __init__(
        self,
        camera: str,
        name: str,
        options: dict[str, Any],
        rois: dict[str, RoiRect],
        ptz: dict[str, Any],
        frame: PluginFrame,
        publish: Callable[[dict[str, Any]], None],
    ) -> None:
        self.camera, self.name, self.options = camera, name, options
        self.rois, self.ptz = rois, ptz
        self.draw = Drawing()
        self.log = logging.getLogger(f"vergence.plugin.{name}")
        self._frame = frame
        self._publish = publish

    def roi_view(self, name: str, image: np.ndarray | None = None) -> np.ndarray:
        """Return the part of `image` (default: the frame's BGR picture) inside the ROI `name`."""
        rect = self.rois.get(name)
        if rect is None:
            known = ", ".join(sorted(self.rois)) or "none defined"
            raise KeyError(f"unknown ROI {name!r} (ROIs of {self.camera}: {known})")
        picture = self._frame.bgr() if image is None else image
        return picture[rect.y1 : rect.y2, rect.x1 : rect.x2]

    def publish(self, result: dict[str, Any]) -> None:
        """Send a result (a JSON-able dict) to every controller as a `plugin_result` event."""
        if not isinstance(result, dict):
            raise TypeError(f"publish() takes a dict, not {type(result).__name__}")
        self._publish(result)


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """Where a plugin comes from: a file path or a dotted module name, and its options."""

    name: str
    path: str | None = None
    module: str | None = None
    enabled: bool = True
    options: dict[str, Any] = field(default_factory=dict)


_PLUGIN_MODULES: set[str] = set()  # dotted names imported as plugins


@contextlib.contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """Let a plugin's file import the modules beside it: its folder first on the path while its code runs, then last
    (a helper it imports later is still found; a file there named like a module of the server never shadows it)."""
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)
        if entry not in sys.path:
            sys.path.append(entry)


def load_module(spec: PluginSpec) -> ModuleType:
    """Import a plugin's module from its file or dotted name; PluginError says what went wrong."""
    if not _NAME.match(spec.name):
        raise PluginError(f"plugin name {spec.name!r}: 1-40 letters, digits, '_', '.', '-'")
    if (spec.path is None) == (spec.module is None):
        raise PluginError(f"plugin {spec.name}: give either a path or a module")
    try:
        if spec.path is not None:
            path = Path(spec.path).expanduser()
            if not path.is_file():
                raise PluginError(f"plugin {spec.name}: no file {path}")
            module_spec = importlib.util.spec_from_file_location(f"vergence_plugin_{spec.name}", path)
            if module_spec is None or module_spec.loader is None:
                raise PluginError(f"plugin {spec.name}: {path} is not a Python module")
            module = importlib.util.module_from_spec(module_spec)
            with _importable(path.parent):
                module_spec.loader.exec_module(module)
            return module
        assert spec.module is not None
        if spec.module in _PLUGIN_MODULES and spec.module in sys.modules:
            # Added again (after editing it): run its code afresh. Only a module imported here as a plugin is
            # reloaded; reloading anything else (asyncio, vergence itself) would swap code under the running server.
            return importlib.reload(sys.modules[spec.module])
        module = importlib.import_module(spec.module)
        _PLUGIN_MODULES.add(spec.module)
        return module
    except PluginError:
        raise
    except BaseException as err:  # whatever the plugin's import raised: the stream must go on without it
        where = spec.path or spec.module
        raise PluginError(f"plugin {spec.name}: importing {where} failed: {type(err).__name__}: {err}") from err


@dataclass(slots=True)
class _Result:
    drawing: Drawing | None = None
    sticker: Sticker | None = None


class Plugin:
    """One loaded plugin on one camera: where it runs (branch or inline), its latest drawings, its health."""

    def __init__(
        self,
        spec: PluginSpec,
        module: ModuleType,
        camera: str,
        budget_ms: float,
        emit: Emit,
        context: Callable[[], tuple[dict[str, RoiRect], dict[str, Any]]],
    ) -> None:
        self.spec, self.name, self.camera = spec, spec.name, camera
        self.budget_ms = budget_ms
        self._emit = emit
        self._context = context  # (ROIs in pixels, PTZ state) now, from the stream
        process = getattr(module, "process", None)
        process_image = getattr(module, "process_image", None)
        if callable(process):
            self.kind = "process"
            self._call: Callable[[Frame], _Result] = self._call_process
            self._process = process
        elif callable(process_image):
            self.kind = "process_image"
            self._call = self._call_process_image
            self._process = process_image
        else:
            raise PluginError(
                f"plugin {spec.name}: {module.__name__} has neither process(frame, ctx) nor process_image"
            )
        self.enabled = spec.enabled
        self.error: str | None = None
        self.mode = "branch"  # where it runs now: "branch" (its own thread) or "inline" (the capture thread)
        self.call_ms = WindowedMean(window_s=5.0)
        self._recent_ms: deque[float] = deque(maxlen=PROBE_CALLS)
        self.calls = 0
        self.results = 0
        self._result = _Result()
        self._mailbox: Frame | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    # ---- capture thread

    def offer(self, frame: Frame) -> None:
        """Hand the plugin a frame: run it now when inline, else leave it in the branch's mailbox (newest wins)."""
        if not self.enabled or self.error is not None:
            return
        if self.mode == "inline":
            started = time.perf_counter()
            self._run(frame)
            if (time.perf_counter() - started) * 1000 > DEMOTE_FACTOR * self.budget_ms:
                self._set_mode("branch")
            return
        copy = Frame(
            frame.image.copy(), frame.pix_fmt, frame.width, frame.height, frame.seq, frame.pts, frame.capture_ns
        )
        copy.camera, copy.limited_range = frame.camera, frame.limited_range
        with self._wake:
            self._mailbox = copy
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._branch, name=f"plugin-{self.camera}-{self.name}", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def draw(self, canvas: Canvas) -> None:
        """Draw the plugin's latest result on a frame (a result of an earlier frame, when it runs on its branch)."""
        result = self._result
        if result.sticker is not None and result.sticker.masks[0].shape == canvas.y.shape:
            result.sticker.apply(canvas)
        if result.drawing is not None:
            result.drawing.replay(canvas)

    # ---- the branch thread

    def _branch(self) -> None:
        while True:
            with self._wake:
                while self._mailbox is None and not self._closed and self.mode == "branch":
                    self._wake.wait()
                if self._closed or self.mode != "branch":
                    self._thread = None
                    return
                frame, self._mailbox = self._mailbox, None
            assert frame is not None
            self._run(frame)
            if len(self._recent_ms) == PROBE_CALLS and self.error is None and max(self._recent_ms) <= self.budget_ms:
                self._set_mode("inline")

    # ---- either thread

    def _run(self, frame: Frame) -> None:
        started = time.perf_counter()
        try:
            result = self._call(frame)
        except Exception as err:  # the plugin's bug: disable it, tell everyone, keep streaming
            self._fail(f"{type(err).__name__}: {err}", err)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.call_ms.add(elapsed_ms)
        self._recent_ms.append(elapsed_ms)
        self.calls += 1
        self._result = result  # one reference swap: the capture thread draws either the old or the new result

    def _call_process(self, frame: Frame) -> _Result:
        seen = PluginFrame(frame)
        rois, ptz = self._context()
        ctx = PluginContext(self.camera, self.name, dict(self.spec.options), rois, ptz, seen, self._published(frame))
        self._process(seen, ctx)
        return _Result(drawing=ctx.draw if ctx.draw.ops else None)

    def _call_process_image(self, frame: Frame) -> _Result:
        before = cv2.cvtColor(frame.image, cv2.COLOR_YUV2BGR_I420)
        image = before.copy()
        returned = self._process(image)
        # The seeds' plugins draw into the image and return True; only an array returned is a picture of its own.
        after = returned if isinstance(returned, np.ndarray) else image
        if after.ndim == 2:
            after = cv2.cvtColor(after.astype(np.uint8), cv2.COLOR_GRAY2BGR)
        if after.shape != before.shape:
            raise ValueError(f"process_image returned a {after.shape} image for a {before.shape} one")
        return _Result(sticker=sticker_of(before, after.astype(np.uint8, copy=False), frame.width, frame.height))

    def _published(self, frame: Frame) -> Callable[[dict[str, Any]], None]:
        def publish(result: dict[str, Any]) -> None:
            self.results += 1
            self._emit(
                {
                    "type": "plugin_result",
                    "stream": self.camera,
                    "plugin": self.name,
                    "seq": frame.seq,
                    "capture_ns": frame.capture_ns,
                    "result": result,
                }
            )

        return publish

    def _set_mode(self, mode: str) -> None:
        with self._wake:
            if self.mode == mode:
                return
            self.mode = mode
            self._wake.notify()
        log.info("plugin %s on %s now runs %s (%.1f ms per call)", self.name, self.camera, mode, self.call_ms.mean())
        self._emit({"type": "plugin", **self.describe()})

    def _fail(self, message: str, err: BaseException) -> None:
        self.error = message
        log.error("plugin %s on %s raised and is disabled: %s", self.name, self.camera, message, exc_info=err)
        with self._wake:
            self._wake.notify()
        self._result = _Result()
        self._emit({"type": "plugin", **self.describe()})

    # ---- control

    def set_enabled(self, enabled: bool) -> None:
        """Turn the plugin on or off; turning it on again clears an error and probes it afresh on its branch."""
        self.enabled = enabled
        if enabled:
            self.error = None
            self._recent_ms.clear()
            self._set_mode("branch")
        else:
            self._result = _Result()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    @property
    def state(self) -> str:
        if self.error is not None:
            return "error"
        return self.mode if self.enabled else "disabled"

    def describe(self) -> dict[str, Any]:
        """The plugin as the API lists it."""
        return {
            "stream": self.camera,
            "name": self.name,
            "kind": self.kind,
            "source": self.spec.path or self.spec.module,
            "enabled": self.enabled,
            "state": self.state,
            "error": self.error,
            "calls": self.calls,
            "results": self.results,
            "call_ms": round(self.call_ms.mean(), 3),
            "budget_ms": self.budget_ms,
        }
