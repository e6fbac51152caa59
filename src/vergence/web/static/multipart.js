// Incremental reader of multipart/x-mixed-replace bodies (the MJPEG stream of docs/protocol.md).

const CRLFCRLF = [13, 10, 13, 10];
const decoder = new TextDecoder();

function indexOf(haystack, needle, from, to) {
  const last = to - needle.length;
  outer: for (let i = from; i <= last; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/** Return the boundary named in a Content-Type header, or the fallback. */
export function boundaryOf(contentType, fallback = 'vergenceframe') {
  const match = /boundary="?([^";]+)"?/i.exec(contentType || '');
  return match ? match[1] : fallback;
}

/**
 * Feed it the body's chunks with push(); it returns the completed parts, each {headers: Map (lower-case names),
 * body: Uint8Array}. Parts with a Content-Length are cut by length; others at the next boundary.
 */
export class MultipartReader {
  constructor(boundary) {
    this.delimiter = new TextEncoder().encode(`--${boundary}`);
    this.buf = new Uint8Array(1 << 20);
    this.start = 0; // first unread byte
    this.end = 0; // one past the last written byte
    this.pending = null; // headers of a part whose body has not fully arrived
  }

  push(chunk) {
    this.#append(chunk);
    const parts = [];
    for (;;) {
      const part = this.#next();
      if (!part) break;
      parts.push(part);
    }
    return parts;
  }

  #append(chunk) {
    if (this.end + chunk.length > this.buf.length) {
      const live = this.end - this.start;
      if (live + chunk.length > this.buf.length) {
        const bigger = new Uint8Array(Math.max(this.buf.length * 2, live + chunk.length));
        bigger.set(this.buf.subarray(this.start, this.end));
        this.buf = bigger;
      } else {
        this.buf.copyWithin(0, this.start, this.end);
      }
      this.start = 0;
      this.end = live;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  #next() {
    if (!this.pending) {
      const boundaryAt = indexOf(this.buf, this.delimiter, this.start, this.end);
      if (boundaryAt < 0) {
        // Keep only a tail that could still be the start of a delimiter.
        this.start = Math.max(this.start, this.end - this.delimiter.length);
        return null;
      }
      const headersEnd = indexOf(this.buf, CRLFCRLF, boundaryAt, this.end);
      if (headersEnd < 0) return null;
      const lines = decoder.decode(this.buf.subarray(boundaryAt + this.delimiter.length, headersEnd)).split('\r\n');
      const headers = new Map();
      for (const line of lines) {
        const colon = line.indexOf(':');
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      this.pending = headers;
      this.start = headersEnd + 4;
    }
    const length = parseInt(this.pending.get('content-length'), 10);
    let bodyEnd;
    let next;
    if (Number.isFinite(length)) {
      if (this.end - this.start < length) return null;
      bodyEnd = this.start + length;
      next = bodyEnd;
    } else {
      const boundaryAt = indexOf(this.buf, this.delimiter, this.start, this.end);
      if (boundaryAt < 0) return null;
      bodyEnd = boundaryAt;
      if (this.buf[bodyEnd - 1] === 10) bodyEnd--;
      if (this.buf[bodyEnd - 1] === 13) bodyEnd--;
      next = boundaryAt;
    }
    const body = this.buf.slice(this.start, bodyEnd); // a copy: the buffer is reused
    const part = { headers: this.pending, body };
    this.pending = null;
    this.start = next;
    return part;
  }
}
