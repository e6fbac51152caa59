"""The Prometheus exposition: a strict reading of text format 0.0.4, cumulative histograms, escaping, monotonic counters."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from tests.aio import run
from vergence.config import CameraSettings, HubSettings, Settings
from vergence.encoders.base import Encoder
from vergence.errors import EncoderError, SourceError
from vergence.events import EventBus
from vergence.http.metrics import add_output, add_stream, viewers_by_kind
from vergence.hub import Channel, Hub
from vergence.media.frame import EncodedPacket, Frame
from vergence.metrics import (
    LATENCY_BUCKETS_MS,
    Exposition,
    Histogram,
    TimingMs,
)
from vergence.sources.base import create_source, register
from vergence.sources.supervisor import SourceSupervisor
from vergence.sources.testpattern import TestPatternSource
from vergence.stream import Stream

# --- a strict reader of the text format, written from the specification, independent of the writer ----------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r"[+-]?(?:Inf|NaN|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
SAMPLE = re.compile(rf"({NAME})(?:\{{(.*)\}})? ({VALUE})")
LABEL_PAIR = re.compile(rf'({LABEL})="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}


@dataclass
class Family:
    type: str
    help: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], text)


def parse(text: str) -> dict[str, Family]:
    """Parse an exposition, failing on anything format 0.0.4 does not allow (or that Prometheus would reject)."""
    assert text.endswith("\n"), "the exposition must end with a line feed"
    families: dict[str, Family] = {}
    help_text: dict[str, str] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    current: str | None = None
    finished: set[str] = set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and name not in help_text, line
            help_text[name] = unescape(doc)
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in SUFFIXES and name not in families, f"bad or repeated TYPE: {line}"
            families[name] = Family(kind, help_text.get(name))
            continue
        assert line and not line.startswith("#"), f"unexpected line {line!r}"
        match = SAMPLE.fullmatch(line)
        assert match, f"not a sample line: {line!r}"
        sample_name, label_text, value = match.groups()
        owner = next(
            (
                name
                for name, family in families.items()
                for suffix in SUFFIXES[family.type]
                if sample_name == name + suffix
            ),
            None,
        )
        assert owner is not None, f"{sample_name} has no TYPE before it"
        if owner != current:
            assert owner not in finished, f"samples of {owner} are not contiguous"
            if current is not None:
                finished.add(current)
            current = owner
        labels: dict[str, str] = {}
        rest = label_text or ""
        while rest:
            pair = LABEL_PAIR.match(rest)
            assert pair, f"bad labels in {line!r}"
            assert pair.group(1) not in labels, f"repeated label in {line!r}"
            labels[pair.group(1)] = unescape(pair.group(2))
            rest = rest[pair.end() :]
        key = (sample_name, tuple(sorted(labels.items())))
        assert key not in seen, f"duplicate series {line!r}"
        seen.add(key)
        families[owner].samples.append((sample_name, labels, float(value)))
    return families


def value(families: dict[str, Family], name: str, **labels: str) -> float:
    family_name = re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name
    matches = [v for n, ls, v in families[family_name].samples if n == name and ls == labels]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples"
    return matches[0]


def check_histograms(families: dict[str, Family]) -> None:
    """Every histogram: buckets cumulative in increasing `le`, ending at +Inf, which equals `_count`."""
    for name, family in families.items():
        if family.type != "histogram":
            continue
        series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for sample, labels, count in family.samples:
            if sample == f"{name}_bucket":
                key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                series.setdefault(key, []).append((float(labels["le"]), count))
        assert series, f"{name} has no buckets"
        for key, buckets in series.items():
            bounds = [bound for bound, _ in buckets]
            counts = [count for _, count in buckets]
            assert bounds == sorted(bounds) and bounds[-1] == math.inf, f"{name}{key}: le out of order {bounds}"
            assert counts == sorted(counts), f"{name}{key}: buckets not cumulative {counts}"
            assert counts[-1] == value(families, f"{name}_count", **dict(key))
            value(families, f"{name}_sum", **dict(key))


# --- the writer ----------------------------------------------------------------------------------------------------------


def test_histogram_buckets_are_cumulative_and_inf_equals_count():
    histogram = Histogram((1.0, 2.5, 10.0))
    for observed in (0.5, 1.0, 1.5, 2.5, 7.0, 10.0, 11.0, 5000.0):
        histogram.observe(observed)
    exposition = Exposition()
    exposition.histogram("vergence_test_ms", "a test histogram", histogram.snapshot(), stream="cam0")
    families = parse(exposition.render())
    check_histograms(families)
    assert families["vergence_test_ms"].type == "histogram"
    buckets = {ls["le"]: v for n, ls, v in families["vergence_test_ms"].samples if n.endswith("_bucket")}
    assert buckets == {"1": 2, "2.5": 4, "10": 6, "+Inf": 8}  # a value on a bound counts in that bucket (le)
    assert value(families, "vergence_test_ms_count", stream="cam0") == 8
    assert value(families, "vergence_test_ms_sum", stream="cam0") == pytest.approx(5033.5)


def test_an_empty_histogram_still_has_every_bucket():
    exposition = Exposition()
    exposition.histogram("vergence_test_ms", "empty", Histogram().snapshot())
    families = parse(exposition.render())
    check_histograms(families)
    assert len(families["vergence_test_ms"].samples) == len(LATENCY_BUCKETS_MS) + 1 + 2


def test_bucket_bounds_must_increase():
    with pytest.raises(ValueError):
        Histogram((1.0, 1.0, 2.0))
    with pytest.raises(ValueError):
        Histogram(())


def test_label_values_and_help_are_escaped():
    nasty = 'say "hi"\\ then\nnext line'
    exposition = Exposition()
    exposition.gauge("vergence_test", 'help with \\ and\na line feed, "quotes" as is', 1, stream=nasty, kind="ws")
    text = exposition.render()
    assert '\\"hi\\"\\\\ then\\nnext' in text and text.count("\n") == 3  # no raw line feed inside a line
    families = parse(text)
    assert families["vergence_test"].samples == [("vergence_test", {"stream": nasty, "kind": "ws"}, 1.0)]
    assert families["vergence_test"].help == 'help with \\ and\na line feed, "quotes" as is'


def test_values_are_written_as_prometheus_reads_them():
    exposition = Exposition()
    for index, number in enumerate((0, 7, 2**40, 0.125, 1e-7, math.inf, -math.inf, math.nan, True)):
        exposition.gauge("vergence_test", "numbers", number, index=str(index))
    lines = [line for line in exposition.render().splitlines() if not line.startswith("#")]
    assert [line.rsplit(" ", 1)[1] for line in lines] == [
        "0",
        "7",
        "1099511627776",
        "0.125",
        "1e-07",
        "+Inf",
        "-Inf",
        "NaN",
        "1",
    ]
    parse(exposition.render())


def test_a_family_keeps_its_type_and_names_are_checked():
    exposition = Exposition()
    exposition.counter("vergence_things_total", "things", 1)
    with pytest.raises(ValueError):
        exposition.gauge("vergence_things_total", "things", 1)
    with pytest.raises(ValueError):
        exposition.gauge("vergence-bad", "bad name", 1)
    with pytest.raises(ValueError):
        exposition.gauge("vergence_test", "bad label", 1, **{"__reserved": "x"})
    with pytest.raises(ValueError):
        exposition.histogram("vergence_test_ms", "le is taken", Histogram().snapshot(), le="1")


def test_samples_of_a_family_stay_together_whatever_the_call_order():
    exposition = Exposition()
    exposition.counter("vergence_a_total", "a", 1, stream="cam0")
    exposition.gauge("vergence_b", "b", 2, stream="cam0")
    exposition.counter("vergence_a_total", "a", 3, stream="cam1")
    families = parse(exposition.render())  # the parser fails on a family split in two
    assert [v for _, _, v in families["vergence_a_total"].samples] == [1, 3]


def test_a_timing_keeps_its_windowed_mean_and_feeds_its_histogram():
    timing = TimingMs()
    for ms in (1.0, 2.0, 3.0):
        timing.add(ms)
    assert timing.mean() == pytest.approx(2.0)
    snapshot = timing.histogram.snapshot()
    assert snapshot.count == 3 and snapshot.sum == pytest.approx(6.0)


def test_viewers_are_counted_by_the_kind_their_subscription_declares():
    """The kind is declared, not read from the name: a name may be anything (an address, a peer id)."""
    channel = Channel("cam0", "h264")
    kinds = ["ws", "ws", "webrtc", "udp", "rec", "tcp", "other", "nonsense"]
    for n, kind in enumerate(kinds):
        channel.subscribe("gop", name=f"udp-looking name {n}", kind=kind)
    assert viewers_by_kind(channel) == {"ws": 2, "webrtc": 1, "udp": 1, "rec": 1, "tcp": 1, "other": 2}


# --- counters across restarts ----------------------------------------------------------------------------------------


@register("metrics-flaky")
class FlakySource(TestPatternSource):
    """The test pattern, failing after `frames_per_run` frames of every run."""

    frames_per_run = 10

    def open(self):
        self._delivered = 0
        return super().open()

    def read(self):
        if self._delivered >= self.frames_per_run:
            raise SourceError("simulated sensor timeout")
        self._delivered += 1
        return super().read()


class FailingEncoder(Encoder):
    """Fails every third frame, as a codec that errors now and then."""

    format = "test"

    def __init__(self) -> None:
        super().__init__("cam0", lambda packet: None)
        self.frames = 0

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        self.frames += 1
        if self.frames % 3 == 0:
            raise EncoderError("simulated codec error")
        return [EncodedPacket(data=b"x", keyframe=True, seq=frame.seq, pts=frame.pts, capture_ns=frame.capture_ns)]


def scrape(stream: Stream) -> dict[str, Family]:
    exposition = Exposition()
    add_stream(exposition, stream)
    families = parse(exposition.render())
    check_histograms(families)
    return families


def monotonic_series(families: dict[str, Family]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every series that must never go down: counters, and histogram buckets and counts."""
    return {
        (name, tuple(sorted(labels.items()))): sample
        for family in families.values()
        for name, labels, sample in family.samples
        if family.type == "counter" or name.endswith(("_bucket", "_count"))
    }


