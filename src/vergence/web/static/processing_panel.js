// Processing of the current stream: overlays, stabilization, regions of interest (a form, or shift+drag on the
// picture) and plugins with their latest results. The panel shows what the server says (the control socket's `state`,
// then every change by anyone, docs/protocol.md "Control WebSocket"); what the user asks goes out over the same socket.

const OVERLAYS = ['timestamp', 'crosshair', 'grid', 'zoom', 'rec', 'rois'];
const RESULTS_EVERY_MS = 250; // results may come every frame: the panel redraws them a few times a second at most
const PLUGINS_POLL_MS = 2000; // call counts and costs move without events: re-read them while the panel shows them
const RESULT_CHARS = 240;
const MIN_DRAG_PCT = 1; // a smaller rectangle is a click, not an ROI

const clamp = (value, low, high) => Math.min(Math.max(value, low), high);
const round1 = (value) => Math.round(value * 10) / 10;

/** `el` with its attributes and children (strings become text). */
function make(tag, attributes = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'className') el.className = value;
    else if (key === 'style') Object.assign(el.style, value);
    else el.setAttribute(key, value);
  }
  el.append(...children);
  return el;
}

/** The server's ValidationError text, without the empty location some messages start with. */
function tidy(message) {
  return String(message ?? '').replace(/^:\s*/, '').replace(/^Value error,\s*/, '');
}

export class ProcessingPanel {
  /**
   * @param control the ClockSync that owns /ws/control (send, on, connected)
   * @param root the panel (#processing, holding the proc-* elements of index.html)
   * @param toggle the header button that shows and hides the panel
   * @param stage the element the picture sits in: shift+drag there draws an ROI
   * @param elements {canvas, video, img}: whichever is shown is the picture
   */
  constructor({ control, root, toggle, stage, elements }) {
    this.control = control;
    this.root = root;
    this.toggle = toggle;
    this.stage = stage;
    this.elements = elements;
    const find = (id) => root.querySelector(`#${id}`);
    this.status = find('proc-status');
    this.errorLine = find('proc-error');
    this.overlayBoxes = Object.fromEntries(OVERLAYS.map((name) => [name, find(`proc-ov-${name}`)]));
    this.stabilizeBox = find('proc-stabilize');
    this.roiList = find('proc-rois');
    this.roiForm = find('proc-roi-form');
    this.roiFields = Object.fromEntries(
      ['name', 'x1', 'y1', 'x2', 'y2', 'colour'].map((field) => [field, find(`proc-roi-${field}`)]),
    );
    this.drawButton = find('proc-roi-draw');
    this.pluginList = find('proc-plugins');
    this.resultList = find('proc-results');
    this.stream = null;
    this.streams = {}; // stream id → {overlay, rois, stabilize, plugins}, as the server last said
    this.results = {}; // stream id → {plugin name → the latest plugin_result message}
    this.resultsDirty = false;
    this.awaiting = null; // the id of our last command, until its reply comes
    this.drawMode = false;
    this.drag = null; // {pointerId, x, y, box} while drawing an ROI
    this.timers = [];
    this.unsubscribe = [];
  }

  get open() {
    return !this.root.hidden;
  }

  /** The current stream's processing as the server last said, or null. */
  get state() {
    return this.streams[this.stream] ?? null;
  }

  get enabled() {
    return this.control.connected && this.state !== null;
  }

