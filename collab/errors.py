"""ApiError: a failure a client may see, with a stable code and a human message.

The codes are the contract in docs/protocol.md; the detail behind an error goes
to the server log, never to the client.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.extra)
        return body


def valid_unicode(text: str) -> bool:
    """False for text that no UTF-8 consumer (a file name, PostgreSQL, a pty) takes: JSON
    escapes can carry lone surrogates such as "\\ud800"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
