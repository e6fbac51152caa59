// Recording and photos of the current stream: a REC button (start/stop, elapsed time), a photo button, a clip button,
// and a panel listing the media directory (GET /api/recordings) with download links and delete buttons.
// Commands go to POST /api/commands (their reply says at once what happened); what anyone else starts or stops, and
// errors such as a full disk, arrive as `recording` events on the control socket (docs/protocol.md, "Recordings").

import { wallClockMs } from './frame_header.js';

const TICK_MS = 500; // the elapsed time on the REC button
const REFRESH_DELAY_MS = 250; // events come in bursts (a segment closes, the next opens): one listing for a burst
const TOAST_MS = 6000;
const ERROR_TOAST_MS = 15000;
const KIND_LABELS = { video: 'video', clip: 'clip', photo: 'photo' };

/** `el` with its attributes and children (strings become text). */
function make(tag, attributes = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'className') el.className = value;
    else el.setAttribute(key, value);
  }
  el.append(...children);
  return el;
}

/** 1536 → "1.5 KB": bytes in the units a file manager shows (powers of 1000). */
export function humanBytes(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** 75.4 → "1:15"; 3725 → "1:02:05". */
export function humanDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '–';
  const whole = Math.floor(seconds);
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor((whole % 3600) / 60), whole % 60];
  const pad = (n) => String(n).padStart(2, '0');
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

function humanStart(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso ?? '–';
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return sameDay ? time : `${date.toLocaleDateString()} ${time}`;
}

const baseName = (path) => String(path ?? '').split(/[\\/]/).pop();

export class RecordingsPanel {
  /**
   * @param control the ClockSync that owns /ws/control (on, connected, toServerMs)
   * @param root the panel (#recordings, holding the recs-* elements of index.html)
   * @param toggle the header button that shows and hides the panel
   * @param recButton, photoButton, clipButton the header buttons
   * @param toast the element that shows a short message (#toast)
   */
  constructor({ control, root, toggle, recButton, photoButton, clipButton, toast }) {
    this.control = control;
    this.root = root;
    this.toggle = toggle;
    this.recButton = recButton;
    this.photoButton = photoButton;
    this.clipButton = clipButton;
    this.toast = toast;
    const find = (id) => root.querySelector(`#${id}`);
    this.summary = find('recs-summary');
    this.errorLine = find('recs-error');
    this.list = find('recs-files');
    this.stream = null;
    this.recordings = {}; // stream id → {active, startedNs, error}, from /api/stats, replies and events
    this.files = [];
    this.busy = false; // a record command is on its way: one click, one command
    this.refreshTimer = null;
    this.toastTimer = null;
    this.timers = [];
    this.unsubscribe = [];
  }

  get open() {
    return !this.root.hidden;
  }

  /** Whether the current stream records now, as far as the page knows. */
  get recording() {
    return Boolean(this.recordings[this.stream]?.active);
  }

