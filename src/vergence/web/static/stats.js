// Player statistics: cheap per-frame bookkeeping, read by the HUD, the control-WS reports and the tests
// (window.vergence.stats).

const MAX_SAMPLES = 10000;
const TRIM = 1000;
const RECENT_MS = 3000;

function push(list, value) {
  if (list.length >= MAX_SAMPLES) list.splice(0, TRIM);
  list.push(value);
}

/** Return the q-quantile (0..1) of numbers, linearly interpolated; null for an empty list. */
export function quantile(values, q) {
  if (!values.length) return null;
  const sorted = Float64Array.from(values).sort();
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export class Stats {
  constructor() {
    this.reset('', '');
  }

  /** Start over for a new player or stream. */
  reset(player, stream) {
    this.player = player;
    this.playerDetail = ''; // how the player plays here, when that differs ('managed': MSE through ManagedMediaSource)
    this.stream = stream;
    this.frames = 0; // frames received
    this.decoded = 0; // frames decoded (WebCodecs) or shown (MSE, MJPEG)
    this.dropped = 0; // frames received but never shown
    this.bytes = 0;
    this.latencies = []; // capture → decoded/shown, ms, one per frame with a known capture time
    this.seqs = []; // seq of each decoded frame
    this.firstSeq = null; // first and last seq received
    this.lastSeq = null;
    this.lastDecodedSeq = null;
    this.lastLatency = null;
    this.width = 0;
    this.height = 0;
    this.status = '';
    this.note = '';
    this.latencySources = {}; // how the latencies were known, frames per way (WebRTC: timecode, datachannel)
    this.recentFrames = []; // [perf ms, latency ms | null] of decoded frames, last few seconds
    this.recentBytes = []; // [perf ms, bytes]
    this.firstShownAt = null;
    this.firstByteAt = null;
    this.reportFrom = performance.now();
  }

  received(seq, byteLength) {
    this.frames++;
    if (this.firstSeq === null) this.firstSeq = seq;
    this.lastSeq = seq;
    this.addBytes(byteLength);
  }

  addBytes(byteLength) {
    this.bytes += byteLength;
    this.firstByteAt ??= performance.now();
    this.recentBytes.push([performance.now(), byteLength]);
    if (this.recentBytes.length > 4096) this.#prune(performance.now());
  }

  /** Count one decoded/shown frame; latencyMs may be null when its capture time is unknown. */
  shown(seq, latencyMs) {
    this.decoded++;
    this.firstShownAt ??= performance.now();
    if (this.status !== 'live') this.status = 'live';
    if (seq !== null && seq !== undefined) {
      this.lastDecodedSeq = seq;
      push(this.seqs, seq);
    }
    if (latencyMs !== null && latencyMs !== undefined) {
      this.lastLatency = latencyMs;
      push(this.latencies, latencyMs);
    }
    this.recentFrames.push([performance.now(), latencyMs ?? null]);
    if (this.recentFrames.length > 4096) this.#prune(performance.now()); // no HUD pulling (hidden tab)
  }

  setResolution(width, height) {
    this.width = width;
    this.height = height;
  }

  /** Summarise the last windowMs: {fps, bitrateBps, latency: {p50, p95, max, last} | null}. */
  window(windowMs = 1000) {
    const now = performance.now();
    this.#prune(now);
    const since = now - windowMs;
    let frames = 0;
    const lat = [];
    for (const [t, l] of this.recentFrames) {
      if (t < since) continue;
      frames++;
      if (l !== null) lat.push(l);
    }
    let bytes = 0;
    for (const [t, n] of this.recentBytes) if (t >= since) bytes += n;
    return {
      fps: (frames * 1000) / span(windowMs, now, this.firstShownAt),
      bitrateBps: (bytes * 8 * 1000) / span(windowMs, now, this.firstByteAt),
      latency: lat.length ? summary(lat, this.lastLatency) : null,
    };
  }

  /** Build the control-WS report for the frames since the previous report (null when nothing was shown). */
  takeReport() {
    const now = performance.now();
    const sinceLastMs = Math.min(now - this.reportFrom, RECENT_MS);
    this.reportFrom = now;
    const w = this.window(sinceLastMs);
    if (!w.latency) return null;
    const round = (x) => Math.round(x * 100) / 100;
    return {
      type: 'report',
      stream: this.stream,
      player: this.playerDetail ? `${this.player} (${this.playerDetail})` : this.player,
      fps: round(w.fps),
      latency_ms: { p50: round(w.latency.p50), p95: round(w.latency.p95), max: round(w.latency.max) },
      frames: this.decoded,
      dropped: this.dropped,
    };
  }

  #prune(now) {
    const cutoff = now - RECENT_MS;
    for (const list of [this.recentFrames, this.recentBytes]) {
      let i = 0;
      while (i < list.length && list[i][0] < cutoff) i++;
      if (i) list.splice(0, i);
    }
  }
}

// Just after a (re)start less than a window has passed: divide by what there is, not report a false low.
function span(windowMs, now, firstAt) {
  const elapsed = firstAt === null ? 0 : now - firstAt;
  return elapsed >= 250 ? Math.min(windowMs, elapsed) : windowMs;
}

function summary(latencies, last) {
  return { p50: quantile(latencies, 0.5), p95: quantile(latencies, 0.95), max: Math.max(...latencies), last };
}
