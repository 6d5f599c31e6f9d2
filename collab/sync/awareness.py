"""Presence (y-protocols awareness) of one room: the caps that keep one connection from
flooding it, and who may speak for which client id. An id belongs to the connection that
announced it first for as long as that connection lives, then to its account for
`sync_awareness_reserve_seconds` (Reservations, one per process), so nobody can take
over someone else's presence."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pycrdt import Decoder, Encoder

from collab.config import Settings
from collab.sync.client import Client
from collab.sync.protocol import ProtocolError

_SWEEP_SECONDS = 60.0
# Editors paste a cursor's colours into style attributes (y-codemirror.next): anything
# but a hex colour could restyle or cover a collaborator's page.
_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_COLOR_FIELDS = ("color", "colorLight")


def _safe_user_fields(user: Any) -> dict[str, Any]:
    if not isinstance(user, dict):
        return {}
    return {
        key: value
        for key, value in user.items()
        if key not in _COLOR_FIELDS or (isinstance(value, str) and _COLOR.fullmatch(value))
    }


class PresenceTooLarge(Exception):
    """An awareness message over a cap; the client is closed with CLOSE_TOO_LARGE."""


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 64 * 1024
    max_entries: int = 64
    max_ids: int = 16
    max_connection_bytes: int = 64 * 1024
    reserve_seconds: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.sync_awareness_max_bytes,
            settings.sync_awareness_max_entries,
            settings.sync_awareness_max_ids,
            settings.sync_awareness_max_connection_bytes,
            float(settings.sync_awareness_reserve_seconds),
        )


@dataclass
class _Reserved:
    account_id: UUID
    until: float
    sent: int


class Reservations:
    """Client ids of closed connections, per document, kept for their account. Outlives
    rooms: a room that unloads and loads again must not hand the id to someone else."""

    def __init__(self) -> None:
        self._docs: dict[int, dict[int, _Reserved]] = {}
        self._swept = time.monotonic()

    def get(self, doc_id: int, cid: int, now: float) -> _Reserved | None:
        held = self._docs.get(doc_id, {}).get(cid)
        if held is not None and held.until <= now:
            self.release(doc_id, cid)
            return None
        return held

    def release(self, doc_id: int, cid: int) -> None:
        ids = self._docs.get(doc_id)
        if ids is not None:
            ids.pop(cid, None)
            if not ids:
                del self._docs[doc_id]

    def hold(self, doc_id: int, cid: int, held: _Reserved) -> None:
        self._docs.setdefault(doc_id, {})[cid] = held
        if held.until - _SWEEP_SECONDS > self._swept:
            self._sweep(time.monotonic())

    def _sweep(self, now: float) -> None:
        self._swept = now
        for doc_id in list(self._docs):
            for cid in [c for c, h in self._docs[doc_id].items() if h.until <= now]:
                self.release(doc_id, cid)


@dataclass
class _Id:
    client: Client
    clock: int  # the owner's latest clock
    # The latest clock the room was sent for this id. What we relay always goes above it,
    # so y-protocols clients (which ignore a clock they have seen) show a returning owner.
    sent: int
    state: str | None  # the JSON relayed, or None while not present
    seen: float


class Presence:
    def __init__(self, doc_id: int, limits: Limits, reservations: Reservations) -> None:
        self.doc_id = doc_id
        self.limits = limits
        self.reservations = reservations
        self._ids: dict[int, _Id] = {}

    def apply(self, client: Client, update: bytes) -> bytes | None:
        """A client's awareness update -> the update to relay to the room, if any.
        Entries for ids the client does not own are dropped."""
        entries = self._parse(update)
        now = time.monotonic()
        changed: list[tuple[int, int, str]] = []
        for cid, clock, state in entries:
            rec = self._ids.get(cid)
            if rec is None:
                if state is None:
                    continue
                held = self.reservations.get(self.doc_id, cid, now)
                if held is not None and held.account_id != client.account_id:
                    continue
                if len(client.awareness_ids) >= self.limits.max_ids:
                    raise ProtocolError(
                        f"a connection has at most {self.limits.max_ids} awareness ids"
                    )
                self.reservations.release(self.doc_id, cid)
                rec = _Id(client, clock, held.sent if held else -1, None, now)
                self._ids[cid] = rec
                client.awareness_ids.add(cid)
            elif rec.client is not client or clock < rec.clock:
                continue
            text = None
            if state is not None:
                user = state.get("user")
                state["user"] = {
                    **_safe_user_fields(user),
                    "name": client.name,
                    "account_id": str(client.account_id),
                }
                text = json.dumps(state, separators=(",", ":"))
                others = sum(
                    len(self._ids[c].state or "") for c in client.awareness_ids if c != cid
                )
                if others + len(text) > self.limits.max_connection_bytes:
                    raise PresenceTooLarge(
                        "the presence of one connection is at most "
                        f"{self.limits.max_connection_bytes} bytes"
                    )
            rec.clock, rec.sent = clock, max(clock, rec.sent + 1)
            rec.state, rec.seen = text, now
            changed.append((cid, rec.sent, text or "null"))
        return _encode(changed) if changed else None

    def _parse(self, update: bytes) -> list[tuple[int, int, dict[str, Any] | None]]:
        # The caps come before the entries are read: a flood costs a length check.
        limits = self.limits
        if len(update) > limits.max_message_bytes:
            raise PresenceTooLarge(
                f"an awareness message is at most {limits.max_message_bytes} bytes"
            )
        entries = []
        try:
            decoder = Decoder(update)
            count = decoder.read_var_uint()
            if count > limits.max_entries:
                raise PresenceTooLarge(
                    f"an awareness message has at most {limits.max_entries} entries"
                )
            for _ in range(count):
                cid = decoder.read_var_uint()
                clock = decoder.read_var_uint()
                raw = decoder.read_var_string()
                state = json.loads(raw, parse_constant=_no_constant) if raw else None
                if state is not None and not isinstance(state, dict):
                    raise ProtocolError("an awareness state is a JSON object or null")
                entries.append((cid, clock, state))
        except (ProtocolError, PresenceTooLarge):
            raise
        except (IndexError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError("invalid awareness update") from exc
        return entries

    def snapshot(self) -> bytes | None:
        """Everyone's presence, for a client that joins or asks."""
        present = [(cid, r.sent, r.state) for cid, r in self._ids.items() if r.state is not None]
        return _encode(present) if present else None

    def remove(self, client: Client) -> bytes | None:
        """The connection closed: its ids leave the room and are held for its account."""
        now = time.monotonic()
        changed = []
        for cid in list(client.awareness_ids):
            rec = self._ids.pop(cid, None)
            if rec is None or rec.client is not client:
                continue
            if rec.state is not None:
                rec.sent += 1
                changed.append((cid, rec.sent, "null"))
            held = _Reserved(client.account_id, now + self.limits.reserve_seconds, rec.sent)
            self.reservations.hold(self.doc_id, cid, held)
        client.awareness_ids.clear()
        return _encode(changed) if changed else None

    def expire(self, timeout: float) -> bytes | None:
        """Presence not renewed for `timeout` seconds goes (y-protocols clients renew
        every 15 s); the id stays its connection's."""
        limit = time.monotonic() - timeout
        changed = []
        for cid, rec in self._ids.items():
            if rec.state is not None and rec.seen < limit:
                rec.sent += 1
                rec.state = None
                changed.append((cid, rec.sent, "null"))
        return _encode(changed) if changed else None


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: a browser relaying them would fail to parse them.
    raise ValueError(f"{name} is not JSON")


def _encode(entries: list[tuple[int, int, str]]) -> bytes:
    encoder = Encoder()
    encoder.write_var_uint(len(entries))
    for cid, clock, text in entries:
        encoder.write_var_uint(cid)
        encoder.write_var_uint(clock)
        encoder.write_var_string(text)
    return encoder.to_bytes()
