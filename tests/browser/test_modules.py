"""The page's byte-level modules, run in the browser against hand-made input and the server's real streams."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture
def module_page(player_page, vergence_server):
    """A tab on the page's origin (so it can import /static/*.js), next to a small, slow stream.

    The tests name the stream (cam0) rather than read window.vergence.stream, which is unset until the page has booted."""
    server = vergence_server("--size", "320x240", "--fps", "10")
    player_page.page.goto(player_page.url(server, "?player=mjpeg"))
    return player_page.page


def test_multipart_reader_cuts_parts_at_any_chunk_boundary(module_page):
    result = module_page.evaluate(
        """async () => {
          const { MultipartReader, boundaryOf } = await import('/static/multipart.js');
          const enc = new TextEncoder();
          const jpeg = (n) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff);
          const part = (body, seq, withLength) => [
            enc.encode(`--vergenceframe\\r\\nContent-Type: image/jpeg\\r\\n` +
              (withLength ? `Content-Length: ${body.length}\\r\\n` : '') + `X-Seq: ${seq}\\r\\n\\r\\n`),
            body, enc.encode('\\r\\n')];
          const bodies = [jpeg(1000), jpeg(13), jpeg(4000)];
          const chunks = [...part(bodies[0], 1, true), ...part(bodies[1], 2, true), ...part(bodies[2], 3, false),
                          enc.encode('--vergenceframe\\r\\n')];
          const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
          let o = 0;
          for (const c of chunks) { all.set(c, o); o += c.length; }
          const out = {};
          for (const step of [1, 3, 64, all.length]) {
            const reader = new MultipartReader(boundaryOf('multipart/x-mixed-replace; boundary=vergenceframe'));
            const parts = [];
            for (let i = 0; i < all.length; i += step) parts.push(...reader.push(all.subarray(i, i + step)));
            out[step] = parts.map((p, i) => ({
              seq: p.headers.get('x-seq'),
              same: p.body.length === bodies[i].length && p.body.every((b, j) => b === bodies[i][j]),
            }));
          }
          return out;
        }"""
    )
    for step, parts in result.items():
        assert parts == [{"seq": "1", "same": True}, {"seq": "2", "same": True}, {"seq": "3", "same": True}], step


def test_nanoseconds_convert_without_losing_microseconds(module_page):
    ms = module_page.evaluate(
        """async () => {
          const { nsToMs, parseFrameHeader } = await import('/static/frame_header.js');
          const buf = new ArrayBuffer(28);
          const view = new DataView(buf);
          view.setUint8(0, 1); view.setUint8(1, 3); view.setUint16(2, 24); view.setUint32(4, 4294967295);
          view.setBigUint64(8, 1763712000123456789n); view.setBigUint64(16, 1763712000125456789n);
          const h = parseFrameHeader(buf);
          return [nsToMs(1763712000123456789n), h.captureMs, h.sendMs,
                  h.seq, h.key, h.config, h.init, h.payload.length];
        }"""
    )
    assert abs(ms[0] - 1763712000123.456789) < 1e-3
    assert ms[1] == ms[0]
    assert abs(ms[2] - ms[1] - 2.0) < 1e-3
    assert ms[3:] == [4294967295, True, True, False, 4]


def test_fmp4_fragment_times_follow_the_frame_rate(module_page):
    """Parse the server's real init segment and fragments: media time steps by 1/fps, as rVFC will report it."""
    result = module_page.evaluate(
        """async () => {
          const { parseInitSegment, fragmentTime } = await import('/static/mp4.js');
          const { parseFrameHeader } = await import('/static/frame_header.js');
          const ws = new WebSocket(`ws://${location.host}/ws/fmp4/cam0`);
          ws.binaryType = 'arraybuffer';
          const frames = [];
          await new Promise((resolve, reject) => {
            ws.onmessage = (e) => {
              if (typeof e.data !== 'string') frames.push(parseFrameHeader(e.data));
              if (frames.length >= 6) resolve();
            };
            ws.onerror = () => reject(new Error('websocket error'));
            ws.onclose = (e) => reject(new Error(`websocket closed: ${e.code} ${e.reason}`));
          });
          ws.close();
          const init = parseInitSegment(frames[0].payload);
          const times = frames.slice(1).map((f) => fragmentTime(f.payload, init));
          return { initFlag: frames[0].init, later: frames.slice(1).map((f) => f.init), init, times };
        }"""
    )
    assert result["initFlag"] is True and not any(result["later"])
    assert result["init"]["timescale"] > 0
    times = result["times"]
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(abs(step - 0.1) < 0.002 for step in steps), times  # 10 fps


def test_codec_string_from_sps_matches_init(module_page):
    result = module_page.evaluate(
        """async () => {
          const { codecFromAnnexB } = await import('/static/h264.js');
          const { parseFrameHeader } = await import('/static/frame_header.js');
          const ws = new WebSocket(`ws://${location.host}/ws/video/cam0`);
          ws.binaryType = 'arraybuffer';
          const [init, first] = await new Promise((resolve, reject) => {
            let init;
            ws.onmessage = (e) => {
              if (typeof e.data === 'string') init = JSON.parse(e.data);
              else resolve([init, parseFrameHeader(e.data)]);
            };
            ws.onerror = () => reject(new Error('websocket error'));
            ws.onclose = (e) => reject(new Error(`websocket closed: ${e.code} ${e.reason}`));
          });
          ws.close();
          return { codec: init.codec, fromSps: codecFromAnnexB(first.payload), key: first.key, config: first.config };
        }"""
    )
    assert result["key"] and result["config"]
    assert result["fromSps"] == result["codec"]
