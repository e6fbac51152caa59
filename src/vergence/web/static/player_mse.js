// MSE player: /ws/fmp4/{stream} (one fMP4 fragment per frame) → MediaSource → <video>, kept at the live edge.
// Latency: each fragment's presentation time (tfdt) is keyed to its capture time; requestVideoFrameCallback tells
// which media time is on screen.

import { parseFrameHeader, wallClockMs } from './frame_header.js';
import { LiveSocket, wsUrl } from './live_socket.js';
import { fragmentTime, parseInitSegment } from './mp4.js';

// Staying live: lag = buffered end − currentTime.
const CATCH_UP_ABOVE_S = 0.2; // lag above this: play at CATCH_UP_RATE…
const CATCH_UP_UNTIL_S = 0.12; // …until it is below this
const CATCH_UP_RATE = 1.1;
const FAST_ABOVE_S = 0.5; // lag above this: play as fast as the display shows every frame (2× at 30 fps)
const DISPLAY_HZ = 60;
// Near the edge. Chrome's clock stops at the start of the last buffered frame until the next one is in; at 1× it keeps
// whatever lead it had, and every frame then waits about a frame before it is shown (60–70 ms capture→shown here). A
// rate a little above 1 keeps the clock against the edge instead: each frame is shown once decoded (30–34 ms). Any rate
// but 1 costs a frame now and then (Chrome's 30-on-60 Hz cadence), so the rate stays as close to 1 as still reaches it.
const SLACK_WINDOW_MS = 500; // slack: how long before it was due a frame was buffered; judged by its least over this
const APPROACH_ABOVE_S = 0.015; // least slack above this: approach at APPROACH_RATE…
const APPROACH_RATE = 1.02;
const EDGE_RATE = 1.005; // …else stay against the edge
const JUMP_ABOVE_S = 3; // lag above this: jump (Chrome counts the frames it decodes to get there as dropped)
const SEEK_SETTLE_MS = 2000; // give a jump time to take effect before judging the lag again
const START_BUFFER_S = 0.2; // buffered before playing: less, and startup jitter stalls it at once (and drops)
const START_ANYWAY_S = 2; // buffered when nothing looks live: play anyway
const LIVE_AGE_MS = 150; // a fragment younger than this (+ a frame) on arrival is live, not backlog
const KEEP_BEHIND_S = 10; // buffer kept behind currentTime
const TRIM_EVERY_MS = 5000;
const MAX_QUEUE = 90; // appends waiting for the SourceBuffer; beyond this we are not live: start over

/**
 * The MediaSource this browser has: MediaSource, else ManagedMediaSource (an iPhone's only one, iOS 17.1+), which
 * may evict what it buffered and asks for data only between its `startstreaming` and `endstreaming` events.
 */
export function mediaSourceKind() {
  if ('MediaSource' in window) return { Source: window.MediaSource, managed: false };
  if ('ManagedMediaSource' in window) return { Source: window.ManagedMediaSource, managed: true };
  return null;
}

export function mseSupport(mime = 'video/mp4; codecs="avc1.42E01E"') {
  const kind = mediaSourceKind();
  if (!kind) return 'this browser has no Media Source Extensions';
  if (!kind.Source.isTypeSupported(mime)) return `MSE cannot play ${mime}`;
  return null;
}

export class MsePlayer {
  constructor({ stream, stats, elements, clock, onFail }) {
    this.stream = stream;
    this.stats = stats;
    this.clock = clock;
    this.video = elements.video;
    this.onFail = onFail;
    this.mime = null;
    this.kind = mediaSourceKind();
    this.stats.playerDetail = this.kind?.managed ? 'managed' : '';
    this.mediaSource = null;
    this.sourceBuffer = null;
    this.queue = []; // {append: Uint8Array} | {remove: [start, end]}
    this.captureByTime = new Map(); // round(media time ms) → {seq, captureMs}
    this.init = null; // {timescale, editOffsetS} of the current init segment
    this.playing = false;
    this.lastSeekAt = -Infinity;
    this.droppedBefore = 0; // dropped frames of earlier MediaSources
    this.lastPresented = 0;
    this.slacks = []; // [performance.now(), slack s] of the frames appended over the last SLACK_WINDOW_MS
    this.socket = new LiveSocket(wsUrl(`/ws/fmp4/${encodeURIComponent(stream)}`), {
      onOpen: () => { this.stats.status = 'connected'; },
      onText: (msg) => this.#onText(msg),
      onBinary: (data) => this.#onBinary(data),
      onClose: () => { this.stats.status = 'disconnected, reconnecting…'; },
    });
  }

