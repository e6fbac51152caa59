// Boot: read the stream list, pick a player (WebRTC → WebCodecs → MSE → MJPEG, or ?player=), wire the HUD, clock sync,
// PTZ (over the WebRTC data channel while there is one, else over /ws/control), processing and recordings.

import { ClockSync } from './clock.js';
import { ControlRouter } from './control_router.js';
import { Hud } from './hud.js';
import { wsUrl } from './live_socket.js';
import { MjpegPlayer } from './player_mjpeg.js';
import { MsePlayer, mseSupport } from './player_mse.js';
import { WebCodecsPlayer, webcodecsSupport } from './player_webcodecs.js';
import { WebRtcPlayer, webrtcSupport } from './player_webrtc.js';
import { ProcessingPanel } from './processing_panel.js';
import { PtzControls } from './ptz_controls.js';
import { RecordingsPanel } from './recordings_panel.js';
import { Stats } from './stats.js';

const ORDER = ['webrtc', 'webcodecs', 'mse', 'mjpeg'];
const LABELS = { webrtc: 'WebRTC', webcodecs: 'WebCodecs', mse: 'MSE', mjpeg: 'MJPEG' };

const PLAYERS = {
  webrtc: { support: () => webrtcSupport(), create: (ctx) => new WebRtcPlayer(ctx) },
  webcodecs: { support: () => webcodecsSupport(), create: (ctx) => new WebCodecsPlayer(ctx) },
  mse: { support: (stream) => mseSupport(mimeOf(stream)), create: (ctx) => new MsePlayer(ctx) },
  mjpeg: { support: () => null, create: (ctx) => new MjpegPlayer(ctx) }, // an <img> is the last resort
};

const $ = (id) => document.getElementById(id);
const elements = { canvas: $('canvas'), video: $('video'), img: $('mjpeg-img') };
const streamSelect = $('stream-select');
const playerSelect = $('player-select');
const notice = $('notice');

const stats = new Stats();
const clock = new ClockSync({ url: wsUrl('/ws/control'), makeReport: () => stats.takeReport() });
const hud = new Hud($('hud'), stats, clock);
const control = new ControlRouter(clock); // PTZ takes the WebRTC data channel when the player has one open
const ptz = new PtzControls({ control, root: $('ptz'), stage: $('stage') });
const processing = new ProcessingPanel({
  control, root: $('processing'), toggle: $('processing-toggle'), stage: $('stage'), elements,
});
const recordings = new RecordingsPanel({
  control: clock, root: $('recordings'), toggle: $('recordings-toggle'), recButton: $('rec-button'),
  photoButton: $('photo-button'), clipButton: $('clip-button'), toast: $('toast'),
});

let streams = [];
let current = null; // {stream, name, player}

window.vergence = {
  player: null, stream: null, stats, clock, control, ptz, processing, recordings,
  get controlPath() { return control.path; }, // 'datachannel' | 'websocket': where PTZ goes now
};

function mimeOf(stream) {
  return stream?.codec ? `video/mp4; codecs="${stream.codec}"` : undefined;
}

function say(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

/** Pick the first player this browser supports, starting from `wanted` when it is forced. */
function choosePlayer(wanted, stream, exclude = []) {
  const messages = [];
  if (wanted && PLAYERS[wanted] && !exclude.includes(wanted)) {
    const lacking = PLAYERS[wanted].support(stream);
    if (!lacking) return { name: wanted, messages };
    messages.push(`${LABELS[wanted]} is not available: ${lacking}.`);
  }
  for (const name of ORDER) {
    if (name === wanted || exclude.includes(name)) continue;
    const lacking = PLAYERS[name].support(stream);
    if (!lacking) return { name, messages };
    if (!wanted) messages.push(`${LABELS[name]} is not available: ${lacking}.`);
  }
  return { name: 'mjpeg', messages };
}

function play(streamId, wanted, exclude = [], messages = []) {
  stopPlayer();
  const stream = streams.find((s) => s.id === streamId) ?? streams[0];
  const choice = choosePlayer(wanted, stream, exclude);
  const all = [...messages, ...choice.messages];
  if (all.length) say(`${all.join(' ')} Using ${LABELS[choice.name]}.`);
  else say('');
  stats.reset(choice.name, stream.id);
  stats.status = stream.state || '';
  if (stream.width && stream.height) {
    stats.setResolution(stream.width, stream.height);
    elements.canvas.width = stream.width; // a placeholder of the right shape until the first frame
    elements.canvas.height = stream.height;
  }
  const player = PLAYERS[choice.name].create({
    stream: stream.id,
    stats,
    clock,
    control,
    elements,
    // A player that finds at run time it cannot work here hands over to the next one.
    onFail: (reason) => {
      if (current?.player !== player) return;
      console.warn(`${choice.name} failed: ${reason}`);
      play(stream.id, null, [...exclude, choice.name], [`${LABELS[choice.name]} failed: ${reason}.`]);
    },
  });
  current = { stream: stream.id, name: choice.name, player };
  window.vergence.player = choice.name;
  window.vergence.stream = stream.id;
  ptz.setCamera(stream.id);
  processing.setStream(stream.id);
  recordings.setStream(stream.id);
  player.start();
}

function stopPlayer() {
  if (!current) return;
  current.player.stop();
  current = null;
}

function params() {
  const q = new URLSearchParams(location.search);
  return { stream: q.get('stream'), player: q.get('player'), view: q.get('view') };
}

// ?view=vr: only the picture, edge to edge on black, for a phone in a VR viewer. A tap goes fullscreen in landscape and
// keeps the screen awake; whatever the browser refuses is skipped quietly.
function enterVrView() {
  document.body.classList.add('vr');
  $('stage').addEventListener('click', async () => {
    try {
      if (!document.fullscreenElement) await document.documentElement.requestFullscreen({ navigationUI: 'hide' });
      await screen.orientation?.lock?.('landscape');
    } catch { /* not allowed here: stay as we are */ }
    try { await navigator.wakeLock?.request('screen'); } catch { /* no wake lock */ }
  });
}

function setParams(changes) {
  const q = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(changes)) {
    if (value) q.set(key, value);
    else q.delete(key);
  }
  const search = q.toString();
  history.replaceState(null, '', search ? `?${search}` : location.pathname);
}

