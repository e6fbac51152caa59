// Read the capture-time code the test pattern paints at the top left of every frame (src/vergence/media/timecode.py):
// two rows of 32 square cells, 56 bits of capture time in microseconds (most significant first) and a CRC-8 (poly 0x07)
// of those 7 bytes; black = 0, white = 1. Reading pixels needs no trust in any metadata: it is true pixel latency.

export const COLUMNS = 32;
export const ROWS = 2;
const SAMPLE_PX = 4; // each cell is drawn this many pixels wide into the small canvas; the middle 2×2 are read
const DARK_BELOW = 80; // a cell must be clearly black or white: a natural picture rarely is, cell after cell
const LIGHT_ABOVE = 175;

/** The side of one cell in pixels for a picture `width` pixels wide (as timecode.cell_px on the server). */
export function cellPx(width) {
  return Math.max(2, Math.floor(width / 80) & ~1);
}

export function crc8(bytes) {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

/** Capture time in microseconds held by 64 bits (0/1, row after row), or null when the CRC does not match. */
export function decodeBits(bits) {
  const bytes = new Uint8Array(8);
  for (let i = 0; i < 64; i++) bytes[i >> 3] |= (bits[i] & 1) << (7 - (i & 7));
  if (crc8(bytes.subarray(0, 7)) !== bytes[7]) return null;
  // 56 bits exceed a double's 53 only after the year 2255 (in µs): whole bytes add up exactly until then.
  let micros = 0;
  for (let i = 0; i < 7; i++) micros = micros * 256 + bytes[i];
  return micros;
}

/**
 * Reads the code from a <video> (or any drawImage source) through a tiny canvas: only the code's region is drawn,
 * scaled to SAMPLE_PX per cell, so a frame costs one small draw and a 1 KiB read-back.
 */
export class TimecodeReader {
  constructor() {
    this.canvas = document.createElement('canvas');
    this.canvas.width = COLUMNS * SAMPLE_PX;
    this.canvas.height = ROWS * SAMPLE_PX;
    // willReadFrequently keeps the canvas in memory: reading back a GPU canvas every frame would stall.
    this.ctx = this.canvas.getContext('2d', { willReadFrequently: true, alpha: false });
    this.bits = new Uint8Array(COLUMNS * ROWS);
  }

  /** The capture time (µs since the Unix epoch) painted in `source`, a picture `width` pixels wide; null if none. */
  read(source, width, height) {
    const cell = cellPx(width);
    if (width < COLUMNS * cell || height < ROWS * cell) return null;
    const ctx = this.ctx;
    ctx.drawImage(source, 0, 0, COLUMNS * cell, ROWS * cell, 0, 0, this.canvas.width, this.canvas.height);
    const data = ctx.getImageData(0, 0, this.canvas.width, this.canvas.height).data;
    const stride = this.canvas.width * 4;
    const mid = SAMPLE_PX / 2 - 1; // the middle 2×2 of each cell: edges blur under compression and scaling
    for (let row = 0; row < ROWS; row++) {
      for (let col = 0; col < COLUMNS; col++) {
        let sum = 0;
        for (let dy = 0; dy < 2; dy++) {
          let o = (row * SAMPLE_PX + mid + dy) * stride + (col * SAMPLE_PX + mid) * 4;
          for (let dx = 0; dx < 2; dx++, o += 4) sum += data[o] + data[o + 1] + data[o + 2];
        }
        const level = sum / 12;
        if (level > DARK_BELOW && level < LIGHT_ABOVE) return null; // grey: not a code
        this.bits[row * COLUMNS + col] = level >= LIGHT_ABOVE ? 1 : 0;
      }
    }
    // All black passes the CRC (zero bytes, zero CRC); a real capture time always has ones and zeros.
    const ones = this.bits.reduce((n, bit) => n + bit, 0);
    if (ones === 0 || ones === this.bits.length) return null;
    return decodeBits(this.bits);
  }
}
