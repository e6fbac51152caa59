// Control WebSocket: clock offset to the server (ping/pong) and the player's latency reports. Other modules share the
// socket: `send()` a message, `on(type, fn)` for server messages of that type, `on('connection', fn)` for open/closed.

import { wallClockMs } from './frame_header.js';

const FIRST_PINGS = 5;
const FIRST_PING_GAP_MS = 100;
const PING_EVERY_MS = 3000;
const REPORT_EVERY_MS = 2000;
const KEEP_SAMPLES = 10; // the best of the last few: clocks drift, so old samples expire

/**
 * Keep `offsetMs` = server wall clock − this page's wall clock, from the ping with the shortest round trip
 * (docs/protocol.md, "Control WebSocket"); null until the first pong.
 */
export class ClockSync {
  constructor({ url, makeReport }) {
    this.url = url;
    this.makeReport = makeReport;
    this.offsetMs = null;
    this.rttMs = null;
    this.samples = [];
    this.ws = null;
    this.timers = [];
    this.stopped = false;
    this.retryMs = 1000;
    this.listeners = new Map(); // type → Set of functions
  }

  /** Whether the control socket is open now. */
  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Call `fn(msg)` for every server message of `type` ('connection' gets `{connected}`); returns an unsubscribe. */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type)?.delete(fn);
  }

  /** Send one JSON message; false when the socket is not open (the caller decides whether to retry). */
  send(msg) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  #emit(type, msg) {
    for (const fn of this.listeners.get(type) ?? []) {
      try {
        fn(msg);
      } catch (err) {
        console.error(`control listener for ${type}:`, err);
      }
    }
  }

  start() {
    this.stopped = false;
    this.#connect();
    this.timers.push(setInterval(() => this.#report(), REPORT_EVERY_MS));
  }

  stop() {
    this.stopped = true;
    this.timers.forEach(clearInterval);
    clearTimeout(this.pingTimer);
    clearTimeout(this.retryTimer);
    this.timers = [];
    if (this.ws) this.ws.close();
    this.ws = null;
  }

  /** Convert a wall-clock time of this page (ms) to the server's clock. */
  toServerMs(localMs) {
    return localMs + (this.offsetMs ?? 0);
  }

  get synced() {
    return this.offsetMs !== null;
  }

  #connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    let pings = 0;
    const ping = () => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ type: 'ping', t: wallClockMs() }));
      pings++;
    };
    ws.onopen = () => {
      this.retryMs = 1000;
      ping();
      this.#emit('connection', { connected: true });
    };
    ws.onmessage = (event) => {
      const tRecv = wallClockMs();
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg.type === 'pong') {
        this.#addSample(msg.t, tRecv, msg.server_ns);
        // A quick burst first, so a good sample comes early; then a slow pace.
        clearTimeout(this.pingTimer);
        this.pingTimer = setTimeout(ping, pings < FIRST_PINGS ? FIRST_PING_GAP_MS : PING_EVERY_MS);
      } else if (msg.type === 'error' || (msg.type === 'reply' && !msg.ok)) {
        console.warn('control:', msg.command ?? '', msg.code, msg.error);
      }
      if (msg.type !== 'pong' && typeof msg.type === 'string') this.#emit(msg.type, msg);
    };
    ws.onclose = () => {
      clearTimeout(this.pingTimer);
      if (this.ws !== ws) return;
      this.#emit('connection', { connected: false });
      if (this.stopped) return;
      this.retryTimer = setTimeout(() => this.#connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10000);
    };
  }

  #addSample(tSend, tRecv, serverNs) {
    if (typeof tSend !== 'number' || serverNs === undefined) return;
    // server_ns (~1.8e18) parses to a double within ~128 ns: plenty for a millisecond offset.
    const serverMs = Number(serverNs) / 1e6;
    this.samples.push({ rtt: tRecv - tSend, offset: serverMs - (tSend + tRecv) / 2 });
    if (this.samples.length > KEEP_SAMPLES) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    this.offsetMs = best.offset;
    this.rttMs = best.rtt;
  }

  #report() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    const report = this.makeReport();
    if (report) this.ws.send(JSON.stringify(report));
  }
}