def assert_never_decreased(before: dict, after: dict) -> None:
    for key, earlier in before.items():
        assert key in after, f"{key} vanished"
        assert after[key] >= earlier, f"{key} went down: {earlier} → {after[key]}"


def test_counters_never_go_down_across_source_restarts_and_a_viewer_leaving():
    async def wait_until(check, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.01)  # poll interval of a deadline loop

    async def scenario():
        settings = Settings(
            cameras=[CameraSettings(source="metrics-flaky", size="160x120", fps=100)],
            hub=HubSettings(encoder_linger_s=0),
        )
        camera = settings.cameras[0]
        feed = SourceSupervisor(camera.id, lambda: create_source(camera), backoff_min_s=0.02, backoff_max_s=0.02)
        stream = Stream(camera, settings, Hub(), asyncio.get_running_loop(), EventBus(asyncio.get_running_loop()), feed)
        viewer = stream.h264.subscribe("gop", 1000, name="ws 127.0.0.1:1", kind="ws")
        stream.start()
        scrapes = []
        try:
            await wait_until(lambda: stream.h264.stats.packets >= 5)
            scrapes.append(scrape(stream))
            assert value(scrapes[-1], "vergence_viewers", stream="cam0", format="h264", kind="ws") == 1
            await wait_until(lambda: feed.restarts >= 2)
            scrapes.append(scrape(stream))
            viewer.close()  # the last viewer leaves: the encoder stops (linger 0) and the channel forgets its cache
            await wait_until(lambda: not stream.h264.producing)
            scrapes.append(scrape(stream))
            assert value(scrapes[-1], "vergence_channel_producing", stream="cam0", format="h264") == 0
            packets = stream.h264.stats.packets
            viewer = stream.h264.subscribe("gop", 1000, name="ws 127.0.0.1:2", kind="ws")  # the encoder starts again
            await wait_until(lambda: stream.h264.stats.packets >= packets + 5 and feed.restarts >= 4)
            scrapes.append(scrape(stream))
        finally:
            viewer.close()
            stream.stop()
        for before, after in zip(scrapes, scrapes[1:], strict=False):
            assert_never_decreased(monotonic_series(before), monotonic_series(after))
        first, last = scrapes[0], scrapes[-1]
        assert value(last, "vergence_source_restarts_total", stream="cam0") >= 4
        assert value(last, "vergence_frames_total", stream="cam0") > value(
            first, "vergence_frames_total", stream="cam0"
        )
        stage = {"stream": "cam0", "stage": "encode_h264"}
        assert value(last, "vergence_stage_latency_seconds_count", **stage) > value(
            first, "vergence_stage_latency_seconds_count", **stage
        )
        assert "vergence_viewers" not in scrapes[2]  # nobody watched: no series, not a stale one

    run(scenario())


