"""The y-websocket wire: message types, close codes, and the few messages we add
(the sync-status acknowledgement). Encoding is pycrdt's; nothing here is hand-rolled."""

from __future__ import annotations

from dataclasses import dataclass

from pycrdt import Decoder, YMessageType, YSyncMessageType, write_var_uint

from collab.ws import outbox

# Message types besides pycrdt's SYNC (0) and AWARENESS (1).
QUERY_AWARENESS = 3  # y-websocket: "send me everyone's awareness"
SYNC_STATUS = 8  # ours (Hocuspocus's number): how many of your updates are stored

# Close codes, documented in docs/protocol.md.
CLOSE_GOING_AWAY = 1001
CLOSE_BAD_PATH = 4400
CLOSE_PROTOCOL = 4402
CLOSE_NO_ACCESS = 4404
CLOSE_TOO_LARGE = 4413
CLOSE_UNSUPPORTED_FILE = 4415
CLOSE_SLOW_CONSUMER = outbox.CLOSE_SLOW_CONSUMER
CLOSE_INTERNAL = 1011
# The document's file was renamed (files.move): the reason is the new path; reopen there.
CLOSE_MOVED = 4409
# The document's file was deleted: do not reconnect (that would recreate it).
CLOSE_DELETED = 4410


class ProtocolError(ValueError):
    """A message that is not y-websocket; the client is closed with CLOSE_PROTOCOL."""


@dataclass
class Incoming:
    type: int
    # SYNC: the sync submessage (sync type byte, then its payload); AWARENESS: the
    # awareness update itself; QUERY_AWARENESS: empty.
    body: bytes
    sync_type: int | None = None


def parse(message: bytes) -> Incoming:
    if not message:
        raise ProtocolError("empty message")
    try:
        decoder = Decoder(message)
        kind = decoder.read_var_uint()
        rest = message[decoder.i0 :]
        if kind == YMessageType.SYNC:
            if not rest or rest[0] not in tuple(YSyncMessageType):
                raise ProtocolError("unknown sync message type")
            # Check the length prefix now so that a truncated update fails here.
            inner = Decoder(rest[1:])
            payload = inner.read_message()
            if payload is None or inner.i0 != len(rest) - 1:
                raise ProtocolError("sync message length does not match")
            return Incoming(kind, rest, rest[0])
        if kind == YMessageType.AWARENESS:
            inner = Decoder(rest)
            payload = inner.read_message()
            if payload is None or inner.i0 != len(rest):
                raise ProtocolError("awareness message length does not match")
            return Incoming(kind, payload)
        if kind == QUERY_AWARENESS:
            return Incoming(kind, b"")
    except (IndexError, RuntimeError) as exc:
        raise ProtocolError("truncated message") from exc
    raise ProtocolError(f"unknown message type {kind}")


def sync_status_message(stored: int) -> bytes:
    """[8][varUint n]: the first n SYNC step-2/update messages this connection sent are
    durably stored."""
    return bytes([SYNC_STATUS]) + write_var_uint(stored)
