"""GET /api/projects/{project_id}/latex/pdf?path=<main .tex>: a build's PDF, to project
members only, with an ETag so a preview refetches only a PDF that changed."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path, PurePosixPath
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.auth.identity import identify, origin_allowed
from collab.errors import ApiError
from collab.http import OpenFileResponse, api, services
from collab.kernels.access import relative_path
from collab.latex import files
from collab.projects import store


def _open(root: Path, relative: str) -> int | None:
    """A descriptor of the PDF (opened without following links), or None."""
    with files.open_inside(root, relative) as fd:
        return None if fd is None else os.dup(fd)


def _matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


@api
async def latex_pdf(request: Request) -> Response:
    svc = services(request)
    identity, reason = await identify(request, svc.sessions, svc.keys)
    if identity is None:
        raise ApiError("unauthenticated", reason or "not signed in", status=401)
    if identity.via == "cookie" and not origin_allowed(request, svc.settings):
        raise ApiError("forbidden_origin", "requests from this origin are not allowed", 403)
    try:
        project_id = UUID(request.path_params["project_id"])
    except ValueError:
        raise ApiError("bad_args", "the project id is a UUID") from None
    path = relative_path(request.query_params.get("path"), ".tex")
    if await store.role(svc.pool, project_id, identity.account.account_id) is None:
        raise ApiError("forbidden", "you are not a member of this project", status=403)
    directory = store.project_dir(svc.settings.projects_dir, project_id)
    fd = await asyncio.to_thread(_open, directory, files.outputs(path, ".pdf"))
    if fd is None:
        raise ApiError("no_pdf", "no PDF: build the file first", status=404)
    try:
        st = os.fstat(fd)
        limit = svc.settings.latex_max_pdf_bytes
        if st.st_size > limit:
            raise ApiError("too_large", f"the PDF is over {limit} bytes", status=413)
        etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        headers = {
            "ETag": etag,
            # Always revalidated: the PDF changes with every build.
            "Cache-Control": "private, no-cache",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        if _matches(request.headers.get("if-none-match"), etag):
            os.close(fd)
            return Response(status_code=304, headers=headers)
        name = PurePosixPath(path).stem + ".pdf"
        headers["Content-Disposition"] = f'inline; filename="{_quoted(name)}"'
        # Streamed from the descriptor: a sparse file of any size costs no memory.
        return OpenFileResponse(fd, media_type="application/pdf", headers=headers)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def _quoted(name: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)


routes = [Route("/api/projects/{project_id}/latex/pdf", latex_pdf, methods=["GET"])]
