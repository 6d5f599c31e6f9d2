"""HTTP plumbing shared by the JSON endpoints: reading a JSON body, answering errors."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from collab.db.errors import database_unavailable, unavailable
from collab.errors import ApiError, valid_unicode
from collab.services import Services

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024

Endpoint = Callable[[Request], Awaitable[Response]]


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError("bad_content_type", "send the body as application/json", status=415)
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError("too_large", f"the body exceeds {MAX_BODY} bytes", status=413)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError("bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError("bad_request", "the body must be a JSON object")
    if not _all_unicode(data):
        raise ApiError("bad_request", "text in the body is valid Unicode (no lone surrogates)")
    return data


def _all_unicode(value: Any) -> bool:
    # Checked once here, for every field: passwords, emails and names reach hashing and
    # PostgreSQL, which take only valid UTF-8.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and not valid_unicode(item):
            return False
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def error_response(err: ApiError) -> JSONResponse:
    headers = {}
    if err.code == "rate_limited" and "retry_after" in err.extra:
        headers["Retry-After"] = str(err.extra["retry_after"])
    return JSONResponse({"error": err.to_json()}, status_code=err.status, headers=headers)


def api(endpoint: Endpoint) -> Endpoint:
    """Turn ApiError into its JSON answer; anything else into a logged `internal` error."""

    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as err:
            return error_response(err)
        except Exception as exc:
            if database_unavailable(exc):
                log.warning(
                    "database unreachable",
                    extra={"event": "http.unavailable", "path": request.url.path},
                )
                return error_response(unavailable())
            log.exception("request failed", extra={"event": "http.error", "path": request.url.path})
            return error_response(ApiError("internal", "internal server error", status=500))

    wrapped.__name__ = endpoint.__name__
    return wrapped


class OpenFileResponse(FileResponse):
    """Serves a file the route already opened safely (without following links) through its
    descriptor's /proc name: what is sent is that file, whatever the path leads to by
    the time the body is read. The descriptor is closed when the response ends."""

    def __init__(self, fd: int, **kwargs: Any) -> None:
        self.fd = fd
        super().__init__(f"/proc/self/fd/{fd}", stat_result=os.fstat(fd), **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Never hand the server a path to open after this response returns.
        extensions = {
            k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"
        }
        try:
            await super().__call__({**scope, "extensions": extensions}, receive, send)
        finally:
            os.close(self.fd)
