// WebRTC player, WHEP-style: POST /api/webrtc/{stream} with our SDP offer, the answer holds every server candidate (no
// trickle), DELETE the answer's Location to hang up. The server passes the stream's H.264 through; Chrome's WebRTC
// receiver (jitter buffer set to its minimum) decodes and presents it in the <video>.
//
// Latency, capture → presented: the wall-clock time the frame was handed to the compositor (rVFC `presentationTime`;
// `expectedDisplayTime` is only a guess at the next vsync) minus the frame's capture time, taken
//  (a) from the time code the test pattern paints into the picture, read back from the pixels (true pixel latency), or
//  (b) for a camera without a code, from the `frame` messages on the data channel: {pts, seq, capture_ns} per frame sent.
//      The browser sees rtpTimestamp = (random origin + pts) mod 2^32; the origin is found by voting (FrameTimes).

import { wallClockMs } from './frame_header.js';
import { TimecodeReader } from './timecode.js';

const GATHER_CAP_MS = 1000; // host candidates come in milliseconds; never wait long for the rest
const FIRST_FRAME_MS = 4000; // no picture by then: this browser or network cannot do WebRTC here, fall back
const STALL_MS = 3000; // after playing, no frame for this long: hang up and call again
const DISCONNECTED_GRACE_MS = 2000; // 'disconnected' often heals by itself within a second or two
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 8000;
const POLL_MS = 1000; // getStats: bytes, drops, and frames decoded while rVFC is silent (a hidden tab)
const CODE_GIVE_UP_AFTER = 60; // frames in a row without a time code: a real camera; then look only now and then
const CODE_RETRY_EVERY = 30;

export function webrtcSupport() {
  if (!('RTCPeerConnection' in window)) return 'this browser has no WebRTC (RTCPeerConnection)';
  const codecs = window.RTCRtpReceiver?.getCapabilities?.('video')?.codecs;
  if (codecs && !codecs.some((c) => c.mimeType.toLowerCase() === 'video/h264')) {
    return 'this browser cannot receive H.264 over WebRTC';
  }
  return null;
}

/**
 * The data channel's frame messages, matched to presented frames by RTP timestamp. The random origin is voted for:
 * each presented frame's rtpTimestamp minus every recent pts is a candidate, and only the true origin comes back frame
 * after frame (pts follow the server's send time, so the gaps between frames jitter and wrong candidates do not repeat).
 */
export class FrameTimes {
  static KEEP = 90; // frame messages kept: 3 s at 30 fps, more than any jitter buffer holds
  static VOTES = 3;
  static LOST_AFTER = 60; // presented frames in a row without a match: the origin is stale, vote again

  constructor() {
    this.recent = []; // {pts32, seq, captureMs, captureUs} in arrival order
    this.byPts = new Map(); // pts mod 2^32 → entry
    this.byCapture = new Map(); // capture µs → entry
    this.origin = null;
    this.votes = new Map();
    this.misses = 0;
  }

  /** Note one {pts, seq, capture_ns} message of the data channel. */
  add(msg) {
    const captureNs = Number(msg.capture_ns); // ~1.8e18 as a double: within 256 ns, plenty for milliseconds
    const entry = {
      pts32: msg.pts % 4294967296,
      seq: msg.seq,
      captureMs: captureNs / 1e6,
      captureUs: Math.floor(captureNs / 1000),
    };
    this.recent.push(entry);
    this.byPts.set(entry.pts32, entry);
    this.byCapture.set(entry.captureUs, entry);
    if (this.recent.length > FrameTimes.KEEP) {
      const old = this.recent.shift();
      if (this.byPts.get(old.pts32) === old) this.byPts.delete(old.pts32);
      if (this.byCapture.get(old.captureUs) === old) this.byCapture.delete(old.captureUs);
    }
  }

