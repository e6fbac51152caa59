// WebCodecs player: /ws/video/{stream} → VideoDecoder (Annex-B, no description) → <canvas>.

import { parseFrameHeader, wallClockMs } from './frame_header.js';
import { codecFromAnnexB } from './h264.js';
import { LiveSocket, wsUrl } from './live_socket.js';

// A decoder this far behind cannot be live any more: start again at the next keyframe.
const MAX_DECODE_QUEUE = 30;

export function webcodecsSupport() {
  if (!('VideoDecoder' in window)) return 'this browser has no WebCodecs (VideoDecoder)';
  if (!window.isSecureContext) return 'WebCodecs needs a secure context (https or localhost)';
  return null;
}

export class WebCodecsPlayer {
  constructor({ stream, stats, clock, elements, onFail }) {
    this.stream = stream;
    this.stats = stats;
    this.clock = clock;
    this.canvas = elements.canvas;
    this.ctx2d = this.canvas.getContext('2d', { alpha: false, desynchronized: true });
    this.onFail = onFail;
    this.decoder = null;
    this.config = null;
    this.waitingForKey = true;
    this.pending = new Map(); // chunk timestamp → {seq, captureMs}
    this.chunkIndex = 0;
    this.socket = new LiveSocket(wsUrl(`/ws/video/${encodeURIComponent(stream)}`), {
      onOpen: () => { this.stats.status = 'connected'; },
      onText: (msg) => this.#onText(msg),
      onBinary: (data) => this.#onBinary(data),
      onClose: () => {
        this.stats.status = 'disconnected, reconnecting…';
        this.#resetDecoder();
      },
    });
  }

  start() {
    this.canvas.hidden = false;
    this.socket.start();
  }

  stop() {
    this.socket.stop();
    this.#closeDecoder();
    this.canvas.hidden = true;
  }

  #onText(msg) {
    if (msg.type === 'init') {
      this.init = msg;
      if (msg.width && msg.height) this.stats.setResolution(msg.width, msg.height);
      // The first binary message is a keyframe with SPS/PPS; (re)configure when it comes, with the codec it names.
      this.#resetDecoder();
    } else if (msg.type === 'status') {
      this.stats.status = [msg.state, msg.message].filter(Boolean).join(': ');
    }
  }

  #onBinary(data) {
    const frame = parseFrameHeader(data);
    if (!frame) return;
    this.stats.received(frame.seq, data.byteLength);
    if (this.waitingForKey) {
      if (!frame.key) {
        this.stats.dropped++;
        return;
      }
      if (!this.#configure(frame.payload)) return;
      this.waitingForKey = false;
    }
    if (this.decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
      console.warn('decoder fell behind; waiting for the next keyframe');
      this.#resetDecoder();
      this.stats.dropped++;
      return;
    }
    const timestamp = this.chunkIndex++;
    this.pending.set(timestamp, { seq: frame.seq, captureMs: frame.captureMs });
    try {
      this.decoder.decode(new EncodedVideoChunk({ type: frame.key ? 'key' : 'delta', timestamp, data: frame.payload }));
    } catch (err) {
      console.warn('decode failed:', err);
      this.#resetDecoder();
    }
  }

  #configure(keyPayload) {
    const codec = this.init?.codec || codecFromAnnexB(keyPayload);
    if (!codec) {
      this.stats.status = 'no codec string: neither init.codec nor an SPS in the keyframe';
      return false;
    }
    const config = { codec, optimizeForLatency: true };
    if (this.init?.width && this.init?.height) {
      config.codedWidth = this.init.width;
      config.codedHeight = this.init.height;
    }
    if (this.decoder && this.decoder.state !== 'closed' && sameConfig(config, this.config)) {
      return true;
    }
    this.#closeDecoder();
    this.config = config;
    const decoder = new VideoDecoder({
      output: (videoFrame) => this.#onFrame(videoFrame),
      error: (err) => {
        if (this.decoder !== decoder) return; // a decoder we already replaced
        console.warn('VideoDecoder error:', err);
        this.stats.status = `decoder error: ${err.message}; waiting for a keyframe`;
        this.decoder = null; // an errored decoder is closed; the next keyframe makes a new one
        this.waitingForKey = true;
      },
    });
    this.decoder = decoder;
    try {
      decoder.configure(config);
    } catch (err) {
      this.#closeDecoder();
      this.onFail(`WebCodecs cannot decode ${codec}: ${err.message}`);
      return false;
    }
    VideoDecoder.isConfigSupported(config).then((support) => {
      if (!support.supported && this.config === config) this.onFail(`WebCodecs cannot decode ${codec}`);
    }, () => {});
    return true;
  }

  #onFrame(videoFrame) {
    const decodedAt = wallClockMs();
    const meta = this.pending.get(videoFrame.timestamp);
    // Output comes in decode order (no B-frames): whatever is older than this frame will never come out.
    for (const key of this.pending.keys()) {
      if (key > videoFrame.timestamp) break;
      this.pending.delete(key);
    }
    const width = videoFrame.displayWidth;
    const height = videoFrame.displayHeight;
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    if (this.stats.width !== width || this.stats.height !== height) this.stats.setResolution(width, height);
    this.ctx2d.drawImage(videoFrame, 0, 0);
    videoFrame.close();
    const latency = meta ? this.clock.toServerMs(decodedAt) - meta.captureMs : null;
    this.stats.shown(meta ? meta.seq : null, latency);
  }

  #resetDecoder() {
    this.waitingForKey = true;
    this.pending.clear();
    if (this.decoder && this.decoder.state === 'configured') {
      this.decoder.reset(); // drops queued chunks; configure() again on the next keyframe
      this.decoder.configure(this.config);
    }
  }

  #closeDecoder() {
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
    this.decoder = null;
    this.pending.clear();
  }
}

function sameConfig(a, b) {
  return !!b && a.codec === b.codec && a.codedWidth === b.codedWidth && a.codedHeight === b.codedHeight;
}
