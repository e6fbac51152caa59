// A WebSocket that reconnects with backoff until stopped; used by the WebCodecs and MSE players.

export function wsUrl(path) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}

export class LiveSocket {
  /** handlers: onOpen(), onText(msg object), onBinary(ArrayBuffer), onClose(willRetry) */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.stopped = true;
    this.retryMs = 500;
  }

  start() {
    this.stopped = false;
    this.#connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) {
      this.ws.onclose = this.ws.onmessage = this.ws.onopen = null;
      this.ws.close();
    }
    this.ws = null;
  }

  #connect() {
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.retryMs = 500;
      this.handlers.onOpen?.();
    };
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') {
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          console.warn('not JSON:', event.data);
          return;
        }
        this.handlers.onText?.(msg);
      } else {
        this.handlers.onBinary?.(event.data);
      }
    };
    ws.onclose = () => {
      if (this.stopped || this.ws !== ws) return;
      this.handlers.onClose?.(true);
      this.retryTimer = setTimeout(() => this.#connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 8000);
    };
  }
}