  /** The frame message of a presented frame's rtpTimestamp, or null (origin not known yet, or no such message). */
  match(rtpTimestamp) {
    if (typeof rtpTimestamp !== 'number') return null;
    if (this.origin === null) return this.#vote(rtpTimestamp);
    const entry = this.byPts.get((rtpTimestamp - this.origin) >>> 0) ?? null;
    if (entry) this.misses = 0;
    else if (++this.misses > FrameTimes.LOST_AFTER) this.#forget();
    return entry;
  }

  /** The frame message of a capture time read from the picture (µs; the double's rounding may shift it by 1). */
  byCaptureUs(us) {
    return this.byCapture.get(us) ?? this.byCapture.get(us - 1) ?? this.byCapture.get(us + 1) ?? null;
  }

  #vote(rtpTimestamp) {
    for (const entry of this.recent) {
      const candidate = (rtpTimestamp - entry.pts32) >>> 0;
      const votes = (this.votes.get(candidate) ?? 0) + 1;
      if (votes >= FrameTimes.VOTES) {
        this.origin = candidate;
        this.votes.clear();
        return entry;
      }
      this.votes.set(candidate, votes);
    }
    if (this.votes.size > 20000) this.votes.clear(); // no data channel messages line up: start the count over
    return null;
  }

  #forget() {
    this.origin = null;
    this.votes.clear();
    this.misses = 0;
  }
}

export class WebRtcPlayer {
  constructor({ stream, stats, clock, control, elements, onFail }) {
    this.stream = stream;
    this.stats = stats;
    this.clock = clock;
    this.control = control; // the ControlRouter: PTZ goes over our data channel while it is open
    this.video = elements.video;
    this.onFail = onFail;
    this.url = `/api/webrtc/${encodeURIComponent(stream)}`;
    this.pc = null;
    this.location = null; // the peer's URL on the server, from the answer: DELETE hangs up
    this.attempt = 0; // bumped by every (re)connect and by stop(): late callbacks of an older one do nothing
    this.played = false;
    this.failed = false;
    this.retryMs = RETRY_FIRST_MS;
    this.reader = new TimecodeReader();
    this.codeMisses = 0;
    this.framesSeen = 0;
    this.lastPresented = 0;
    this.rtpBase = { bytes: 0, dropped: 0 }; // counters of earlier connections, so stats keep growing across calls
    this.rtpNow = { bytes: 0, dropped: 0 };
  }

