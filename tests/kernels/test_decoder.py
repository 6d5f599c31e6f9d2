"""The server's own decoding of kernel messages (collab.kernels.backend.MessageDecoder):
what jupyter-client's Session.deserialize gives, signed messages only, no replays, and
the headers' dates left as the kernel wrote them."""

from __future__ import annotations

import uuid

import pytest
from jupyter_client.session import Session

from collab.kernels.backend import MessageDecoder


def _frames(session: Session, msg_type: str = "stream", **content: object) -> list[bytes]:
    parent = session.msg("execute_request", {"code": "print(1)"})
    msg = session.msg(msg_type, content or {"name": "stdout", "text": "1\n"}, parent=parent)
    return [b"stream.stdout", *session.serialize(msg)]


def test_a_signed_message_decodes_as_jupyter_client_does_without_parsing_dates() -> None:
    key = uuid.uuid4().hex.encode()
    sender, receiver = Session(key=key), Session(key=key)
    frames = _frames(sender)
    ours = MessageDecoder(receiver).decode(list(frames))
    theirs = Session(key=key).deserialize(Session(key=key).feed_identities(frames)[1])
    for part in ("msg_id", "msg_type", "content", "metadata"):
        assert ours[part] == theirs[part]
    assert ours["parent_header"]["msg_id"] == theirs["parent_header"]["msg_id"]
    assert ours["header"]["msg_type"] == "stream"
    # The date stays the string the kernel sent (jupyter-client makes it a datetime).
    assert isinstance(ours["header"]["date"], str)
    assert ours["header"]["date"].startswith(str(theirs["header"]["date"].year))


@pytest.mark.parametrize(
    "tamper, why",
    [
        (lambda f: [f[0], f[1], b"", *f[3:]], "unsigned"),
        (lambda f: [f[0], f[1], b"0" * 64, *f[3:]], "invalid signature"),
        (lambda f: [*f[:6], f[6].replace(b"1\\n", b"2\\n")], "invalid signature"),
        (lambda f: f[:4], "fewer than 5 parts"),
    ],
)
def test_an_unsigned_forged_or_short_message_is_refused(tamper, why) -> None:  # type: ignore[no-untyped-def]
    key = uuid.uuid4().hex.encode()
    frames = _frames(Session(key=key))
    with pytest.raises(ValueError, match=why):
        MessageDecoder(Session(key=key)).decode(tamper(frames))


def test_a_replayed_message_is_refused_and_the_memory_of_signatures_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = uuid.uuid4().hex.encode()
    sender = Session(key=key)
    decoder = MessageDecoder(Session(key=key))
    first = _frames(sender)
    decoder.decode(list(first))
    with pytest.raises(ValueError, match="replayed"):
        decoder.decode(list(first))
    monkeypatch.setattr("collab.kernels.backend.SEEN_SIGNATURES", 3)
    for _ in range(5):
        decoder.decode(_frames(sender))
    assert len(decoder._seen) == 3 and len(decoder._order) == 3
