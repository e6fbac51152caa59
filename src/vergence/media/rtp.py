"""Byte-level helpers of the UDP outputs: RTP/RTCP header fields, MPEG-TS datagrams, pacing times. Pure: no I/O."""

from __future__ import annotations

TS_PACKET_BYTES = 188
TS_DATAGRAM_BYTES = 7 * TS_PACKET_BYTES  # 1316: the usual MPEG-TS-over-UDP payload, under any Ethernet MTU
U32 = 0xFFFFFFFF


def ts_datagrams(data: bytes, size: int = TS_DATAGRAM_BYTES) -> tuple[list[bytes], bytes]:
    """Cut MPEG-TS bytes into datagrams of `size`; whole 188-byte packets left over make a last, shorter datagram.

    Returns the datagrams and what remains of a TS packet cut short (to be put in front of the next bytes).
    """
    whole = len(data) - len(data) % TS_PACKET_BYTES
    datagrams = [data[at : min(at + size, whole)] for at in range(0, whole, size)]
    return datagrams, data[whole:]


def is_rtcp(datagram: bytes) -> bool:
    """Tell an RTCP packet (types 200…204, RFC 3550) from an RTP one: RTP payload types never reach 72…76."""
    return len(datagram) >= 8 and 200 <= datagram[1] <= 204


def rtp_fields(datagram: bytes) -> tuple[int, int, int]:
    """Return (sequence number, timestamp, SSRC) of an RTP packet."""
    return (
        int.from_bytes(datagram[2:4], "big"),
        int.from_bytes(datagram[4:8], "big"),
        int.from_bytes(datagram[8:12], "big"),
    )


def shift_timestamp(datagram: bytes, delta: int) -> bytes:
    """Add `delta` (mod 2³²) to the RTP timestamp of an RTP packet or an RTCP sender report; leave others as they are."""
    if is_rtcp(datagram):
        offset = 16 if datagram[1] == 200 and len(datagram) >= 20 else -1  # SR: NTP time (8 bytes), then RTP time
    else:
        offset = 4 if len(datagram) >= 12 else -1
    if offset < 0 or delta == 0:
        return datagram
    stamp = (int.from_bytes(datagram[offset : offset + 4], "big") + delta) & U32
    return datagram[:offset] + stamp.to_bytes(4, "big") + datagram[offset + 4 :]


def pacing_offsets(sizes: list[int], rate_bps: float, budget_s: float) -> list[float]:
    """Return when to send each datagram (seconds after the first) to leave at `rate_bps`, but all within `budget_s`.

    A rate of 0 sends at once. A frame too big for the rate in the budget is sent faster: pacing never delays a frame
    into the next one.
    """
    if rate_bps <= 0 or not sizes:
        return [0.0] * len(sizes)
    total_bits = 8 * sum(sizes[:-1])  # the last datagram leaves at the end of the spread
    rate = max(rate_bps, total_bits / budget_s) if budget_s > 0 else float("inf")
    offsets, sent_bits = [], 0
    for size in sizes:
        offsets.append(sent_bits / rate)
        sent_bits += 8 * size
    return offsets