  start() {
    this.unsubscribe.push(
      this.control.on('recording', (msg) => this.#onEvent(msg)),
      // After a reconnect the server may have started or stopped recordings while nobody listened.
      this.control.on('connection', ({ connected }) => connected && this.#loadState()),
    );
    this.toggle.addEventListener('click', () => this.setOpen(!this.open));
    this.recButton.addEventListener('click', () => this.#toggleRecording());
    this.photoButton.addEventListener('click', () => this.#photo());
    this.clipButton.addEventListener('click', () => this.#clip());
    this.list.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-delete]');
      if (button) this.#delete(button.dataset.delete);
    });
    // The panel floats over the stage: its clicks and wheel are the panel's, not pan and zoom of the picture.
    for (const type of ['pointerdown', 'wheel', 'dblclick']) {
      this.root.addEventListener(type, (event) => event.stopPropagation());
    }
    this.toast.addEventListener('click', (event) => {
      if (!event.target.closest('a')) this.#hideToast();
    });
    this.timers.push(setInterval(() => this.#renderButton(), TICK_MS));
    this.#renderButton();
  }

  stop() {
    this.unsubscribe.forEach((off) => off());
    this.unsubscribe = [];
    this.timers.forEach(clearInterval);
    this.timers = [];
    clearTimeout(this.refreshTimer);
    clearTimeout(this.toastTimer);
  }

  /** Follow the stream the page plays. */
  setStream(stream) {
    if (stream === this.stream) return;
    this.stream = stream;
    this.#renderButton();
    this.#loadState();
  }

  setOpen(open) {
    this.root.hidden = !open;
    this.toggle.setAttribute('aria-expanded', String(open));
    this.toggle.classList.toggle('on', open);
    if (open) this.refresh();
  }

  /** Read the media directory again and show it. */
  async refresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    try {
      const response = await fetch('/api/recordings', { cache: 'no-store' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const listing = await response.json();
      this.files = listing.files ?? [];
      this.dir = listing.dir;
      this.freeBytes = listing.free_bytes;
      this.#renderList();
    } catch (err) {
      this.#say(`Cannot read the recordings (${err.message}).`);
    }
  }

  // ---- page → server

  async #command(body) {
    let reply;
    try {
      const response = await fetch('/api/commands', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
      });
      reply = await response.json();
    } catch (err) {
      reply = { ok: false, error: `the server did not answer (${err.message})` };
    }
    if (!reply.ok) {
      const text = `${body.type} refused: ${reply.error ?? reply.detail ?? reply.code ?? 'unknown error'}`;
      this.#say(text);
      this.#showToast(text, { error: true });
    } else {
      this.#say('');
    }
    return reply;
  }

  async #toggleRecording() {
    if (this.busy || !this.stream) return;
    this.busy = true;
    this.#renderButton();
    const stream = this.stream;
    const wasRecording = this.recording;
    const reply = await this.#command({ type: 'record', action: wasRecording ? 'stop' : 'start', stream });
    if (reply.ok) this.#fromDescription(stream, reply.result);
    else await this.#loadState(); // refused: the server knows better what runs
    this.busy = false;
    this.#renderButton();
    this.#refreshSoon();
  }

  async #photo() {
    if (!this.stream) return;
    const reply = await this.#command({ type: 'photo', stream: this.stream });
    if (!reply.ok) return;
    const name = baseName(reply.result.path);
    this.#showToast('📷 saved ', { name });
    this.#refreshSoon();
  }

  async #clip() {
    if (!this.stream) return;
    const reply = await this.#command({ type: 'clip', stream: this.stream });
    if (!reply.ok) return;
    const result = reply.result;
    const pre = result.pre_event_s ? `, from ${result.pre_event_s.toFixed(1)} s before` : '';
    this.#showToast(result.extended ? 'clip extended' : `clip recording${pre}…`);
    this.#refreshSoon();
  }

