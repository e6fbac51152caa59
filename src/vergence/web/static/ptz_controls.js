// Pan / tilt / zoom of the current stream's camera: a small panel of sliders, drag on the picture to pan, wheel or
// pinch to zoom; Alt-click (or a long press) on the picture tracks what is there, Esc stops tracking. On the stereo stream the panel drives the eyes: both together (linked, the left eye leads), or one eye
// alone, plus the vergence slider that turns the eyes in or out. The sliders show what the server says (docs/protocol.md, "Pan / tilt / zoom" and "Control WebSocket");
// what this page wants goes out over the control socket, coalesced to one message per animation frame (≤ ~30/s).

const SEND_GAP_MS = 33; // at most ~30 messages a second
const LOCAL_HOLD_MS = 400; // after the user's own input, trust the local target over (older) server echoes
const WHEEL_ZOOM_PER_PX = 0.002; // zoom × e^(0.002 × 100) ≈ 1.22 per wheel notch
const HOME = { pan: 0.5, tilt: 0.5, zoom: 1 };
const LONG_PRESS_MS = 600; // a touch held this long without moving picks a target to track
const LONG_PRESS_SLOP_PX = 10;
const TRACKING_TEXT = { tracking: 'tracking', searching: 'tracking: looking for the target…', lost: 'target lost' };

const clamp = (value, low, high) => Math.min(Math.max(value, low), high);

/** "2.5×"; whole numbers once the zoom is large. */
export function zoomLabel(zoom) {
  return `${zoom < 10 ? zoom.toFixed(1) : zoom.toFixed(0)}×`;
}

export class PtzControls {
  /**
   * @param control what carries control messages (send, on, connected): the ClockSync that owns /ws/control, or the
   *   ControlRouter that prefers the WebRTC data channel for PTZ
   * @param root the panel (holds #ptz-zoom, #ptz-pan, #ptz-tilt, #ptz-home, #ptz-zoom-label, #ptz-status, and for
   *   stereo #ptz-eyes, #ptz-vergence, #ptz-vergence-label inside .ptz-stereo rows)
   * @param stage the element the picture sits in: drag, wheel and pinch land there
   */
  constructor({ control, root, stage }) {
    this.control = control;
    this.root = root;
    this.stage = stage;
    const find = (id) => root.querySelector(`#${id}`);
    this.sliders = { zoom: find('ptz-zoom'), pan: find('ptz-pan'), tilt: find('ptz-tilt') };
    this.home = find('ptz-home');
    this.label = find('ptz-zoom-label');
    this.status = find('ptz-status');
    this.trackStatus = find('ptz-track');
    this.tracking = {}; // camera → the tracking state the server last sent
    this.longPress = null; // {timer, x, y} while a touch may become a long press
    this.eyesSelect = find('ptz-eyes');
    this.vergenceSlider = find('ptz-vergence');
    this.vergenceLabel = find('ptz-vergence-label');
    this.stereoRows = [...root.querySelectorAll('.ptz-stereo')];
    this.stream = null; // the stream the page plays
    this.camera = null; // the camera the sliders show: the stream's, or on the stereo stream the eye(s) chosen
    this.rig = null; // the server's stereo rig ({stream, vergence, left, right, …}), when it has one
    this.eyes = 'both';
    this.pendingVergence = null;
    this.cameras = {}; // camera → the PTZ object the server last sent
    this.target = null; // what this page wants now (optimistic), while the user is acting
    this.pending = {}; // fields of `target` not sent yet
    this.lastLocalMs = -Infinity;
    this.lastSentMs = -Infinity;
    this.frame = 0;
    this.held = new Set(); // sliders under the user's pointer or just moved: server updates do not move them
    this.heldUntil = { zoom: 0, pan: 0, tilt: 0 };
    this.pointers = new Map(); // pointerId → {x, y} on the stage
    this.gesture = null;
    this.unsubscribe = [];
  }

