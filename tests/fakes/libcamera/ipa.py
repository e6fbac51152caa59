"""The Raspberry Pi IPA's part of the fake: what it keeps between configurations (exposure and gain modes and values,
frame duration limits, sync settings), the exposure it chooses, and the software camera sync algorithm (rpi.sync)."""

from __future__ import annotations

import logging
from typing import Any

from . import controls, rig
from .sensors import SensorMode

log = logging.getLogger("libcamera")

EXPOSURE_MARGIN_US = 100  # a frame's exposure ends this long before the next frame starts (the sensor's blanking)
NEEDED_EXPOSURE = 10_000.0  # µs × gain a sensitivity-1.0 mode needs at light 1.0


class Ipa:
    """What the Raspberry Pi IPA keeps between configurations: exposure modes and values, sync settings."""

    def __init__(self) -> None:
        self.exposure_manual = False
        self.exposure_us = 0
        self.gain_manual = False
        self.gain = 1.0
        self.frame_limits_us = (33_333, 33_333)
        self.sync_mode = controls.rpi.SyncModeEnum.Off
        self.sync_frames = 100

    def apply(self, values: dict[str, Any]) -> None:
        """Apply controls (by name) that reach the sensor or the IPA's algorithms."""
        if "AeEnable" in values:
            self.exposure_manual = self.gain_manual = not values["AeEnable"]
        if "ExposureTimeMode" in values:
            self.exposure_manual = int(values["ExposureTimeMode"]) == 1
        if "AnalogueGainMode" in values:
            self.gain_manual = int(values["AnalogueGainMode"]) == 1
        if "ExposureTime" in values:
            self.exposure_us = int(values["ExposureTime"])
        if "AnalogueGain" in values:
            self.gain = float(values["AnalogueGain"])
        if "FrameDurationLimits" in values:
            low, high = (int(v) for v in values["FrameDurationLimits"])
            self.frame_limits_us = (low, high)
        if "SyncMode" in values:
            self.sync_mode = controls.rpi.SyncModeEnum(int(values["SyncMode"]))
        if "SyncFrames" in values:
            self.sync_frames = max(1, int(values["SyncFrames"]))

    def exposure(self, mode: SensorMode, frame_ns: int, light: float) -> tuple[int, float, float]:
        """Return (exposure µs, gain, brightness relative to a right exposure) for a frame of this duration.

        Auto-exposure is right at once (its convergence is not modelled); what is fixed stays fixed, however the light.
        """
        needed = NEEDED_EXPOSURE / max(light, 1e-3) / mode.sensitivity
        longest = max(1, frame_ns // 1000 - EXPOSURE_MARGIN_US)
        if self.exposure_manual and self.exposure_us:
            exposure = min(self.exposure_us, longest)
        elif self.gain_manual and self.gain:
            exposure = min(round(needed / self.gain), longest)
        else:
            exposure = min(round(needed), longest, 66_666)
        if self.gain_manual and self.gain:
            gain = self.gain
        else:
            gain = min(max(needed / max(exposure, 1), 1.0), 16.0)
        brightness = exposure * gain * mode.sensitivity * light / NEEDED_EXPOSURE
        return int(exposure), float(gain), brightness


class SyncState:
    """One run's software camera sync (rpi.sync): fresh at every start()."""

    def __init__(self, supported: bool, record: rig.CameraRecord) -> None:
        self.supported = supported  # the tuning file has rpi.sync
        self.record = record
        self.server_grid: tuple[int, int] | None = None
        self.ready = False

    def step(self, ipa: Ipa, timestamp_ns: int, frame_ns: int) -> tuple[dict[Any, Any], int]:
        """Return this frame's sync metadata and how far to move the next frame (a client falling into step)."""
        mode = ipa.sync_mode
        if mode == controls.rpi.SyncModeEnum.Off or not self.supported:
            return {}, 0
        low, high = ipa.frame_limits_us
        if low != high:
            log.error("RPiSync: Sync algorithm cannot run with a variable frame rate")
            self.record.sync_errors += 1
            return {}, 0
        shift_ns = 0
        if mode == controls.rpi.SyncModeEnum.Server:
            if self.server_grid is None:
                self.server_grid = (timestamp_ns, frame_ns)
                rig.sync_server = self.server_grid
            t0_ns = self.server_grid[0]
        else:
            grid = rig.sync_server
            if grid is None or grid[1] != frame_ns:
                return {controls.rpi.SyncReady: False, controls.rpi.SyncTimer: 0}, 0
            t0_ns = grid[0]
            # Move the next frame onto the server's grid (the real client does it over a few frames).
            next_ns = timestamp_ns + frame_ns
            offset = (next_ns - t0_ns) % frame_ns
            shift_ns = -offset if offset < frame_ns // 2 else frame_ns - offset
        ready_at = t0_ns + ipa.sync_frames * frame_ns
        self.ready = self.ready or timestamp_ns >= ready_at
        timer_us = max(0, (ready_at - timestamp_ns) // 1000)
        return {controls.rpi.SyncReady: self.ready, controls.rpi.SyncTimer: timer_us}, shift_ns
