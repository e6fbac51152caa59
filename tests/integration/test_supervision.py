"""A failing source is restarted with backoff, viewers are told, and H.264 resumes at a keyframe; a finished one ends
the stream after its last picture."""

import asyncio
import threading

import pytest

from tests.aio import run
from vergence.config import CameraSettings, Settings
from vergence.errors import SourceError, SourceFinished
from vergence.events import EventBus
from vergence.hub import Hub, SubscriptionClosed
from vergence.sources.base import create_source, register
from vergence.sources.supervisor import SourceSupervisor
from vergence.sources.testpattern import TestPatternSource
from vergence.stream import Stream


@register("flaky")
class FlakySource(TestPatternSource):
    """The test pattern, failing after `frames_per_run` frames of every run."""

    frames_per_run = 20
    opened = 0

    def open(self):
        type(self).opened += 1
        self._delivered = 0
        return super().open()

    def read(self):
        if self._delivered >= self.frames_per_run:
            raise SourceError("simulated sensor timeout")
        self._delivered += 1
        return super().read()


def test_supervisor_restarts_a_failing_source_and_reports_each_state():
    states = []
    frames = []
    done = threading.Event()

    def on_state(state, message, info):
        states.append((state, message))
        if sum(1 for s, _ in states if s == "restarting") >= 3:
            done.set()

    camera = CameraSettings(source="flaky", size="64x48", fps=200)
    supervisor = SourceSupervisor("cam0", lambda: FlakySource(camera), backoff_min_s=0.01)
    supervisor.start(frames.append, on_state)
    assert done.wait(10)
    supervisor.stop()
    supervisor.stop()
    assert states[0] == ("starting", None) and states[1] == ("running", None)
    assert ("restarting", "simulated sensor timeout") in states
    assert states[-1] == ("stopped", None)
    assert supervisor.restarts >= 3 and len(frames) >= 60


def test_viewers_are_told_and_h264_resumes_at_a_keyframe_after_each_failure():
    async def scenario():
        settings = Settings(cameras=[CameraSettings(source="flaky", size="160x120", fps=60)])
        bus = EventBus(asyncio.get_running_loop())
        events = bus.subscribe("test", maxsize=1000)
        camera = settings.cameras[0]
        feed = SourceSupervisor(camera.id, lambda: create_source(camera), backoff_min_s=0.05)
        stream = Stream(camera, settings, Hub(), asyncio.get_running_loop(), bus, feed)
        subscription = stream.h264.subscribe("gop", max_packets=1000)
        stream.start()
        restarts_seen = 0
        expect_keyframe = True
        try:
            while restarts_seen < 3:
                item = await asyncio.wait_for(subscription.get(), 10)
                if isinstance(item, dict):
                    if item["state"] == "restarting":
                        restarts_seen += 1
                        assert item["message"] == "simulated sensor timeout"
                    if item["state"] == "running":
                        expect_keyframe = True
                    continue
                if expect_keyframe:
                    assert item.keyframe and item.config, f"seq {item.seq} after a restart is not an IDR with SPS/PPS"
                    expect_keyframe = False
        finally:
            subscription.close()
            stream.stop()
        assert feed.restarts >= 3
        # Everyone who tells others about changes heard the same: the source's states on the event bus.
        told = []
        while len([e for e in told if e["state"] == "restarting"]) < 3:
            told.append(await asyncio.wait_for(events.get(), 10))
        assert all(e["type"] == "source" and e["stream"] == "cam0" for e in told), told
        assert told[0]["state"] == "starting" and "running" in [e["state"] for e in told], told
        assert all(e["message"] == "simulated sensor timeout" for e in told if e["state"] == "restarting"), told

    run(scenario())


@register("once")
class OnceSource(TestPatternSource):
    """The test pattern, done for good after `frames` frames, as a file played once."""

    frames = 20

    def open(self):
        self._delivered = 0
        return super().open()

    def read(self):
        if self._delivered >= self.frames:
            raise SourceFinished("played to its end")
        self._delivered += 1
        return super().read()


def test_a_finished_source_ends_the_stream_after_its_last_picture_and_is_not_restarted():
    async def scenario():
        settings = Settings(cameras=[CameraSettings(source="once", size="160x120", fps=60)])
        camera = settings.cameras[0]
        feed = SourceSupervisor(camera.id, lambda: create_source(camera), backoff_min_s=0.01)
        stream = Stream(camera, settings, Hub(), asyncio.get_running_loop(), EventBus(asyncio.get_running_loop()), feed)
        subscription = stream.h264.subscribe("gop", max_packets=1000)
        stream.start()
        items = []
        try:
            while True:  # the subscription ends after the notice: no more get() would ever return
                items.append(await asyncio.wait_for(subscription.get(), 10))
        except SubscriptionClosed:
            pass
        finally:
            subscription.close()
        notices = [item for item in items if isinstance(item, dict)]
        assert [n["state"] for n in notices] == ["starting", "running", "ended"] and items[-1] is notices[-1], notices
        assert notices[-1]["message"] == "played to its end"
        packets = [item for item in items if not isinstance(item, dict)]
        assert packets and packets[-1].seq == 19, "the last picture reaches the viewer before the end"
        assert stream.state == "ended" and feed.restarts == 0
        late = stream.h264.subscribe("gop")  # a later viewer: the end at once, no encoder started for it
        assert await asyncio.wait_for(late.get(), 1) == notices[-1]
        with pytest.raises(SubscriptionClosed):
            await asyncio.wait_for(late.get(), 1)
        late.close()
        stream.stop()
        assert stream.state == "ended"

    run(scenario())