  start() {
    const c = this.control;
    this.unsubscribe.push(
      c.on('state', (msg) => {
        this.cameras = { ...(msg.cameras ?? {}) };
        this.rig = msg.stereo ?? null;
        this.tracking = { ...(msg.tracking ?? {}) };
        this.#follow();
      }),
      c.on('tracking', (msg) => {
        if (typeof msg.stream !== 'string') return;
        this.tracking[msg.stream] = msg;
        this.#showTracking();
      }),
      c.on('stereo', (msg) => {
        this.rig = msg;
        this.cameras[msg.left.stream] = msg.left;
        this.cameras[msg.right.stream] = msg.right;
        this.#fromServer();
      }),
      c.on('ptz', (msg) => {
        if (typeof msg.stream !== 'string') return;
        this.cameras[msg.stream] = msg;
        if (msg.stream === this.camera) this.#fromServer();
      }),
      c.on('connection', () => this.#refreshEnabled()),
    );
    for (const [field, slider] of Object.entries(this.sliders)) {
      slider.addEventListener('pointerdown', () => {
        this.held.add(field);
        // The pointer may come up anywhere on the page.
        const up = () => {
          window.removeEventListener('pointerup', up, true);
          window.removeEventListener('pointercancel', up, true);
          this.#release(field);
        };
        window.addEventListener('pointerup', up, true);
        window.addEventListener('pointercancel', up, true);
      });
      slider.addEventListener('input', () => this.#fromSlider(field));
      slider.addEventListener('change', () => {
        this.#fromSlider(field);
        this.#release(field);
      });
    }
    this.eyesSelect.addEventListener('change', () => {
      this.eyes = this.eyesSelect.value;
      this.#follow();
    });
    this.vergenceSlider.addEventListener('input', () => this.#wantVergence());
    this.vergenceSlider.addEventListener('change', () => this.#wantVergence());
    // Home is the server's `home` preset: the whole view, unless someone saved another as the default.
    this.home.addEventListener('click', () => {
      if (this.#linked()) {
        this.#want({ ...HOME });
        return;
      }
      if (!this.control.command({ type: 'preset', stream: this.camera, action: 'recall', name: 'home' })) {
        this.#want({ ...HOME });
      }
    });

    const s = this.stage;
    s.addEventListener('pointerdown', (e) => this.#pointerDown(e));
    s.addEventListener('pointermove', (e) => this.#pointerMove(e));
    s.addEventListener('pointerup', (e) => this.#pointerUp(e));
    s.addEventListener('pointercancel', (e) => this.#pointerUp(e));
    s.addEventListener('wheel', (e) => this.#wheel(e), { passive: false });
    s.addEventListener('dragstart', (e) => e.preventDefault()); // the MJPEG <img> would start a native drag
    window.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.#trackingHere()) this.#stopTracking();
    });
    this.#refreshEnabled();
  }

  stop() {
    this.unsubscribe.forEach((off) => off());
    this.unsubscribe = [];
    cancelAnimationFrame(this.frame);
  }

  /** Follow the stream the page plays (its id names the camera, or the stereo rig). */
  setCamera(stream) {
    this.stream = stream;
    this.#follow();
  }

  /** Whether the page plays the stereo rig's stream. */
  get stereo() {
    return this.rig !== null && this.stream === this.rig.stream;
  }

  /** On the stereo stream with both eyes chosen: moves go to the rig, which moves the eyes as one. */
  #linked() {
    return this.stereo && this.eyes === 'both';
  }

  /** Point the sliders at the camera the stream and the eye choice name. */
  #follow() {
    let camera = this.stream;
    if (this.stereo) camera = this.eyes === 'right' ? this.rig.right.stream : this.rig.left.stream;
    for (const row of this.stereoRows) row.hidden = !this.stereo;
    if (camera !== this.camera) {
      this.camera = camera;
      this.target = null;
      this.pending = {};
    }
    this.#fromServer();
    this.#showTracking();
  }

  /** The server's state of the current camera, or null when it has none (or the socket never said). */
  get state() {
    return this.cameras[this.camera] ?? null;
  }

  get enabled() {
    return this.control.connected && this.state !== null;
  }

  // ---- server → page

  #fromServer() {
    const state = this.state;
    this.#refreshEnabled();
    if (!state) return;
    if (!this.#acting()) this.target = null;
    const now = performance.now();
    const max = Math.max(1, Number(state.max_zoom) || 1);
    const zoom = this.sliders.zoom;
    zoom.max = String(Math.log2(max));
    this.#setSlider('zoom', Math.log2(clamp(state.zoom, 1, max)), now);
    this.#setSlider('pan', state.pan, now);
    this.#setSlider('tilt', state.tilt, now);
    this.label.textContent = zoomLabel(state.zoom);
    zoom.setAttribute('aria-valuetext', zoomLabel(state.zoom));
    if (this.stereo && this.pendingVergence === null && !this.held.has('vergence')
        && now >= (this.heldUntil.vergence ?? 0)) {
      this.vergenceSlider.value = String(this.rig.vergence);
      this.vergenceLabel.textContent = Number(this.rig.vergence).toFixed(3);
    }
  }

  #setSlider(field, value, now) {
    if (this.held.has(field) || now < this.heldUntil[field]) return; // don't fight the user's hand
    const slider = this.sliders[field];
    if (Number(slider.value) !== value) slider.value = String(value);
  }

  #release(field) {
    this.held.delete(field);
    this.heldUntil[field] = performance.now() + LOCAL_HOLD_MS;
    // Once let go, show the server's word (the echo of the last value may already have come while held).
    setTimeout(() => this.#fromServer(), LOCAL_HOLD_MS + 10);
  }

  #refreshEnabled() {
    const enabled = this.enabled;
    let why = '';
    if (!this.control.connected) why = 'PTZ unavailable: control connection is down, retrying…';
    else if (this.camera && !this.state) why = `No PTZ for ${this.camera}.`;
    else if (!this.state) why = 'Waiting for the camera state…';
    for (const el of [...Object.values(this.sliders), this.home, this.eyesSelect, this.vergenceSlider]) {
      el.disabled = !enabled;
    }
    this.root.classList.toggle('disabled', !enabled);
    this.stage.classList.toggle('ptz-enabled', enabled);
    if (this.status.textContent !== why) this.status.textContent = why;
    this.status.hidden = !why;
    if (!enabled) {
      this.pending = {};
      this.pendingVergence = null;
      this.pointers.clear();
      this.gesture = null;
    }
  }

  // ---- page → server

  #fromSlider(field) {
    if (!this.enabled) return;
    this.heldUntil[field] = performance.now() + LOCAL_HOLD_MS;
    const raw = Number(this.sliders[field].value);
    if (field === 'zoom') {
      const zoom = 2 ** raw;
      this.label.textContent = zoomLabel(zoom);
      this.#want({ zoom });
    } else {
      this.#want({ [field]: raw });
    }
  }

  #wantVergence() {
    if (!this.enabled || !this.stereo) return;
    const vergence = Number(this.vergenceSlider.value);
    this.heldUntil.vergence = performance.now() + LOCAL_HOLD_MS;
    setTimeout(() => this.#fromServer(), LOCAL_HOLD_MS + 10);
    this.vergenceLabel.textContent = vergence.toFixed(3);
    this.pendingVergence = vergence;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.#flush());
  }

  /** Whether the user acted lately enough that the local target is newer than what the server last said. */
  #acting() {
    return this.pointers.size > 0 || Object.keys(this.pending).length > 0
      || performance.now() - this.lastLocalMs < LOCAL_HOLD_MS;
  }

  /** Where a gesture starts from: the local target while acting, else the server's state. */
  #base() {
    const s = this.state;
    if (this.target && this.#acting()) return this.target;
    return { pan: s.pan, tilt: s.tilt, zoom: s.zoom };
  }

  /** The crop's size as a fraction of the sensor at `zoom` (from the crop the server reported at its zoom). */
  #cropFraction(zoom) {
    const s = this.state;
    const [, , w, h] = s.crop;
    const [sw, sh] = s.sensor;
    const k = s.zoom / zoom;
    return { w: Math.min(1, (w * k) / sw), h: Math.min(1, (h * k) / sh) };
  }