  start() {
    this.video.hidden = false;
    this.video.muted = true;
    this.video.onerror = () => {
      if (this.mediaSource) this.#restart(`media error: ${this.video.error?.message || this.video.error?.code}`);
    };
    this.stopped = false;
    this.socket.start();
    this.trimTimer = setInterval(() => this.#trim(), TRIM_EVERY_MS);
    this.#watchFrames();
  }

  stop() {
    this.stopped = true;
    this.socket.stop();
    clearInterval(this.trimTimer);
    clearInterval(this.pollTimer);
    this.video.onerror = null;
    this.#teardown();
    this.video.hidden = true;
  }

  /** Start over from a new connection (and so a new init segment and keyframe). */
  #restart(reason) {
    console.warn(`MSE: ${reason}; reconnecting`);
    this.stats.status = `${reason}, reconnecting…`;
    this.#teardown();
    this.socket.stop();
    this.socket.start();
  }

  #onText(msg) {
    if (msg.type === 'init') {
      if (msg.width && msg.height) this.stats.setResolution(msg.width, msg.height);
      this.frameMs = 1000 / (msg.fps || 30);
      this.fastRate = Math.min(2, Math.max(CATCH_UP_RATE, DISPLAY_HZ / (msg.fps || 30)));
      this.liveAgeMs = LIVE_AGE_MS + this.frameMs;
      const mime = msg.mime || `video/mp4; codecs="${msg.codec}"`;
      if (!this.kind.Source.isTypeSupported(mime)) {
        this.onFail(`MSE cannot play ${mime}`);
        return;
      }
      // Every init starts a new MediaSource: after a reconnect or a source restart the timestamps may start over.
      this.#teardown();
      this.mime = mime;
      this.#openMediaSource();
    } else if (msg.type === 'status') {
      this.stats.status = [msg.state, msg.message].filter(Boolean).join(': ');
    }
  }

  #onBinary(data) {
    const frame = parseFrameHeader(data);
    if (!frame || !this.mediaSource) return;
    if (frame.init) {
      this.init = parseInitSegment(frame.payload);
      if (!this.init) console.warn('init segment without a readable mdhd: no latency for MSE');
      this.stats.addBytes(data.byteLength);
    } else {
      this.stats.received(frame.seq, data.byteLength);
      const t = fragmentTime(frame.payload, this.init);
      if (t !== null) this.captureByTime.set(Math.round(t * 1000), { seq: frame.seq, captureMs: frame.captureMs });
    }
    if (this.queue.length > MAX_QUEUE) {
      this.#restart('the SourceBuffer fell behind');
      return;
    }
    this.queue.push({ append: frame.payload, live: !frame.init && this.#isLive(frame) });
    this.#pump();
  }

  /**
   * Tell a live fragment from the backlog a server may send first (the frames since the last keyframe, at once):
   * by its age on the synced clock, else by its arrival after a frame-sized gap (backlog comes in a burst).
   * Not by send_ns: a replayed packet keeps the time it was first released.
   */
  #isLive(frame) {
    const now = wallClockMs();
    const gapMs = now - (this.lastArrivalMs ?? -Infinity);
    this.lastArrivalMs = now;
    if (this.clock.synced) return this.clock.toServerMs(now) - frame.captureMs < this.liveAgeMs;
    return gapMs > this.frameMs / 2;
  }

  #openMediaSource() {
    const mediaSource = new this.kind.Source();
    this.mediaSource = mediaSource;
    if (this.kind.managed) {
      // A ManagedMediaSource plays only with remote playback (AirPlay) off or given another source; live video has none.
      this.video.disableRemotePlayback = true;
      // It asks for data between startstreaming and endstreaming: appends wait in the queue meanwhile.
      mediaSource.addEventListener('startstreaming', () => this.#pump());
    }
    this.objectUrl = URL.createObjectURL(mediaSource);
    this.video.src = this.objectUrl;
    mediaSource.addEventListener('sourceopen', () => {
      if (this.mediaSource !== mediaSource) return;
      try {
        mediaSource.duration = Infinity; // live
        this.sourceBuffer = mediaSource.addSourceBuffer(this.mime);
      } catch (err) {
        this.onFail(`MSE refused ${this.mime}: ${err.message}`);
        return;
      }
      this.sourceBuffer.addEventListener('updateend', () => this.#afterUpdate());
      this.sourceBuffer.addEventListener('error', () => console.warn('SourceBuffer error'));
      this.#pump();
    }, { once: true });
  }

  #teardown() {
    const quality = this.video.getVideoPlaybackQuality?.();
    if (quality && this.mediaSource) this.droppedBefore += quality.droppedVideoFrames;
    this.queue = [];
    this.captureByTime.clear();
    this.sourceBuffer = null;
    this.mediaSource = null;
    this.playing = false;
    this.liveBuffered = false;
    this.lastArrivalMs = null;
    this.inFlight = null;
    this.lastPresented = 0;
    this.slacks = [];
    this.video.playbackRate = 1;
    if (this.objectUrl) {
      this.video.removeAttribute('src');
      this.video.load();
      URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = null;
    }
  }

  #pump() {
    const sb = this.sourceBuffer;
    if (!sb || sb.updating || !this.queue.length || this.mediaSource.readyState !== 'open') return;
    if (this.kind.managed && !this.mediaSource.streaming) return; // it has not asked for data (or asked us to stop)
    const op = this.queue.shift();
    this.inFlight = op;
    try {
      if (op.append) sb.appendBuffer(op.append);
      else sb.remove(op.remove[0], op.remove[1]);
    } catch (err) {
      const buffered = this.video.buffered;
      const freeUpTo = this.video.currentTime - 1;
      if (err.name === 'QuotaExceededError' && op.append && buffered.length && buffered.start(0) < freeUpTo) {
        this.queue.unshift({ remove: [0, freeUpTo] }, op); // make room, then try again
        this.#pump();
      } else if (err.name === 'QuotaExceededError') {
        this.#restart('the SourceBuffer is full');
      } else {
        console.warn('SourceBuffer:', err);
        this.stats.status = `MSE error: ${err.message}`;
      }
    }
  }

  #afterUpdate() {
    if (this.inFlight?.live) this.liveBuffered = true;
    if (this.inFlight?.append && this.playing) this.#noteSlack();
    this.#keepLive();
    this.#pump();
  }

  /** How long before it was due the frame just appended was buffered (0 or less: the clock waited for it). */
  #noteSlack() {
    const buffered = this.video.buffered;
    if (!buffered.length || !this.frameMs) return;
    // Chrome holds the last buffered frame back until the next one is in: a frame is due one frame before the end.
    const slack = buffered.end(buffered.length - 1) - (2 * this.frameMs) / 1000 - this.video.currentTime;
    const now = performance.now();
    this.slacks.push([now, slack]);
    while (this.slacks.length && this.slacks[0][0] < now - SLACK_WINDOW_MS) this.slacks.shift();
  }

  #leastSlack() {
    let least = Infinity;
    for (const [, slack] of this.slacks) least = Math.min(least, slack);
    return least;
  }

  #keepLive() {
    const buffered = this.video.buffered;
    if (!buffered.length) return;
    const end = buffered.end(buffered.length - 1);
    const video = this.video;
    if (!this.playing) {
      // Start once live frames are in (or, should that never be clear, once plenty is buffered).
      const span = end - buffered.start(0);
      if (!(this.liveBuffered && span >= START_BUFFER_S) && span < START_ANYWAY_S) return;
      this.playing = true;
      // Start at the server's first keyframe: a jump past it makes Chrome decode, and count as dropped, every
      // frame before the target. Only a long backlog is worth that.
      video.currentTime = span > JUMP_ABOVE_S ? end - START_BUFFER_S : buffered.start(0);
      video.play().catch((err) => { this.stats.status = `cannot play: ${err.message}`; });
      return;
    }
    // A backlog (a stall, the server's first GOP): play faster until close to the end, then keep against the edge.
    const lag = end - video.currentTime;
    let rate = video.playbackRate;
    const fast = this.fastRate;
    if (lag > FAST_ABOVE_S) rate = fast;
    else if (lag > CATCH_UP_ABOVE_S) rate = rate === fast ? fast : CATCH_UP_RATE;
    else if (rate === fast) rate = CATCH_UP_RATE;
    else if (rate === CATCH_UP_RATE && lag > CATCH_UP_UNTIL_S) rate = CATCH_UP_RATE;
    else rate = this.slacks.length && this.#leastSlack() > APPROACH_ABOVE_S ? APPROACH_RATE : EDGE_RATE;
    if (rate !== video.playbackRate) video.playbackRate = rate;
    const now = performance.now();
    if (lag > JUMP_ABOVE_S && now - this.lastSeekAt > SEEK_SETTLE_MS) {
      this.lastSeekAt = now;
      video.currentTime = end - START_BUFFER_S;
    }
  }

  #trim(keepS = KEEP_BEHIND_S) {
    const buffered = this.video.buffered;
    if (!this.sourceBuffer || !buffered.length) return;
    const cut = this.video.currentTime - keepS;
    if (buffered.start(0) < cut) {
      this.queue.push({ remove: [0, cut] });
      this.#pump();
    }
  }

  #watchFrames() {
    if (!('requestVideoFrameCallback' in HTMLVideoElement.prototype)) {
      console.info('MSE: no requestVideoFrameCallback, so no per-frame timing');
      this.stats.note = 'n/a (no rVFC)';
      this.pollTimer = setInterval(() => this.#countFromQuality(), 250);
      return;
    }
    const onFrame = (now, meta) => {
      if (this.stopped) return;
      this.video.requestVideoFrameCallback(onFrame);
      if (!this.mediaSource) return;
      const mediaMs = Math.round(meta.mediaTime * 1000);
      const info = this.#lookup(mediaMs);
      const latency = info ? this.clock.toServerMs(wallClockMs(now)) - info.captureMs : null;
      // presentedFrames may jump by more than one: frames shown between two callbacks.
      const missed = Math.max(0, meta.presentedFrames - this.lastPresented - 1);
      this.lastPresented = meta.presentedFrames;
      for (let i = 0; i < missed; i++) this.stats.shown(null, null);
      this.stats.shown(info ? info.seq : null, latency);
      if (meta.width && (meta.width !== this.stats.width || meta.height !== this.stats.height)) {
        this.stats.setResolution(meta.width, meta.height);
      }
      this.#updateDropped();
    };
    this.video.requestVideoFrameCallback(onFrame);
  }

  #countFromQuality() {
    const quality = this.video.getVideoPlaybackQuality?.();
    if (!quality) return;
    const shown = quality.totalVideoFrames - quality.droppedVideoFrames;
    while (this.lastPresented < shown) {
      this.lastPresented++;
      this.stats.shown(null, null);
    }
    this.#updateDropped();
  }

  #updateDropped() {
    const quality = this.video.getVideoPlaybackQuality?.();
    if (quality) this.stats.dropped = this.droppedBefore + quality.droppedVideoFrames;
  }

  #lookup(mediaMs) {
    const map = this.captureByTime;
    let info = map.get(mediaMs) ?? map.get(mediaMs - 1) ?? map.get(mediaMs + 1);
    if (!info) {
      // The nearest fragment within a couple of milliseconds, should rounding differ more than usual.
      let best = 3;
      for (const [key, value] of map) {
        const d = Math.abs(key - mediaMs);
        if (d < best) { best = d; info = value; }
      }
    }
    // Forget what is now in the past (the map is in arrival order, i.e. media time order).
    for (const key of map.keys()) {
      if (key >= mediaMs - 2000) break;
      map.delete(key);
    }
    return info ?? null;
  }
}