  start() {
    this.stopped = false;
    this.video.hidden = false;
    this.video.muted = true; // autoplay without a gesture
    this.video.playsInline = true;
    this.stats.status = 'connecting';
    this.#connect();
    this.#watchFrames();
    this.pollTimer = setInterval(() => this.#poll(), POLL_MS);
    this.firstFrameTimer = setTimeout(() => {
      if (!this.played) this.#fail(`no picture within ${FIRST_FRAME_MS / 1000} s`);
    }, FIRST_FRAME_MS);
  }

  stop() {
    this.stopped = true;
    this.attempt++;
    clearInterval(this.pollTimer);
    clearTimeout(this.firstFrameTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.graceTimer);
    this.#hangUp();
    this.video.hidden = true;
  }

  async #connect() {
    const attempt = ++this.attempt;
    this.frameTimes = new FrameTimes(); // a new peer has a new random RTP origin
    this.lastProgressAt = performance.now();
    // No iceServers: host candidates only; the default would ask an outside STUN server.
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    const transceiver = pc.addTransceiver('video', { direction: 'recvonly' });
    this.receiver = transceiver.receiver;
    lowLatency(this.receiver);
    // Before the offer, so the offer has an application m-line and the server opens its side.
    const channel = pc.createDataChannel('control');
    this.channel = channel;
    channel.onopen = () => {
      if (this.pc === pc) this.control?.useChannel(channel);
    };
    channel.onclose = () => {
      if (this.control?.channel === channel) this.control.useChannel(null);
    };
    channel.onmessage = (event) => this.#onChannelMessage(event.data);
    pc.ontrack = (event) => {
      this.video.srcObject = new MediaStream([event.track]);
      this.video.play().catch((err) => { this.stats.status = `cannot play: ${err.message}`; });
    };
    pc.onconnectionstatechange = () => this.#onConnectionState(pc);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc, GATHER_CAP_MS);
      if (attempt !== this.attempt) return;
      const response = await fetch(this.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp' },
        body: pc.localDescription.sdp,
        cache: 'no-store',
      });
      const body = await response.text();
      if (!response.ok) throw new Error(`the server answered HTTP ${response.status}: ${detailOf(body)}`);
      const location = response.headers.get('Location');
      if (attempt !== this.attempt) { // stopped or replaced while the server answered: hang up the orphan
        if (location) hangUp(location);
        return;
      }
      this.location = location;
      this.stats.status = 'connecting (ICE)';
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
    } catch (err) {
      if (attempt === this.attempt) this.#trouble(err.message || String(err));
    }
  }

  #onConnectionState(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState;
    clearTimeout(this.graceTimer);
    if (state === 'connected') {
      this.stats.status = this.played ? 'live' : 'connected';
    } else if (state === 'failed') {
      this.#trouble('the WebRTC connection failed (ICE or DTLS)');
    } else if (state === 'disconnected') {
      this.stats.status = 'disconnected…';
      this.graceTimer = setTimeout(() => {
        if (this.pc === pc && pc.connectionState === 'disconnected') this.#trouble('the WebRTC connection was lost');
      }, DISCONNECTED_GRACE_MS);
    }
  }

  /** Something went wrong: before the first picture hand over to the next player; after it, call again. */
  #trouble(reason) {
    if (this.stopped) return;
    if (!this.played) {
      this.#fail(reason);
      return;
    }
    console.warn(`WebRTC: ${reason}; reconnecting`);
    this.stats.status = `${reason}, reconnecting…`;
    this.#hangUp();
    this.attempt++; // until the retry starts, late events of the old peer are ignored
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.#connect(), this.retryMs);
    this.lastProgressAt = performance.now() + this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  #fail(reason) {
    if (this.failed || this.stopped) return;
    this.failed = true;
    this.#hangUp();
    this.onFail(reason);
  }

  #hangUp() {
    if (this.location) hangUp(this.location);
    this.location = null;
    if (this.control?.channel === this.channel) this.control.useChannel(null);
    this.channel = null;
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this.receiver = null;
    this.rtpBase = { bytes: this.rtpBase.bytes + this.rtpNow.bytes, dropped: this.rtpBase.dropped + this.rtpNow.dropped };
    this.rtpNow = { bytes: 0, dropped: 0 };
    this.lastPresented = 0;
    this.video.srcObject = null;
  }

  #onChannelMessage(data) {
    if (typeof data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type === 'frame') {
      this.frameTimes.add(msg);
      this.stats.received(msg.seq, 0); // the bytes come from getStats, per second
    } else {
      this.control?.fromChannel(msg);
    }
  }

  #watchFrames() {
    if (!('requestVideoFrameCallback' in HTMLVideoElement.prototype)) {
      // No per-frame timing: count what getStats says was decoded, and say why there is no latency.
      this.stats.note = 'n/a (no rVFC)';
      return;
    }
    const onFrame = (now, meta) => {
      if (this.stopped) return;
      this.video.requestVideoFrameCallback(onFrame);
      if (this.pc) this.#onPresented(meta);
    };
    this.video.requestVideoFrameCallback(onFrame);
  }

  #onPresented(meta) {
    const presentedMs = this.clock.toServerMs(wallClockMs(meta.presentationTime));
    // The intrinsic size, which drawImage reads from (rVFC's width/height may be the size the frame is shown at).
    const width = this.video.videoWidth || meta.width;
    const height = this.video.videoHeight || meta.height;
    this.framesSeen++;
    let captureUs = null;
    if (this.codeMisses < CODE_GIVE_UP_AFTER || this.framesSeen % CODE_RETRY_EVERY === 0) {
      captureUs = this.reader.read(this.video, width, height);
      this.codeMisses = captureUs === null ? this.codeMisses + 1 : 0;
    }
    const sent = this.frameTimes.match(meta.rtpTimestamp);
    let latency = null;
    let source = null;
    let seq = sent?.seq ?? null;
    if (captureUs !== null && plausible(presentedMs - captureUs / 1000)) {
      latency = presentedMs - captureUs / 1000;
      source = 'timecode';
      seq = this.frameTimes.byCaptureUs(captureUs)?.seq ?? seq;
    } else if (sent) {
      latency = presentedMs - sent.captureMs;
      source = 'datachannel';
    }
    if (!this.clock.synced) latency = null; // an unsynced clock would show the clock offset, not a latency
    if (latency !== null) this.stats.latencySources[source] = (this.stats.latencySources[source] ?? 0) + 1;
    // presentedFrames may jump by more than one: frames shown between two callbacks.
    const missed = this.lastPresented ? Math.max(0, meta.presentedFrames - this.lastPresented - 1) : 0;
    this.lastPresented = meta.presentedFrames;
    for (let i = 0; i < missed; i++) this.stats.shown(null, null);
    this.stats.shown(seq, latency);
    if (width && (width !== this.stats.width || height !== this.stats.height)) this.stats.setResolution(width, height);
    this.#progress();
  }

  #progress() {
    this.lastProgressAt = performance.now();
    this.retryMs = RETRY_FIRST_MS;
    if (!this.played) {
      this.played = true;
      clearTimeout(this.firstFrameTimer);
    }
  }

  async #poll() {
    const receiver = this.receiver;
    if (!receiver) return;
    let inbound = null;
    try {
      for (const entry of (await receiver.getStats()).values()) if (entry.type === 'inbound-rtp') inbound = entry;
    } catch {
      return; // closed under us
    }
    if (!inbound || receiver !== this.receiver) return;
    const bytes = inbound.bytesReceived ?? 0;
    if (bytes > this.rtpNow.bytes) this.stats.addBytes(bytes - this.rtpNow.bytes);
    this.rtpNow = { bytes, dropped: inbound.framesDropped ?? 0 };
    this.stats.dropped = this.rtpBase.dropped + this.rtpNow.dropped;
    // A hidden tab gets no rVFC callbacks, yet decodes: that is progress, not a stall.
    if (inbound.framesDecoded > (this.framesDecoded ?? 0)) {
      if (document.visibilityState !== 'visible') this.#progress();
    }
    this.framesDecoded = inbound.framesDecoded;
    if (this.played && performance.now() - this.lastProgressAt > STALL_MS) {
      this.#trouble(`no frames for ${STALL_MS / 1000} s`);
    }
  }
}

/** A code that reads as a capture time this far off is a picture that happens to pass the CRC, not a code. */
function plausible(latencyMs) {
  return latencyMs > -1000 && latencyMs < 60000;
}

/** Ask for the least buffering the receiver allows: the stream is live, a late frame is worth less than a jerk. */
function lowLatency(receiver) {
  try {
    if ('jitterBufferTarget' in receiver) receiver.jitterBufferTarget = 0; // ms, the standard attribute
    if ('playoutDelayHint' in receiver) receiver.playoutDelayHint = 0; // s, Chrome's older name for it
  } catch (err) {
    console.info('WebRTC: cannot lower the jitter buffer:', err.message);
  }
}

/** Resolve once ICE gathering is complete, or after capMs (the candidates so far are in the offer either way). */
function iceGathered(pc, capMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, capMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** DELETE the peer; keepalive lets it leave even while the page unloads (pagehide). */
function hangUp(location) {
  fetch(location, { method: 'DELETE', keepalive: true, cache: 'no-store' }).catch(() => {});
}

function detailOf(body) {
  try {
    return JSON.parse(body).detail ?? body;
  } catch {
    return body.slice(0, 200);
  }
}
