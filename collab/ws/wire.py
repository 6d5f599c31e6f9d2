"""WebSocket frames written straight to the connection's transport: a broadcast is
framed once for all its clients, the messages of one event-loop tick to a client with
nothing queued are written together at its end, and everything queued for one client
goes out in one write, instead of one ASGI send (and one framing) per message per
client.

Only under uvicorn's websockets-sansio protocol, the one it picks by default; elsewhere
(another server, wsproto) the outbox sends through ASGI as before."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

_SCOPE_KEY = "collab.ws_protocol"
_OP_TEXT = 0x1
_OP_BINARY = 0x2


def encode(opcode: int, payload: bytes) -> bytes:
    """An unfragmented, unmasked server frame (RFC 6455 5.2). Never compressed: with
    permessage-deflate negotiated, an uncompressed message is still valid (RFC 7692)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


class Frame:
    """A binary message for many clients: its frame is built once, on first use, and
    the same bytes are written to every connection."""

    __slots__ = ("_wire", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = encode(_OP_BINARY, self.payload)
        return self._wire


def frame_of(message: str | bytes | Frame) -> bytes:
    if isinstance(message, Frame):
        return message.wire
    if isinstance(message, bytes):
        return encode(_OP_BINARY, message)
    return encode(_OP_TEXT, message.encode())


class RawSocket:
    """The connection's uvicorn protocol, reached through the ASGI `send` it gave us."""

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    @staticmethod
    def of(websocket: WebSocket) -> RawSocket | None:
        protocol = websocket.scope.get(_SCOPE_KEY)
        return None if protocol is None else RawSocket(protocol)

    def _open(self) -> bool:
        p = self._protocol
        return bool(
            p.handshake_complete
            and not p.close_sent
            and not p.disconnected
            and not p.transport.is_closing()
        )

    def write_now(self, data: bytes) -> bool:
        """Write frames at once, if the transport takes them without waiting (below its
        high-water mark, not closing); False to queue them instead."""
        p = self._protocol
        if not p.writable.is_set() or not self._open():
            return False
        p.transport.write(data)
        return True

    async def write(self, frames: list[bytes]) -> None:
        """Write the frames in one go; waits while the transport's buffer is over its
        high-water mark (the client is not reading), which is what lets the outbox's
        bounded queue fill and the slow-consumer close happen."""
        p = self._protocol
        await p.writable.wait()
        if not self._open():
            raise ConnectionError("the connection is closing")
        p.transport.write(b"".join(frames))


class CaptureProtocol:
    """ASGI middleware: for a WebSocket served by uvicorn's websockets-sansio protocol,
    keep the protocol object in the scope (its `send` is a bound method of it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            owner = getattr(send, "__self__", None)
            if type(owner).__name__ == "WebSocketsSansIOProtocol" and all(
                hasattr(owner, a)
                for a in ("transport", "writable", "handshake_complete", "close_sent")
            ):
                scope[_SCOPE_KEY] = owner
        await self.app(scope, receive, send)
