"""The WebSocket frame a server writes for a video message, checked against the websockets library's own parser."""

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from vergence.outputs.ws_direct import websocket_message


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_a_prepared_message_is_one_unmasked_binary_frame_with_the_payload(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    reader = StreamReader()
    reader.feed_data(websocket_message(payload))
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
        raise AssertionError("the parser wanted more bytes than the message holds")
    except StopIteration as done:
        frame = done.value
    assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == payload
