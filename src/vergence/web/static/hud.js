// The overlay at the top left of the video: player, resolution, fps, bitrate, latency, status, and the server's time
// per stage. Refreshed a few times a second from Stats (never per frame); the stages come from /api/stats once a second
// while the page is visible and the HUD shown.

const REFRESH_MS = 250;
const STAGES_EVERY_MS = 1000;
const DASH = '–';

const LABELS = {
  webrtc: 'WebRTC',
  webcodecs: 'WebCodecs',
  mse: 'MSE',
  mjpeg: 'MJPEG',
};

// GET /api/stats streams[id].stages_ms, in pipeline order: short names for one line.
const STAGES = [
  ['capture', 'cap'],
  ['ptz', 'ptz'],
  ['stabilize', 'stab'],
  ['plugins', 'plug'],
  ['overlay', 'ovl'],
];

/** "cap 0.4 · stab 4.6 · enc 3.1 ms": the stages that took time (≥ 0.05 ms); the encoder is the one feeding `player`. */
export function stagesLine(stagesMs, player) {
  const parts = [];
  const add = (label, ms) => {
    if (typeof ms === 'number' && ms >= 0.05) parts.push(`${label} ${ms.toFixed(1)}`);
  };
  for (const [key, label] of STAGES) add(label, stagesMs[key]);
  const mine = player === 'mjpeg' ? 'encode_jpeg' : 'encode_h264';
  add('enc', stagesMs[mine]);
  for (const key of Object.keys(stagesMs)) {
    if (key.startsWith('encode_') && key !== mine) add(key.slice(7), stagesMs[key]);
  }
  return parts.length ? `${parts.join(' · ')} ms` : DASH;
}

export class Hud {
  constructor(root, stats, clock) {
    this.root = root;
    this.stats = stats;
    this.clock = clock;
    this.fields = {};
    for (const el of root.querySelectorAll('[id^="hud-"]')) this.fields[el.id.slice(4)] = el;
    this.shown = {};
    this.stages = null; // the current stream's stages_ms, as last read
    this.fetching = false;
  }

  start() {
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    this.stagesTimer = setInterval(() => this.#pollStages(), STAGES_EVERY_MS);
    this.refresh();
    this.#pollStages();
  }

  stop() {
    clearInterval(this.timer);
    clearInterval(this.stagesTimer);
  }

  async #pollStages() {
    const stream = this.stats.stream;
    if (this.fetching || !stream || document.visibilityState !== 'visible' || this.root.classList.contains('off')) return;
    this.fetching = true;
    try {
      const response = await fetch('/api/stats', { cache: 'no-store' });
      const body = response.ok ? await response.json() : null;
      this.stages = stream === this.stats.stream ? (body?.streams?.[stream]?.stages_ms ?? null) : null;
    } catch {
      this.stages = null; // the server is away: the line says so by its dash
    } finally {
      this.fetching = false;
    }
  }

  refresh() {
    const s = this.stats;
    const w = s.window(1000);
    const haveFrames = s.decoded > 0;
    const label = LABELS[s.player] ?? (s.player || DASH);
    this.#set('player', s.playerDetail ? `${label} (${s.playerDetail})` : label);
    this.#set('stream', s.stream || DASH);
    this.#set('resolution', s.width ? `${s.width}×${s.height}` : DASH);
    this.#set('fps', haveFrames ? w.fps.toFixed(1) : DASH);
    this.#set('bitrate', s.bytes ? `${(w.bitrateBps / 1e6).toFixed(2)} Mbit/s` : DASH);
    this.#set('latency', w.latency ? `${w.latency.p50.toFixed(1)} ms` : (s.note || DASH));
    this.#set('latency-last', s.lastLatency !== null && w.latency ? `${s.lastLatency.toFixed(1)} ms` : DASH);
    this.#set('dropped', haveFrames || s.dropped ? String(s.dropped) : DASH);
    this.#set('status', s.status || DASH);
    this.#set('stages', this.stages ? stagesLine(this.stages, s.player) : DASH);
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
