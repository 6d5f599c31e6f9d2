"""Routes of the browser app: the shell page for every client route and the hashed assets."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from collab.auth.identity import identify
from collab.auth.routes import account_json
from collab.auth.tokens import SESSION_COOKIE
from collab.db.errors import database_unavailable
from collab.services import Services
from collab.web.headers import html_headers

# frontend/dist beside the collab package (a source checkout or an editable install).
DIST_DIR = Path(__file__).resolve().parent.parent.parent / "frontend" / "dist"
log = logging.getLogger(__name__)
_ASSET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
IMMUTABLE = "public, max-age=31536000, immutable"

_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>collab: the app is not built</title></head>
<body style="font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em">
<h1>The browser app is not built</h1>
<p>The server is running, but <code>frontend/dist</code> does not exist.
Build the app with <code>make install</code> (it runs <code>npm ci &amp;&amp; npm run build</code>
in <code>frontend/</code>; Node.js and npm must be installed), or point the
<code>COLLAB_WEB_DIR</code> setting at a built copy.</p>
<p>The API (<code>/ws</code>, <code>/yjs</code>, <code>/api</code>) works without it.</p>
</body></html>
"""

# Paths the app routes on the client; each answers with index.html so reload works.
CLIENT_ROUTES = ["/", "/signin", "/signup", "/account", "/projects", "/projects/{rest:path}"]


def web_dir(request: Request) -> Path:
    services: Services = request.app.state.services
    return services.settings.web_dir or DIST_DIR


async def app_shell(request: Request) -> Response:
    services: Services = request.app.state.services
    headers = html_headers(services.settings)
    index = web_dir(request) / "index.html"
    try:
        body = index.read_bytes()
    except OSError:
        return HTMLResponse(_NOT_BUILT, status_code=503, headers=headers)
    account = await _signed_in(request, services)
    if account is not None:
        # The page carries who is signed in, so the app starts its connections at once
        # instead of asking /api/auth/me first (one round trip less on every cold load).
        # Never stored: the page now names an account.
        body = body.replace(b'<div id="app">', account + b'<div id="app">', 1)
        headers["Cache-Control"] = "no-store"
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


async def _signed_in(request: Request, services: Services) -> bytes | None:
    """The session cookie's account as an inert JSON script element, or None."""
    if not request.cookies.get(SESSION_COOKIE):
        return None
    try:
        identity, _ = await identify(request, services.sessions, services.keys)
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning("database unreachable", extra={"event": "web.unavailable"})
        return None  # the app asks /api/auth/me itself, and retries
    if identity is None or identity.via != "cookie":
        return None
    text = json.dumps(account_json(identity.account))
    # Inside <script>: nothing that could close the element or open a comment.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return b'<script type="application/json" id="collab-account">' + text.encode() + b"</script>"


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    root = web_dir(request) / "assets"
    if not _ASSET_NAME.match(name) or name.startswith("."):
        return Response("not found", status_code=404, media_type="text/plain")
    path = root / name
    if not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    headers = {
        "Cache-Control": IMMUTABLE,
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    gz = path.with_name(name + ".gz")
    if "gzip" in request.headers.get("accept-encoding", "") and gz.is_file():
        response = FileResponse(gz, headers=headers)
        response.headers["Content-Encoding"] = "gzip"
        response.media_type = None
        # FileResponse guessed the type from ".gz"; the browser needs the asset's own.
        response.headers["Content-Type"] = _content_type(name)
        return response
    return FileResponse(path, headers=headers, media_type=_content_type(name))


async def service_worker(request: Request) -> Response:
    path = web_dir(request) / "sw.js"
    if not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    # Never cached by HTTP: the browser checks it on every load, so a new build takes over.
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return FileResponse(path, headers=headers, media_type="text/javascript; charset=utf-8")


def _content_type(name: str) -> str:
    for suffix, kind in (
        (".js", "text/javascript; charset=utf-8"),
        (".css", "text/css; charset=utf-8"),
        (".map", "application/json"),
        (".woff2", "font/woff2"),
        (".svg", "image/svg+xml"),
    ):
        if name.endswith(suffix):
            return kind
    return "application/octet-stream"


routes: list[BaseRoute] = [
    *(Route(path, app_shell, methods=["GET", "HEAD"]) for path in CLIENT_ROUTES),
    Route("/assets/{name}", asset, methods=["GET", "HEAD"]),
    Route("/sw.js", service_worker, methods=["GET", "HEAD"]),
]
