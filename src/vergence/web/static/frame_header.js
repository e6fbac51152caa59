// The 24-byte frame header of /ws/video and /ws/fmp4 (docs/protocol.md, "Frame header").

export const FLAG_KEY = 0x01;
export const FLAG_CONFIG = 0x02;
export const FLAG_INIT = 0x04;

const NS_PER_MS = 1_000_000n;

/** Parse the header of one binary message; return null when it is too short or of an unknown version. */
export function parseFrameHeader(buffer) {
  if (buffer.byteLength < 24) return null;
  const view = new DataView(buffer);
  const version = view.getUint8(0);
  const headerLen = view.getUint16(2);
  if (version < 1 || headerLen < 24 || headerLen > buffer.byteLength) return null;
  const flags = view.getUint8(1);
  const captureNs = view.getBigUint64(8);
  return {
    version,
    flags,
    key: (flags & FLAG_KEY) !== 0,
    config: (flags & FLAG_CONFIG) !== 0,
    init: (flags & FLAG_INIT) !== 0,
    headerLen,
    seq: view.getUint32(4),
    captureMs: nsToMs(captureNs),
    sendMs: nsToMs(view.getBigUint64(16)),
    payload: new Uint8Array(buffer, headerLen),
  };
}

/**
 * Convert Unix-epoch nanoseconds (BigInt, ~1.8e18: beyond a double's 2^53) to milliseconds without losing the
 * sub-millisecond part: whole milliseconds fit a double exactly, the remainder is added afterwards.
 */
export function nsToMs(ns) {
  const big = BigInt(ns);
  const wholeMs = big / NS_PER_MS;
  return Number(wholeMs) + Number(big - wholeMs * NS_PER_MS) / 1e6;
}

/** The wall clock of this page in Unix-epoch milliseconds, at performance.now() resolution. */
export function wallClockMs(perfNow = performance.now()) {
  return performance.timeOrigin + perfNow;
}
