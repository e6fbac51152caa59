// MJPEG player: fetch('/stream/{stream}.mjpeg') read as a stream, one JPEG part at a time → <canvas>.
// Without streaming fetch it falls back to a plain <img> (the browser shows the stream, but no timing is known).

import { wallClockMs } from './frame_header.js';
import { boundaryOf, MultipartReader } from './multipart.js';

export function mjpegStreamingSupport() {
  if (!('ReadableStream' in window) || !('body' in Response.prototype)) return 'no streaming fetch';
  if (!('createImageBitmap' in window)) return 'no createImageBitmap';
  return null;
}

export class MjpegPlayer {
  constructor({ stream, stats, clock, elements }) {
    this.url = `/stream/${encodeURIComponent(stream)}.mjpeg`;
    this.stats = stats;
    this.clock = clock;
    this.canvas = elements.canvas;
    this.img = elements.img;
    this.ctx2d = this.canvas.getContext('2d', { alpha: false, desynchronized: true });
    this.latest = null; // newest part not drawn yet: a slow page skips to it (the server's `latest` policy)
    this.drawing = false;
  }

  start() {
    this.stopped = false;
    const lacking = mjpegStreamingSupport();
    if (lacking) {
      console.info(`MJPEG: ${lacking}; showing a plain <img>, which gives no frame timing`);
      this.stats.note = 'n/a (<img>)';
      this.img.hidden = false;
      this.img.src = this.url;
      this.img.onload = () => this.stats.setResolution(this.img.naturalWidth, this.img.naturalHeight);
      this.stats.status = 'live (img)';
      return;
    }
    this.canvas.hidden = false;
    this.#run();
  }

  stop() {
    this.stopped = true;
    this.abort?.abort();
    this.img.removeAttribute('src');
    this.img.hidden = true;
    this.canvas.hidden = true;
  }

  async #run() {
    let retryMs = 500;
    while (!this.stopped) {
      this.abort = new AbortController();
      try {
        const response = await fetch(this.url, { signal: this.abort.signal, cache: 'no-store' });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        this.stats.status = 'connected';
        retryMs = 500;
        const reader = new MultipartReader(boundaryOf(response.headers.get('content-type')));
        const body = response.body.getReader();
        for (;;) {
          const { value, done } = await body.read();
          if (done || this.stopped) break;
          this.stats.addBytes(value.byteLength);
          for (const part of reader.push(value)) this.#onPart(part);
        }
      } catch (err) {
        if (this.stopped) return;
        this.stats.status = `MJPEG: ${err.message}, reconnecting…`;
      }
      if (this.stopped) return;
      this.stats.status = 'disconnected, reconnecting…';
      await new Promise((resolve) => setTimeout(resolve, retryMs));
      retryMs = Math.min(retryMs * 2, 8000);
    }
  }

  #onPart(part) {
    const seqText = part.headers.get('x-seq');
    const captureText = part.headers.get('x-capture-ns');
    const seq = seqText !== undefined ? Number(seqText) : null;
    this.stats.frames++;
    if (seq !== null) {
      if (this.stats.firstSeq === null) this.stats.firstSeq = seq;
      this.stats.lastSeq = seq;
    }
    if (this.latest) this.stats.dropped++; // replaced before it could be drawn
    this.latest = { seq, captureMs: captureText ? nsTextToMs(captureText) : null, jpeg: part.body };
    if (!this.drawing) this.#drawLatest();
  }

  async #drawLatest() {
    this.drawing = true;
    while (this.latest && !this.stopped) {
      const { seq, captureMs, jpeg } = this.latest;
      this.latest = null;
      let bitmap;
      try {
        bitmap = await createImageBitmap(new Blob([jpeg], { type: 'image/jpeg' }));
      } catch (err) {
        console.warn('bad JPEG:', err);
        this.stats.dropped++;
        continue;
      }
      if (this.stopped) {
        bitmap.close();
        break;
      }
      if (this.canvas.width !== bitmap.width || this.canvas.height !== bitmap.height) {
        this.canvas.width = bitmap.width;
        this.canvas.height = bitmap.height;
        this.stats.setResolution(bitmap.width, bitmap.height);
      }
      this.ctx2d.drawImage(bitmap, 0, 0);
      bitmap.close();
      const latency = captureMs !== null ? this.clock.toServerMs(wallClockMs()) - captureMs : null;
      this.stats.shown(seq, latency);
    }
    this.drawing = false;
  }
}

/** Decimal nanoseconds (too big for a double) → milliseconds, keeping the sub-millisecond part. */
function nsTextToMs(text) {
  const digits = text.trim();
  if (!/^\d+$/.test(digits)) return null;
  if (digits.length <= 6) return Number(digits) / 1e6;
  return Number(digits.slice(0, -6)) + Number(digits.slice(-6)) / 1e6;
}
