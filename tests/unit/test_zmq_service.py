"""The pure parts of the ZeroMQ service: the frame-rate gate, the metadata part and command decoding."""

from __future__ import annotations

import json
import sys

import pytest

from vergence.control.parsing import as_object
from vergence.errors import ConfigError
from vergence.media.frame import EncodedPacket
from vergence.outputs.base import FrameGate
from vergence.outputs.zmq import frame_metadata, import_zmq


def passed(gate: FrameGate, times: list[float]) -> list[float]:
    return [t for t in times if gate.ready(t)]


def test_gate_zero_lets_every_frame_through():
    times = [i / 30 for i in range(100)]
    assert passed(FrameGate(0), times) == times


@pytest.mark.parametrize(("camera_fps", "limit_fps"), [(30, 5), (30, 10), (25, 10), (60, 7), (30, 2)])
def test_gate_keeps_the_average_rate_exact_on_any_camera_grid(camera_fps, limit_fps):
    duration_s = 20
    times = [i / camera_fps for i in range(camera_fps * duration_s)]
    sent = passed(FrameGate(limit_fps), times)
    assert abs(len(sent) - limit_fps * duration_s) <= 1, len(sent)
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert min(gaps) >= 1 / limit_fps - 1 / camera_fps - 1e-9  # never a burst: at most one frame early on the grid


def test_gate_with_a_limit_above_the_camera_rate_passes_every_frame():
    times = [i / 30 for i in range(90)]
    assert passed(FrameGate(60), times) == times


def test_gate_does_not_burst_after_a_stall():
    gate = FrameGate(5)
    assert passed(gate, [0.0, 0.1, 0.2]) == [0.0, 0.2]
    # Nothing for 3 s, then frames resume at 30 fps: the missed slots are not made up.
    resumed = [3.0 + i / 30 for i in range(30)]
    sent = passed(gate, resumed)
    assert sent[0] == 3.0
    assert len(sent) == 5


def test_metadata_of_a_jpeg_frame():
    packet = EncodedPacket(data=b"\xff\xd8", keyframe=True, seq=42, pts=0, capture_ns=1_000)
    metadata = json.loads(frame_metadata("cam0", "jpeg", packet, 320, 240, 2_000))
    assert metadata == {
        "v": 1,
        "stream": "cam0",
        "seq": 42,
        "capture_ns": 1_000,
        "send_ns": 2_000,
        "format": "jpeg",
        "width": 320,
        "height": 240,
    }


def test_metadata_of_raw_pixels_has_shape_and_dtype():
    packet = EncodedPacket(data=bytes(12), keyframe=True, seq=1, pts=0, capture_ns=5, width=2, height=2)
    metadata = json.loads(frame_metadata("cam1", "raw", packet, 2, 2, 6))
    assert (metadata["format"], metadata["shape"], metadata["dtype"]) == ("raw", [2, 2, 3], "uint8")


def test_json_objects_become_dicts_so_replies_echo_their_id():
    assert as_object(b' {"type": "zoom", "value": 2, "id": "a"}') == {"type": "zoom", "value": 2, "id": "a"}
    assert as_object('{"type": "zoom", "id": 3}') == {"type": "zoom", "id": 3}
    for payload in (b"zoom 2", b"{broken", b"[1, 2]", b"\xff\xfe", b""):
        assert as_object(payload) is payload


def test_without_pyzmq_the_service_is_a_config_error_naming_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "zmq", None)  # what `import zmq` sees when pyzmq is not installed
    with pytest.raises(ConfigError, match="pip install pyzmq"):
        import_zmq()
