"""Frames written straight to the transport are the frames a WebSocket client parses."""

import pytest
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.streams import StreamReader

from collab.ws import wire


def _parse(data: bytes) -> WsFrame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = WsFrame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_frames_parse_back_to_their_payload(size):
    payload = bytes(i % 251 for i in range(size))
    frame = _parse(wire.frame_of(wire.Frame(payload)))
    assert frame.opcode == Opcode.BINARY and frame.fin and frame.data == payload
    text = "é" * (size // 2)
    frame = _parse(wire.frame_of(text))
    assert frame.opcode == Opcode.TEXT and frame.data.decode() == text


def test_a_broadcast_frame_is_built_once():
    frame = wire.Frame(b"update")
    assert wire.frame_of(frame) is wire.frame_of(frame)