def test_encoder_restarts_are_counted_and_its_histogram_keeps_counting():
    encoder = FailingEncoder()
    encoder.start()

    def handled() -> int:
        return encoder.restarts + encoder.encode_ms.histogram.snapshot().count

    try:
        for seq in range(12):
            encoder.put(Frame(np.zeros((1, 1, 3), np.uint8), "bgr24", 1, 1, seq, seq, capture_ns=1))
            deadline = time.monotonic() + 5
            while handled() <= seq:  # one frame at a time, so none is skipped
                assert time.monotonic() < deadline, "the encoder did not handle the frame"
                time.sleep(0.001)  # poll interval of a deadline loop
    finally:
        encoder.stop()
    assert encoder.restarts == 4  # frames 3, 6, 9, 12 failed; the encoder went on after each
    assert encoder.encode_ms.histogram.snapshot().count == 8  # the frames that encoded


class FakeOutput:
    """What add_output reads of an output: id, kind, stream and describe()."""

    def __init__(self, kind: str, described: dict) -> None:
        self.id, self.kind, self.stream_id = f"{kind}0", kind, "cam0"
        self.described = described

    def describe(self) -> dict:
        return self.described


def test_outputs_report_up_and_the_totals_they_keep():
    exposition = Exposition()
    udp = {"running": True, "frames": 10, "bytes": 12345, "drops": 2, "bitrate_bps": 800_000}
    push = {"state": "waiting", "frames": 5, "bytes": 999, "drops": 0, "failures": 3, "bitrate_bps": 0}
    add_output(exposition, FakeOutput("udp", udp))  # type: ignore[arg-type]
    add_output(exposition, FakeOutput("restream", push))  # type: ignore[arg-type]
    families = parse(exposition.render())
    udp_labels = {"output": "udp0", "kind": "udp", "stream": "cam0"}
    push_labels = {"output": "restream0", "kind": "restream", "stream": "cam0"}
    assert value(families, "vergence_output_up", **udp_labels) == 1
    assert value(families, "vergence_output_up", **push_labels) == 0
    assert value(families, "vergence_output_bytes_total", **udp_labels) == 12345
    assert value(families, "vergence_output_failures_total", **push_labels) == 3
    assert value(families, "vergence_output_sent_bytes_per_second", **udp_labels) == 100_000  # 800 kbit/s, in bytes
    assert [labels for _, labels, _ in families["vergence_output_failures_total"].samples] == [push_labels]


def test_a_histogram_kept_in_ms_is_shown_in_seconds():
    histogram = Histogram()
    for ms in (0.05, 3.0, 40.0):
        histogram.observe(ms)
    exposition = Exposition()
    exposition.histogram("vergence_test_seconds", "in seconds", histogram.snapshot().scaled(0.001))
    families = parse(exposition.render())
    buckets = {ls["le"]: v for n, ls, v in families["vergence_test_seconds"].samples if n.endswith("_bucket")}
    assert buckets["0.0001"] == 1 and buckets["0.005"] == 2 and buckets["0.05"] == 3  # 0.1 ms, 5 ms, 50 ms
    assert value(families, "vergence_test_seconds_sum") == pytest.approx(0.04305)