  /** `t` moved to where the server will put it: zoom within 1 … max_zoom, the crop inside the sensor. */
  #clampTarget(t) {
    const max = Math.max(1, Number(this.state.max_zoom) || 1);
    const zoom = clamp(t.zoom, 1, max);
    const f = this.#cropFraction(zoom);
    return {
      zoom,
      pan: clamp(t.pan, f.w / 2, 1 - f.w / 2),
      tilt: clamp(t.tilt, f.h / 2, 1 - f.h / 2),
    };
  }

  #want(changes) {
    if (!this.enabled) return;
    // Clamp as the server will, so a drag past an edge has no dead zone on the way back.
    this.target = this.#clampTarget({ ...this.#base(), ...changes });
    for (const field of Object.keys(changes)) this.pending[field] = this.target[field];
    this.lastLocalMs = performance.now();
    if (!this.frame) this.frame = requestAnimationFrame(() => this.#flush());
  }

  #flush() {
    this.frame = 0;
    const vergence = this.pendingVergence;
    if (!Object.keys(this.pending).length && vergence === null) return;
    if (performance.now() - this.lastSentMs < SEND_GAP_MS) {
      this.frame = requestAnimationFrame(() => this.#flush());
      return;
    }
    const commands = [];
    if (this.#linked()) {
      commands.push({ type: 'stereo', ...this.pending, ...(vergence === null ? {} : { vergence }) });
    } else {
      if (Object.keys(this.pending).length) commands.push({ type: 'ptz', stream: this.camera, ...this.pending });
      if (vergence !== null) commands.push({ type: 'stereo', vergence });
    }
    this.pending = {};
    this.pendingVergence = null;
    if (commands.map((command) => this.control.command(command)).every(Boolean)) this.lastSentMs = performance.now();
  }

  // ---- gestures on the picture

  /** The size on screen of one camera's picture: the stream fills the stage at its own aspect (object-fit: contain),
   * and the stereo stream holds two eyes side by side. */
  #pictureSize() {
    const rect = this.stage.getBoundingClientRect();
    const [, , w, h] = this.state.crop;
    const eyes = this.stereo ? 2 : 1;
    const aspect = (eyes * w) / h;
    const width = Math.min(rect.width, rect.height * aspect);
    return { width: width / eyes, height: width / aspect };
  }

  #pointerDown(e) {
    if (!this.enabled || e.target.closest('#ptz')) return;
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    e.preventDefault();
    if (e.pointerType === 'mouse' && e.altKey) {
      this.#trackAt(e.clientX, e.clientY);
      return;
    }
    this.stage.setPointerCapture?.(e.pointerId);
    this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    this.#startGesture();
    this.#cancelLongPress();
    if (e.pointerType !== 'mouse' && this.pointers.size === 1) {
      const press = { x: e.clientX, y: e.clientY };
      press.timer = setTimeout(() => {
        this.longPress = null;
        this.pointers.clear(); // the finger picked a target: it does not drag the view when it lifts
        this.gesture = null;
        this.#trackAt(press.x, press.y);
      }, LONG_PRESS_MS);
      this.longPress = press;
    }
  }

  #cancelLongPress() {
    if (this.longPress) clearTimeout(this.longPress.timer);
    this.longPress = null;
  }

  #pointerMove(e) {
    const p = this.pointers.get(e.pointerId);
    if (!p || !this.gesture) return;
    const press = this.longPress;
    if (press && Math.hypot(e.clientX - press.x, e.clientY - press.y) > LONG_PRESS_SLOP_PX) this.#cancelLongPress();
    p.x = e.clientX;
    p.y = e.clientY;
    const g = this.gesture;
    if (g.kind === 'pan') {
      const pic = this.#pictureSize();
      const f = this.#cropFraction(g.from.zoom);
      // The picture follows the pointer: dragging right shows what is further left.
      const pan = g.from.pan - ((p.x - g.x) / pic.width) * f.w;
      const tilt = g.from.tilt - ((p.y - g.y) / pic.height) * f.h;
      this.#want({ pan, tilt });
    } else {
      const distance = this.#spread();
      if (g.distance > 0 && distance > 0) this.#want({ zoom: g.from.zoom * (distance / g.distance) });
    }
  }

  #pointerUp(e) {
    this.#cancelLongPress();
    if (!this.pointers.delete(e.pointerId)) return;
    // Two fingers down to one: go on panning from where that finger is now.
    this.gesture = null;
    if (this.pointers.size) this.#startGesture();
  }

  #startGesture() {
    const from = this.#base();
    if (this.pointers.size >= 2) {
      this.gesture = { kind: 'pinch', from, distance: this.#spread() };
    } else {
      const [p] = this.pointers.values();
      this.gesture = { kind: 'pan', from, x: p.x, y: p.y };
    }
  }

  #spread() {
    const [a, b] = this.pointers.values();
    return Math.hypot(a.x - b.x, a.y - b.y);
  }

  #wheel(e) {
    if (!this.enabled || e.target.closest('#ptz')) return;
    e.preventDefault();
    const px = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
    const from = this.#base();
    this.#want({ zoom: from.zoom * Math.exp(-px * WHEEL_ZOOM_PER_PX) });
    // A pan gesture in progress goes on from the new zoom.
    if (this.gesture) this.#startGesture();
  }

  // ---- tracking

  /** Track what is at the page point (x, y): its place in % of the camera's picture. */
  /** What `track` names: the stereo stream (both eyes fixate) or the camera. */
  get #trackedStream() {
    return this.stereo ? this.rig.stream : this.camera;
  }

  #trackAt(x, y) {
    const rect = this.stage.getBoundingClientRect();
    const pic = this.#pictureSize(); // one eye's picture on the stereo stream
    const eyes = this.stereo ? 2 : 1;
    const left = rect.left + (rect.width - eyes * pic.width) / 2;
    const top = rect.top + (rect.height - pic.height) / 2;
    // On the stereo stream a point in either eye's half stands for the same place in the left eye's picture.
    let px = ((x - left) / pic.width) * 100;
    if (this.stereo && px > 100) px -= 100;
    const py = ((y - top) / pic.height) * 100;
    if (px < 0 || px > 100 || py < 0 || py > 100) return;
    const point = { x: Number(px.toFixed(2)), y: Number(py.toFixed(2)) };
    this.control.command({ type: 'track', stream: this.#trackedStream, ...point });
  }

  #trackingHere() {
    const state = this.tracking[this.#trackedStream]?.state;
    return state !== undefined && state !== 'idle';
  }

  #stopTracking() {
    this.control.command({ type: 'track', stream: this.#trackedStream, action: 'stop' });
  }

  #showTracking() {
    const text = TRACKING_TEXT[this.tracking[this.#trackedStream]?.state] ?? '';
    if (this.trackStatus.textContent !== text) this.trackStatus.textContent = text;
    this.trackStatus.hidden = !text;
  }
}
