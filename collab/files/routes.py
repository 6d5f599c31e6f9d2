"""HTTP transfer of project files: upload (size-limited, written atomically), download
(as an attachment) and raw (inline, for images in markdown and outputs, sandboxed)."""

from __future__ import annotations

import asyncio
import mimetypes
import secrets
from pathlib import Path
from urllib.parse import quote
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from collab.auth.identity import identify, origin_allowed
from collab.errors import ApiError
from collab.files import fsops, listing
from collab.files.paths import checked, inside, project_root
from collab.http import OpenFileResponse, api, services
from collab.projects import store
from collab.web.headers import raw_headers

UPLOAD_PREFIX = ".collab-upload-"


async def _member_file(
    request: Request, *, follow: bool = True, write: bool = False
) -> tuple[UUID, Path, str, Path]:
    svc = services(request)
    identity, reason = await identify(request, svc.sessions, svc.keys)
    if identity is None:
        raise ApiError("unauthenticated", reason or "not signed in", status=401)
    if identity.via == "cookie" and not origin_allowed(request, svc.settings):
        raise ApiError("forbidden_origin", "requests from this origin are not allowed", status=403)
    try:
        project_id = UUID(request.path_params["project_id"])
    except ValueError:
        raise ApiError("forbidden", "you are not a member of this project", status=403) from None
    store.check_role(await store.role(svc.pool, project_id, identity.account.account_id), write)
    path = checked(request.path_params["path"])
    root = await asyncio.to_thread(project_root, svc.settings.projects_dir, project_id)
    full = await asyncio.to_thread(inside, root, path, follow=follow)
    return project_id, root, path, full


# What /raw serves as its own type (images and media for outputs and markdown, PDFs,
# text to read). Anything else, scripts and style sheets above all, goes as text/plain or
# bytes: with nosniff a browser then refuses to run it as a script, a worker or a style
# sheet even from the app's own origin.
_RAW_TYPES = ("image/", "audio/", "video/")
_RAW_EXACT = frozenset({"application/pdf", "text/plain", "text/csv", "text/html", "text/markdown"})


def _raw_type(path: str) -> str:
    kind = _content_type(path)
    bare = kind.split(";")[0]
    if bare.startswith(_RAW_TYPES) or bare in _RAW_EXACT:
        return kind
    return (
        "text/plain; charset=utf-8"
        if bare.startswith("text/") or "charset" in kind
        else ("application/octet-stream")
    )


def _content_type(path: str) -> str:
    kind, _ = mimetypes.guess_type(path)
    if kind is None:
        return "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "application/javascript"):
        return f"{kind}; charset=utf-8"
    return kind


async def _open_member_file(request: Request) -> tuple[str, int]:
    _, root, path, full = await _member_file(request)
    return path, await asyncio.to_thread(fsops.open_regular, root, full)


@api
async def download(request: Request) -> Response:
    path, fd = await _open_member_file(request)
    name = path.rsplit("/", 1)[-1]
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return OpenFileResponse(
        fd,
        media_type=_content_type(name),
        headers={
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-cache",
        },
    )


@api
async def raw(request: Request) -> Response:
    path, fd = await _open_member_file(request)
    return OpenFileResponse(fd, media_type=_raw_type(path), headers=raw_headers())


@api
async def upload(request: Request) -> Response:
    svc = services(request)
    limit = svc.settings.files_max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError("too_large", f"an upload is at most {limit} bytes", status=413)
    project_id, root, path, _ = await _member_file(request, follow=False, write=True)
    target = await asyncio.to_thread(inside, root, path)
    # Written beside the target and renamed over it: a reader sees the old file or the
    # whole new one, never a part; a failed or oversized upload leaves nothing behind.
    temp = f"{UPLOAD_PREFIX}{secrets.token_hex(8)}"
    try:
        out = await asyncio.to_thread(fsops.Upload, root, target, temp)
    except OSError as err:
        raise ApiError("bad_path", "a file is in the way of that path") from err
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError("too_large", f"an upload is at most {limit} bytes", status=413)
            await asyncio.to_thread(out.write, chunk)
        await asyncio.to_thread(out.commit)
    finally:
        await asyncio.to_thread(out.close)
    await listing.refresh(svc.pool, project_id, root, path)
    return JSONResponse({"path": path, "size": size}, status_code=201)


routes: list[BaseRoute] = [
    Route("/api/projects/{project_id}/upload/{path:path}", upload, methods=["PUT"]),
    Route("/api/projects/{project_id}/download/{path:path}", download, methods=["GET", "HEAD"]),
    Route("/raw/{project_id}/{path:path}", raw, methods=["GET", "HEAD"]),
]
