// The overlay at the top left of the video: player, resolution, fps, bitrate, latency, status.
// Refreshed a few times a second from Stats; never per frame.

const REFRESH_MS = 250;
const DASH = '–';

const LABELS = {
  webcodecs: 'WebCodecs',
  mse: 'MSE',
  mjpeg: 'MJPEG',
};

export class Hud {
  constructor(root, stats, clock) {
    this.stats = stats;
    this.clock = clock;
    this.fields = {};
    for (const el of root.querySelectorAll('[id^="hud-"]')) this.fields[el.id.slice(4)] = el;
    this.shown = {};
  }

  start() {
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    this.refresh();
  }

  stop() {
    clearInterval(this.timer);
  }

  refresh() {
    const s = this.stats;
    const w = s.window(1000);
    const haveFrames = s.decoded > 0;
    this.#set('player', LABELS[s.player] ?? (s.player || DASH));
    this.#set('stream', s.stream || DASH);
    this.#set('resolution', s.width ? `${s.width}×${s.height}` : DASH);
    this.#set('fps', haveFrames ? w.fps.toFixed(1) : DASH);
    this.#set('bitrate', s.bytes ? `${(w.bitrateBps / 1e6).toFixed(2)} Mbit/s` : DASH);
    this.#set('latency', w.latency ? `${w.latency.p50.toFixed(1)} ms` : (s.note || DASH));
    this.#set('latency-last', s.lastLatency !== null && w.latency ? `${s.lastLatency.toFixed(1)} ms` : DASH);
    this.#set('dropped', haveFrames || s.dropped ? String(s.dropped) : DASH);
    this.#set('status', s.status || DASH);
    this.#set('clock', this.clock.synced
      ? `${this.clock.offsetMs >= 0 ? '+' : ''}${this.clock.offsetMs.toFixed(1)} ms (rtt ${this.clock.rttMs.toFixed(1)})`
      : 'not synced');
  }

  #set(name, text) {
    const el = this.fields[name];
    if (el && this.shown[name] !== text) {
      el.textContent = text;
      this.shown[name] = text;
    }
  }
}