/** Who the page is signed in as; a viewer gets the picture without the controls it may not use. */
async function loadSession() {
  try {
    const response = await fetch('/api/session', { cache: 'no-store' });
    if (response.status === 401) location.reload(); // the sign-in ended: the server asks again
    if (!response.ok) return;
    const session = await response.json();
    document.body.classList.toggle('viewer', !session.commands);
    const who = $('who');
    who.textContent = session.commands ? `${session.name} · operator` : `${session.name} · view only`;
    who.title = session.commands ? 'may watch and command' : 'may watch; commands need an operator token or user';
    who.hidden = false;
    window.vergence.session = session;
  } catch { /* the stream list below reports an unreachable server */ }
}

async function loadStreams() {
  for (let delayMs = 500; ; delayMs = Math.min(delayMs * 2, 5000)) {
    try {
      const response = await fetch('/api/streams', { cache: 'no-store' });
      if (response.status === 401) location.reload();
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const list = await response.json();
      if (list.length) return list;
      say('The server has no streams yet; retrying…');
    } catch (err) {
      say(`Cannot read /api/streams (${err.message}); retrying…`);
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

function fillStreamSelect(selected) {
  streamSelect.replaceChildren(...streams.map((s) => {
    const option = new Option(`${s.id} · ${s.width}×${s.height}${s.source ? ` · ${s.source}` : ''}`, s.id);
    option.selected = s.id === selected;
    return option;
  }));
  streamSelect.disabled = streams.length === 0;
}

async function boot() {
  const wanted = params();
  if (wanted.player && !PLAYERS[wanted.player]) {
    say(`Unknown player "${wanted.player}"; choose webrtc, webcodecs, mse or mjpeg.`);
    wanted.player = null;
  }
  // A ?token= link signed this browser in (the server set a session cookie): keep the secret out of the address bar,
  // history and anything copied from it.
  if (new URLSearchParams(location.search).has('token')) setParams({ token: null });
  await loadSession();
  playerSelect.value = wanted.player || 'auto';
  if (wanted.view === 'vr') enterVrView();
  ptz.start(); // before the socket opens, so they hear the first state
  processing.start();
  recordings.start();
  clock.start();
  hud.start();
  streams = await loadStreams();
  let streamId = wanted.stream;
  const messages = [];
  if (streamId && !streams.some((s) => s.id === streamId)) {
    messages.push(`No stream "${streamId}".`);
    streamId = null;
  }
  streamId ??= streams[0].id;
  fillStreamSelect(streamId);
  play(streamId, wanted.player, [], messages);

  streamSelect.addEventListener('change', () => {
    setParams({ stream: streamSelect.value });
    play(streamSelect.value, params().player);
  });
  playerSelect.addEventListener('change', () => {
    const player = playerSelect.value === 'auto' ? null : playerSelect.value;
    setParams({ player });
    play(current?.stream ?? streams[0].id, player);
  });
  document.addEventListener('keydown', (event) => {
    const typing = event.target instanceof HTMLSelectElement || event.target instanceof HTMLInputElement;
    if (event.key === 'h' && !typing) $('hud').classList.toggle('off');
  });
  window.addEventListener('pagehide', () => {
    stopPlayer();
    ptz.stop();
    processing.stop();
    recordings.stop();
    clock.stop();
  });
}

boot();