  async #delete(name) {
    if (!window.confirm(`Delete ${name}? This cannot be undone.`)) return;
    try {
      const response = await fetch(`/api/recordings/${encodeURIComponent(name)}`, { method: 'DELETE' });
      if (!response.ok && response.status !== 404) {
        const body = await response.json().catch(() => ({}));
        this.#say(`Cannot delete ${name}: ${body.detail ?? `HTTP ${response.status}`}`);
      } else {
        this.#say('');
      }
    } catch (err) {
      this.#say(`Cannot delete ${name} (${err.message}).`);
    }
    await this.refresh();
  }

  // ---- server → page

  /** What the server says of every stream's recording (GET /api/stats, `recordings`). */
  async #loadState() {
    try {
      const response = await fetch('/api/stats', { cache: 'no-store' });
      if (!response.ok) return;
      const { recordings = {} } = await response.json();
      for (const [stream, described] of Object.entries(recordings)) {
        if (!this.busy) this.#fromDescription(stream, described);
      }
      this.#renderButton();
    } catch { /* the next event or reconnect tries again */ }
  }

  /** A recording's description (a command's reply or /api/stats) → what the button shows. */
  #fromDescription(stream, described) {
    const active = Boolean(described?.recording);
    const previous = this.recordings[stream];
    this.recordings[stream] = {
      active,
      startedNs: active ? described.started_ns ?? previous?.startedNs ?? null : null,
      error: described?.state === 'error' ? described.error || described.code || 'error' : null,
    };
  }

  #onEvent(msg) {
    if (typeof msg.stream !== 'string') return;
    if (msg.kind === 'recording') {
      const entry = (this.recordings[msg.stream] ??= { active: false, startedNs: null, error: null });
      if (msg.state === 'recording') {
        entry.active = true;
        entry.error = null;
        entry.startedNs ??= this.control.toServerMs(wallClockMs()) * 1e6;
      } else if (msg.state === 'stopped' || msg.state === 'error') {
        entry.active = false;
        entry.startedNs = null;
      }
      if (msg.state === 'error') entry.error = msg.error || msg.code || 'error';
      this.#renderButton();
    }
    if (msg.state === 'error') {
      const text = `${msg.stream} ${msg.kind} stopped: ${msg.error || msg.code || 'error'}`;
      this.#say(text);
      this.#showToast(text, { error: true });
    }
    this.#refreshSoon();
  }

  #refreshSoon() {
    if (!this.open) return; // it lists the directory when it opens
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), REFRESH_DELAY_MS);
  }

  // ---- drawing

  #renderButton() {
    const state = this.recordings[this.stream];
    const active = Boolean(state?.active);
    let label = '● REC';
    if (active && state.startedNs) {
      const elapsedS = (this.control.toServerMs(wallClockMs()) - state.startedNs / 1e6) / 1000;
      label = `● REC ${humanDuration(Math.max(0, elapsedS))}`;
    }
    if (this.recButton.textContent !== label) this.recButton.textContent = label;
    this.recButton.classList.toggle('recording', active);
    this.recButton.classList.toggle('error', !active && Boolean(state?.error));
    this.recButton.setAttribute('aria-pressed', String(active));
    this.recButton.title = state?.error && !active
      ? `the last recording of ${this.stream} stopped: ${state.error}`
      : `${active ? 'stop recording' : 'record'} ${this.stream ?? ''}`.trim();
    this.recButton.disabled = this.busy || !this.stream;
    this.photoButton.disabled = !this.stream;
    this.clipButton.disabled = !this.stream;
  }

  #renderList() {
    const free = typeof this.freeBytes === 'number' ? `, ${humanBytes(this.freeBytes)} free` : '';
    this.summary.textContent = `${this.files.length} file${this.files.length === 1 ? '' : 's'} in ${this.dir}${free}`;
    this.list.replaceChildren(...this.files.map((file) => this.#row(file)));
    if (!this.files.length) this.list.append(make('li', { className: 'empty' }, 'no recordings or photos yet'));
  }

  #row(file) {
    const kind = make('span', { className: `badge kind-${file.kind}` }, KIND_LABELS[file.kind] ?? file.kind);
    const state = file.recording ? make('span', { className: 'badge recording' }, '● recording') : '';
    const duration = file.kind === 'photo'
      ? (file.width ? `${file.width}×${file.height}` : '')
      : humanDuration(file.duration_s);
    const link = make('a', {
      href: file.url ?? `/api/recordings/${encodeURIComponent(file.name)}`, download: file.name, title: `download ${file.name}`,
    }, file.name);
    const remove = make('button', {
      type: 'button', 'data-delete': file.name, title: file.recording ? 'being recorded' : `delete ${file.name}`,
      'aria-label': `delete ${file.name}`,
    }, '×');
    remove.disabled = Boolean(file.recording);
    const item = make('li', { 'data-name': file.name, 'data-kind': file.kind },
      make('span', { className: 'recs-head' }, kind, state, link),
      make('span', { className: 'recs-meta' },
        make('span', { className: 'recs-start', title: file.started }, humanStart(file.started)),
        make('span', { className: 'recs-duration' }, duration),
        make('span', { className: 'recs-size', title: `${file.size_bytes} bytes` }, humanBytes(file.size_bytes)),
        file.stream ? make('span', { className: 'recs-stream' }, file.stream) : ''),
      remove,
    );
    if (file.error) item.append(make('p', { className: 'recs-file-error' }, file.error));
    return item;
  }

  #say(text) {
    if (this.errorLine.textContent !== text) this.errorLine.textContent = text;
    this.errorLine.hidden = !text;
  }

  /** A short message at the bottom of the page; `name` adds a download link to that file. */
  #showToast(text, { name = null, error = false } = {}) {
    const parts = [text];
    if (name) parts.push(make('a', { href: `/api/recordings/${encodeURIComponent(name)}`, download: name }, name));
    this.toast.replaceChildren(...parts);
    this.toast.classList.toggle('error', error);
    this.toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => this.#hideToast(), error ? ERROR_TOAST_MS : TOAST_MS);
  }

  #hideToast() {
    this.toast.hidden = true;
  }
}
