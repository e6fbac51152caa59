"""GET /metrics: frame rates, bitrates, viewers, drops, restarts and per-stage latency histograms for Prometheus.

In Prometheus's base units (`promtool check metrics` passes: tests/integration/test_metrics.py): durations in seconds,
sizes and rates in bytes, totals as `_total` counters. vergence times its stages in ms; the histograms are scaled here.

Everything is read at scrape time from the counters the server keeps for /api/stats (docs/architecture.md), on the event
loop, so hub state is consistent and the data path does no extra work beyond the histograms' `observe()`.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING

from fastapi import APIRouter, Response

from vergence import __version__
from vergence.context import Server, ServerContext
from vergence.encoders.base import Encoder
from vergence.hub import Channel
from vergence.metrics import CONTENT_TYPE, Exposition, TimingMs, process_stats

if TYPE_CHECKING:
    from vergence.outputs.base import Output
    from vergence.stream import Stream

router = APIRouter(tags=["metrics"])

MS = 0.001  # vergence's timings are in ms; Prometheus's unit is the second

# The kinds of consumer a hub subscription declares (`Channel.subscribe(kind=…)`); any other counts as "other".
VIEWER_KINDS = frozenset({"ws", "mjpeg", "webrtc", "udp", "restream", "rec", "mqtt", "zmq", "tcp"})
DROPPED_HELP = (
    "frames lost, by reason: slow_subscriber (packets a subscriber's full buffer discarded, counted per subscriber), "
    "encoder_busy (raw frames an encoder skipped while busy)"
)
# Totals an output's describe() may hold (kept across its stops and starts), as metric name and help.
OUTPUT_TOTALS = {
    "frames": ("vergence_output_frames_total", "frames sent"),
    "bytes": ("vergence_output_bytes_total", "payload bytes sent"),
    "drops": ("vergence_output_dropped_total", "packets its hub subscription discarded (it fell behind)"),
    "failures": ("vergence_output_failures_total", "failed connects or pushes (restream)"),
}


@router.get("/metrics", include_in_schema=False)
async def metrics(server: Server) -> Response:
    """Every vergence metric in the Prometheus text exposition format 0.0.4."""
    return Response(collect(server).render(), media_type=CONTENT_TYPE)


def collect(vergence: ServerContext) -> Exposition:
    """Read the server's counters into one scrape's metric families (call on the event loop)."""
    exposition = Exposition()
    exposition.gauge("vergence_build_info", "the running vergence version (always 1)", 1, version=__version__)
    for stream in vergence.streams.values():
        add_stream(exposition, stream)
    for output in vergence.outputs.values():
        add_output(exposition, output)
    add_process(exposition)
    return exposition


def viewers_by_kind(channel: Channel) -> dict[str, int]:
    """A channel's subscribers counted by the kind they declared (one of VIEWER_KINDS, or "other")."""
    return dict(Counter(sub.kind if sub.kind in VIEWER_KINDS else "other" for sub in channel.subscribers))