  start() {
    const c = this.control;
    const mine = (fn) => (msg) => {
      if (typeof msg.stream !== 'string') return;
      const state = this.streams[msg.stream];
      if (state) fn(state, msg);
      if (msg.stream === this.stream) this.#render();
    };
    this.unsubscribe.push(
      c.on('state', (msg) => {
        this.streams = structuredClone(msg.processing ?? {});
        this.#render();
      }),
      c.on('overlay', mine((state, { type, camera, ...overlay }) => {
        state.overlay = { ...state.overlay, ...overlay };
        this.#answered();
      })),
      c.on('rois', mine((state, msg) => {
        state.rois = msg.rois ?? [];
        this.#answered();
      })),
      c.on('stabilize', mine((state, msg) => {
        state.stabilize = Boolean(msg.enabled);
        this.#answered();
      })),
      c.on('plugins', mine((state, msg) => {
        state.plugins = msg.plugins ?? [];
        this.#answered();
      })),
      c.on('plugin', mine((state, { type, ...plugin }) => {
        const i = state.plugins.findIndex((p) => p.name === plugin.name);
        if (i >= 0) state.plugins[i] = { ...state.plugins[i], ...plugin };
        else state.plugins.push(plugin);
      })),
      c.on('plugin_result', (msg) => {
        if (typeof msg.stream !== 'string' || typeof msg.plugin !== 'string') return;
        (this.results[msg.stream] ??= {})[msg.plugin] = msg;
        if (msg.stream === this.stream) this.resultsDirty = true;
      }),
      c.on('reply', (msg) => {
        if (msg.id !== this.awaiting) return; // someone else's (PTZ, …)
        this.awaiting = null;
        if (msg.ok) return;
        this.#say(tidy(msg.error) || msg.code || 'the server refused');
        this.#render(); // undo what the user ticked: the server did not take it
      }),
      c.on('connection', () => this.#render()),
    );

    this.toggle.addEventListener('click', () => this.setOpen(!this.open));
    for (const [name, box] of Object.entries(this.overlayBoxes)) {
      box.addEventListener('change', () => this.#send({ type: 'overlay', [name]: box.checked }));
    }
    this.stabilizeBox.addEventListener('change', () => {
      this.#send({ type: 'stabilize', enabled: this.stabilizeBox.checked });
    });
    this.roiForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#sendRoiForm();
    });
    this.drawButton.addEventListener('click', () => this.#setDrawMode(!this.drawMode));
    this.roiList.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-roi]');
      if (button) this.#send({ type: 'roi', action: 'delete', name: button.dataset.roi });
    });
    this.pluginList.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-plugin]');
      if (!button) return;
      const action = button.dataset.action;
      this.#send({ type: 'plugin', action, name: button.dataset.plugin });
    });
    // The panel floats over the stage: its clicks, drags and wheel are the panel's, not pan and zoom of the picture.
    for (const type of ['pointerdown', 'wheel', 'dblclick']) {
      this.root.addEventListener(type, (event) => event.stopPropagation());
    }
    // Capture phase, so a shift+drag draws an ROI instead of panning the camera.
    this.stage.addEventListener('pointerdown', (e) => this.#dragStart(e), { capture: true });
    this.stage.addEventListener('pointermove', (e) => this.#dragMove(e), { capture: true });
    this.stage.addEventListener('pointerup', (e) => this.#dragEnd(e, true), { capture: true });
    this.stage.addEventListener('pointercancel', (e) => this.#dragEnd(e, false), { capture: true });
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.drawMode) this.#setDrawMode(false);
    });
    this.timers.push(setInterval(() => this.#renderResults(), RESULTS_EVERY_MS));
    this.timers.push(setInterval(() => this.#pollPlugins(), PLUGINS_POLL_MS));
    this.#render();
  }

  stop() {
    this.unsubscribe.forEach((off) => off());
    this.unsubscribe = [];
    this.timers.forEach(clearInterval);
    this.timers = [];
  }

  /** Follow the stream the page plays. */
  setStream(stream) {
    if (stream === this.stream) return;
    this.stream = stream;
    this.#say('');
    this.#setDrawMode(false);
    this.resultsDirty = true;
    this.#render();
  }

  setOpen(open) {
    this.root.hidden = !open;
    this.toggle.setAttribute('aria-expanded', String(open));
    this.toggle.classList.toggle('on', open);
    if (!open) this.#setDrawMode(false);
    this.resultsDirty = true;
    this.#render();
  }

  // ---- page → server

  /** Send one command of the panel; false (and say why) when the socket is down. */
  #send(command) {
    if (!this.enabled) {
      this.#say('Not sent: the control connection is down.');
      this.#render();
      return false;
    }
    this.#say('');
    this.awaiting = this.control.command({ ...command, stream: this.stream });
    return this.awaiting !== null;
  }

  #answered() {
    if (this.awaiting) this.#say('');
    this.awaiting = null;
  }

  #sendRoiForm() {
    const f = this.roiFields;
    const name = f.name.value.trim() || this.#freeRoiName();
    const number = (input) => (input.value.trim() === '' ? null : Number(input.value));
    const sent = this.#send({
      type: 'roi', action: 'set', name,
      x1: number(f.x1), y1: number(f.y1), x2: number(f.x2), y2: number(f.y2),
      colour: f.colour.value.trim() || 'lime',
    });
    if (sent) this.pendingRoi = name;
  }

  #freeRoiName() {
    const taken = new Set((this.state?.rois ?? []).map((roi) => roi.name));
    let n = 1;
    while (taken.has(`roi${n}`)) n++;
    return `roi${n}`;
  }

  #pollPlugins() {
    if (!this.open || document.visibilityState !== 'visible' || !this.state?.plugins?.length) return;
    const stream = this.stream;
    fetch(`/api/cameras/${encodeURIComponent(stream)}/plugins`, { cache: 'no-store' })
      .then((response) => (response.ok ? response.json() : null))
      .then((plugins) => {
        const state = this.streams[stream];
        if (!Array.isArray(plugins) || !state) return;
        state.plugins = plugins;
        if (stream === this.stream) this.#render();
      })
      .catch(() => { /* the socket's events still keep the list right */ });
  }

  // ---- drawing an ROI on the picture

  /** The picture's rectangle on screen: the shown element, object-fit: contain at its object-position. */
  #pictureRect() {
    const { canvas, video, img } = this.elements;
    let el = null;
    let w = 0;
    let h = 0;
    if (!canvas.hidden) [el, w, h] = [canvas, canvas.width, canvas.height];
    else if (!video.hidden) [el, w, h] = [video, video.videoWidth, video.videoHeight];
    else if (!img.hidden) [el, w, h] = [img, img.naturalWidth, img.naturalHeight];
    if (!el || !w || !h) return null;
    const box = el.getBoundingClientRect();
    const aspect = w / h;
    const width = Math.min(box.width, box.height * aspect);
    const height = width / aspect;
    const [px, py] = getComputedStyle(el).objectPosition.split(' ').map((v) => (v.endsWith('%') ? parseFloat(v) / 100 : 0.5));
    return { left: box.left + (box.width - width) * px, top: box.top + (box.height - height) * py, width, height };
  }

  #toPercent(pic, x, y) {
    return {
      x: clamp(((x - pic.left) / pic.width) * 100, 0, 100),
      y: clamp(((y - pic.top) / pic.height) * 100, 0, 100),
    };
  }

  #setDrawMode(on) {
    this.drawMode = on && this.open;
    this.drawButton.classList.toggle('on', this.drawMode);
    this.drawButton.setAttribute('aria-pressed', String(this.drawMode));
    this.stage.classList.toggle('roi-drawing', this.drawMode);
  }

  #dragStart(e) {
    if (!this.open || !this.enabled || !(e.shiftKey || this.drawMode)) return;
    if (e.target.closest('#processing, #ptz, #recordings')) return;
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    const pic = this.#pictureRect();
    if (!pic) return;
    e.stopImmediatePropagation(); // not a pan of the camera
    e.preventDefault();
    this.stage.setPointerCapture?.(e.pointerId);
    const from = this.#toPercent(pic, e.clientX, e.clientY);
    const box = make('div', { className: 'roi-rubber', 'aria-hidden': 'true' });
    box.style.borderColor = this.roiFields.colour.value.trim() || 'lime';
    this.stage.append(box);
    this.drag = { pointerId: e.pointerId, pic, from, to: from, box };
    this.#placeRubber();
  }

  #dragMove(e) {
    if (!this.drag || e.pointerId !== this.drag.pointerId) return;
    e.stopImmediatePropagation();
    this.drag.to = this.#toPercent(this.drag.pic, e.clientX, e.clientY);
    this.#placeRubber();
  }

  #dragEnd(e, keep) {
    const drag = this.drag;
    if (!drag || e.pointerId !== drag.pointerId) return;
    e.stopImmediatePropagation();
    this.drag = null;
    drag.box.remove();
    if (!keep) return;
    const [x1, x2] = [drag.from.x, drag.to.x].sort((a, b) => a - b).map(round1);
    const [y1, y2] = [drag.from.y, drag.to.y].sort((a, b) => a - b).map(round1);
    if (x2 - x1 < MIN_DRAG_PCT || y2 - y1 < MIN_DRAG_PCT) return;
    const f = this.roiFields;
    for (const [field, value] of Object.entries({ x1, y1, x2, y2 })) f[field].value = String(value);
    if (!f.name.value.trim() || (this.state?.rois ?? []).some((roi) => roi.name === f.name.value.trim())) {
      f.name.value = this.#freeRoiName(); // a new rectangle makes a new ROI, unless the user named one to replace
    }
    this.#setDrawMode(false);
    this.#sendRoiForm();
  }

  #placeRubber() {
    const { pic, from, to, box } = this.drag;
    const stage = this.stage.getBoundingClientRect();
    const left = pic.left - stage.left + (Math.min(from.x, to.x) / 100) * pic.width;
    const top = pic.top - stage.top + (Math.min(from.y, to.y) / 100) * pic.height;
    Object.assign(box.style, {
      left: `${left}px`,
      top: `${top}px`,
      width: `${(Math.abs(to.x - from.x) / 100) * pic.width}px`,
      height: `${(Math.abs(to.y - from.y) / 100) * pic.height}px`,
    });
  }

  // ---- server → page

  #say(text) {
    if (this.errorLine.textContent !== text) this.errorLine.textContent = text;
    this.errorLine.hidden = !text;
  }

  #render() {
    const state = this.state;
    const enabled = this.enabled;
    let why = '';
    if (!this.control.connected) why = 'Control connection is down, retrying…';
    else if (this.stream && !state) why = `No processing controls for ${this.stream}.`;
    else if (!state) why = 'Waiting for the server state…';
    if (this.status.textContent !== why) this.status.textContent = why;
    this.status.hidden = !why;
    this.root.classList.toggle('disabled', !enabled);
    for (const el of this.root.querySelectorAll('input, button')) el.disabled = !enabled;
    if (!enabled && this.drawMode) this.#setDrawMode(false);
    if (!state || !this.open) return;

    for (const [name, box] of Object.entries(this.overlayBoxes)) box.checked = Boolean(state.overlay?.[name]);
    this.stabilizeBox.checked = Boolean(state.stabilize);
    this.#renderRois(state.rois ?? []);
    this.#renderPlugins(state.plugins ?? []);
    this.resultsDirty = true;
  }

  #renderRois(rois) {
    if (this.pendingRoi && rois.some((roi) => roi.name === this.pendingRoi)) {
      this.pendingRoi = null;
      this.roiFields.name.value = this.#freeRoiName(); // ready for the next one
    }
    this.roiList.replaceChildren(...rois.map((roi) => make('li', { 'data-name': roi.name },
      make('span', { className: 'swatch', style: { background: roi.colour }, title: roi.colour }),
      make('span', { className: 'roi-name' }, roi.name),
      make('span', { className: 'roi-box' }, `${round1(roi.x1)},${round1(roi.y1)} → ${round1(roi.x2)},${round1(roi.y2)}`),
      make('button', { type: 'button', 'data-roi': roi.name, title: `delete ${roi.name}`, 'aria-label': `delete ${roi.name}` }, '×'),
    )));
    if (!rois.length) this.roiList.append(make('li', { className: 'empty' }, 'none'));
  }

  #renderPlugins(plugins) {
    this.pluginList.replaceChildren(...plugins.map((p) => {
      const on = p.state !== 'disabled' && p.state !== 'error';
      const cost = typeof p.call_ms === 'number' ? `${p.call_ms.toFixed(1)} ms` : '';
      const item = make('li', { 'data-name': p.name },
        make('span', { className: 'roi-name', title: p.source ?? '' }, p.name),
        make('span', { className: `badge ${p.state}` }, p.state),
        make('span', { className: 'cost', title: `${p.calls ?? 0} calls, budget ${p.budget_ms ?? '?'} ms` }, cost),
        make('button', {
          type: 'button', 'data-plugin': p.name, 'data-action': on ? 'disable' : 'enable',
        }, on ? 'disable' : 'enable'),
      );
      if (p.error) item.append(make('p', { className: 'plugin-error' }, p.error));
      return item;
    }));
    if (!plugins.length) this.pluginList.append(make('li', { className: 'empty' }, 'none'));
  }

  #renderResults() {
    if (!this.resultsDirty || !this.open) return;
    this.resultsDirty = false;
    const latest = Object.values(this.results[this.stream] ?? {});
    this.resultList.replaceChildren(...latest.flatMap((msg) => {
      let text = JSON.stringify(msg.result);
      if (text.length > RESULT_CHARS) text = `${text.slice(0, RESULT_CHARS - 1)}…`;
      return [make('dt', {}, `${msg.plugin} #${msg.seq}`), make('dd', {}, text)];
    }));
    this.resultList.hidden = latest.length === 0;
  }
}
