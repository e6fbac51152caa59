// Where control messages go: over the WebRTC player's data channel while it is open (the lowest-latency path: the
// same connection as the video, no TCP head-of-line blocking behind other traffic), else over /ws/control.
// It offers the API the panels use (command, on, connected). State events keep coming from /ws/control alone: the data
// channel forwards them too, but two sources of the same event would only make the sliders jump twice.

// Commands that move the eyes take the channel; the rest (processing, recording) keep to the WebSocket.
const VIA_CHANNEL = new Set(['ptz', 'pan', 'tilt', 'zoom', 'move', 'preset', 'stereo']);
const FROM_CHANNEL = new Set(['error', 'reply']); // answers to what we sent on the channel; state events are ignored

let nextId = 1;

export class ControlRouter {
  /** @param socket the ClockSync that owns /ws/control (send, on, connected) */
  constructor(socket) {
    this.socket = socket;
    this.channel = null;
    this.listeners = new Map(); // type → Set of functions, for the answers coming back on the channel
  }

  /** 'datachannel' while an open data channel carries PTZ, else 'websocket'. */
  get path() {
    return this.channel?.readyState === 'open' ? 'datachannel' : 'websocket';
  }

  get connected() {
    return this.socket.connected || this.path === 'datachannel';
  }

  /** Use this open RTCDataChannel from now on (null: back to the WebSocket). */
  useChannel(channel) {
    this.channel = channel;
  }

  /** A message that arrived on the data channel (its `frame` messages are the player's own business). */
  fromChannel(msg) {
    if (!FROM_CHANNEL.has(msg.type)) return;
    if (msg.type === 'error' || msg.ok === false) console.warn('control (data channel):', msg.code, msg.error);
    for (const fn of this.listeners.get(msg.type) ?? []) {
      try {
        fn(msg);
      } catch (err) {
        console.error(`control listener for ${msg.type}:`, err);
      }
    }
  }

  on(type, fn) {
    const offSocket = this.socket.on(type, fn);
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => {
      offSocket();
      this.listeners.get(type)?.delete(fn);
    };
  }

  /** Send one command (`{type: 'ptz', stream, pan, …}`: docs/protocol.md, "Commands"). Its answer arrives as a
   * `reply` message carrying the id returned here; null when there was no connection to send it on. */
  command(command) {
    const id = `page-${nextId++}`;
    const msg = { type: 'command', command, id };
    if (VIA_CHANNEL.has(command.type) && this.path === 'datachannel') {
      try {
        this.channel.send(JSON.stringify(msg));
        return id;
      } catch (err) {
        console.warn('data channel send failed, using the WebSocket:', err);
      }
    }
    return this.socket.send(msg) ? id : null;
  }
}