def add_stream(exposition: Exposition, stream: Stream) -> None:
    """One stream's frame rate, restarts, stage histograms, and per channel its viewers, bitrate, drops and latency."""
    sid = stream.id
    running = stream.state == "running" and not stream.paused
    exposition.gauge(
        "vergence_stream_up", "1 while the stream delivers frames (running, not paused)", running, stream=sid
    )
    exposition.counter(
        "vergence_frames_total", "frames captured and passed to the encoders", stream.fps.total_events, stream=sid
    )
    exposition.gauge(
        "vergence_frames_per_second", "frames per second over the last 2 s", stream.fps.per_second(), stream=sid
    )
    exposition.counter(
        "vergence_source_restarts_total",
        "times the supervisor restarted a failed or ended source (0 for derived streams)",
        stream.feed.restarts,
        stream=sid,
    )
    exposition.counter("vergence_stills_total", "full-resolution stills taken", stream.stills, stream=sid)
    for stage, timing in stream.stage_ms.items():
        if isinstance(timing, TimingMs):
            exposition.histogram(
                "vergence_stage_latency_seconds",
                "time a frame spent in each pipeline stage",
                timing.histogram.snapshot().scaled(MS),
                stream=sid,
                stage=stage,
            )
    for channel in stream.channels:
        labels = {"stream": sid, "format": channel.format}
        stats = channel.stats
        exposition.gauge(
            "vergence_channel_producing", "1 while the channel's encoder or muxer runs", channel.producing, **labels
        )
        exposition.counter("vergence_packets_total", "packets published to the channel", stats.packets, **labels)
        exposition.counter(
            "vergence_published_bytes_total",
            "bytes published to the channel (once, whatever the number of viewers)",
            stats.rate.total_amount,
            **labels,
        )
        exposition.gauge(
            "vergence_published_bytes_per_second",
            "published bytes per second over the last 2 s",
            stats.rate.amount_per_second(),
            **labels,
        )
        exposition.counter(
            "vergence_keyframe_requests_total",
            "keyframes asked of the encoder (joiners, overflows)",
            stats.keyframe_requests,
            **labels,
        )
        exposition.counter(
            "vergence_dropped_total",
            DROPPED_HELP,
            stats.drops,
            **labels,
            reason="slow_subscriber",
        )
        for kind, count in sorted(viewers_by_kind(channel).items()):
            exposition.gauge(
                "vergence_viewers",
                "hub subscribers by kind (a kind without any has no series)",
                count,
                **labels,
                kind=kind,
            )
        exposition.histogram(
            "vergence_capture_to_send_seconds",
            "capture to hub release of each packet (wall clock)",
            stats.capture_to_send_ms.histogram.snapshot().scaled(MS),
            **labels,
        )
        exposition.histogram(
            "vergence_send_to_wire_seconds",
            "hub release to written on a WebSocket: per packet for viewers written as it is published, per packet "
            "and viewer for viewers catching up",
            stats.send_to_wire_ms.histogram.snapshot().scaled(MS),
            **labels,
        )
        encoder = getattr(channel.producer, "encoder", None)  # h264, jpeg and raw: an Encoder; fmp4: a muxer
        if isinstance(encoder, Encoder):
            exposition.counter(
                "vergence_dropped_total", DROPPED_HELP, encoder.frames_skipped, **labels, reason="encoder_busy"
            )
            exposition.counter(
                "vergence_encoder_restarts_total",
                "times the encoder failed and was reopened at the next frame",
                encoder.restarts,
                **labels,
            )


def add_output(exposition: Exposition, output: Output) -> None:
    """A configured UDP or restream output: up, frames, bytes, bitrate, drops, failed connects."""
    described = output.describe()
    labels = {"output": output.id, "kind": output.kind, "stream": output.stream_id}
    up = bool(described.get("running")) or described.get("state") == "live"
    exposition.gauge("vergence_output_up", "1 while the output sends (udp running, restream live)", up, **labels)
    exposition.gauge(
        "vergence_output_sent_bytes_per_second",
        "bytes per second sent over the last 2 s",
        described.get("bitrate_bps", 0) / 8,
        **labels,
    )
    for key, (name, help) in OUTPUT_TOTALS.items():
        if key in described:  # each output kind describes the totals it keeps
            exposition.counter(name, help, described[key], **labels)


def add_process(exposition: Exposition) -> None:
    """What the server process holds and uses: fds, threads, asyncio tasks, resident memory, CPU time."""
    held = process_stats()
    if held["fds"] >= 0:
        exposition.gauge("vergence_process_open_fds", "open file descriptors", held["fds"])
    exposition.gauge(
        "vergence_process_threads", "Python threads vergence started (capture, encoders, …)", held["threads"]
    )
    exposition.gauge(
        "vergence_process_pool_threads",
        "worker threads of the event loop's executor (kept once started)",
        held["pool_threads"],
    )
    exposition.gauge("vergence_asyncio_tasks", "asyncio tasks on the event loop", held["tasks"])
    resident = resident_memory_bytes()
    if resident is not None:
        exposition.gauge("vergence_process_resident_memory_bytes", "resident set size, bytes", resident)
    times = os.times()
    exposition.counter(
        "vergence_process_cpu_seconds_total", "user and system CPU time of the process, s", times.user + times.system
    )


def resident_memory_bytes() -> int | None:
    """The process's resident set size from /proc/self/statm (None where there is no /proc)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")
