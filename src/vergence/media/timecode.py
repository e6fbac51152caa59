"""The capture-time code painted into test-pattern frames: 64 large black/white blocks that survive lossy coding.

Layout: two rows of 32 square cells at the top-left corner of the picture. The 64 bits are the capture time in whole
microseconds (56 bits, most significant first) followed by a CRC-8 of those 7 bytes, so a reader can tell a real code from
an unlucky picture. Pure NumPy, no I/O.
"""

from __future__ import annotations

import numpy as np

COLUMNS, ROWS = 32, 2
BITS = COLUMNS * ROWS
_BLACK, _WHITE = 16, 235  # video-range luma, so the code stays black and white after any YUV→RGB conversion


def cell_px(width: int) -> int:
    """Return the side of one cell for a picture `width` pixels wide (even, so chroma stays aligned)."""
    return max(2, (width // 80) & ~1)


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def encode_bits(capture_ns: int) -> np.ndarray:
    """Return the 64 code bits (uint8 0/1, shape (ROWS, COLUMNS)) for a capture time."""
    micros = (capture_ns // 1000) & ((1 << 56) - 1)
    payload = micros.to_bytes(7, "big")
    word = int.from_bytes(payload + bytes([_crc8(payload)]), "big")
    bits = np.array([(word >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=np.uint8)
    return bits.reshape(ROWS, COLUMNS)


def decode_bits(bits: np.ndarray) -> int | None:
    """Return the capture time (ns, microsecond resolution) held by 64 code bits, or None if the CRC does not match."""
    word = 0
    for bit in bits.reshape(-1):
        word = (word << 1) | int(bit)
    raw = word.to_bytes(8, "big")
    if _crc8(raw[:7]) != raw[7]:
        return None
    return int.from_bytes(raw[:7], "big") * 1000


def paint(luma: np.ndarray, capture_ns: int, chroma: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Paint the code for `capture_ns` into a luma plane in place (and neutral grey into the I420 chroma planes)."""
    cell = cell_px(luma.shape[1])
    bits = encode_bits(capture_ns)
    block = np.where(bits, _WHITE, _BLACK).astype(np.uint8)
    luma[: ROWS * cell, : COLUMNS * cell] = np.repeat(np.repeat(block, cell, axis=0), cell, axis=1)
    if chroma is not None:
        half = cell // 2
        for plane in chroma:
            plane[: ROWS * half, : COLUMNS * half] = 128


def read(picture: np.ndarray) -> int | None:
    """Read the capture time from a decoded picture: a luma plane (h, w) or an RGB/BGR image (h, w, 3)."""
    if picture.ndim == 3:
        picture = picture.mean(axis=2)
    cell = cell_px(picture.shape[1])
    if picture.shape[0] < ROWS * cell or picture.shape[1] < COLUMNS * cell:
        return None
    grid = picture[: ROWS * cell, : COLUMNS * cell].astype(np.float32).reshape(ROWS, cell, COLUMNS, cell)
    margin = cell // 4  # sample the middle of each cell: edges blur under compression
    centres = grid[:, margin : cell - margin, :, margin : cell - margin].mean(axis=(1, 3))
    bits = (centres > 128).astype(np.uint8)
    if bits.all() or not bits.any():  # black passes the CRC (zero bytes, zero CRC); a real time has ones and zeros
        return None
    return decode_bits(bits)
