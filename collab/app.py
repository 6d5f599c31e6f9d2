"""The Starlette app factory: routes and lifespan, nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from collab.auth.ratelimit import LoginLimiter
from collab.auth.revocation import revocation_component
from collab.auth.routes import routes as auth_routes
from collab.auth.tokens import ApiKeys, Sessions
from collab.config import Settings
from collab.db import embedded, migrate, pool
from collab.files.calls import component as files_component
from collab.files.routes import routes as files_routes
from collab.kernels.calls import component as kernels_component
from collab.latex.calls import latex_component
from collab.latex.routes import routes as latex_routes
from collab.logs import RequestLog
from collab.projects.invitations import component as invitations_component
from collab.projects.lifecycle import lifecycle_component
from collab.projects.presence import presence_component
from collab.sandbox.service import sandbox_component
from collab.services import Services
from collab.sync.component import ROUTE as SYNC_ROUTE
from collab.sync.component import sync_component
from collab.tables.component import tables_component
from collab.terminals.calls import component as terminals_component
from collab.web.routes import routes as web_routes
from collab.ws.dispatch import Api
from collab.ws.endpoint import ws_endpoint
from collab.ws.wire import CaptureProtocol

log = logging.getLogger(__name__)

# A component is started after the database and the /ws registry exist, and stopped in
# reverse order: kernels and terminals stop before the document rooms close, and the
# rooms flush before the table engine stops.
Component = Callable[[Services, Api], AbstractAsyncContextManager[None]]
COMPONENTS: list[Component] = [
    tables_component,
    revocation_component,
    sandbox_component,
    presence_component,
    sync_component,
    kernels_component,
    terminals_component,
    latex_component,
    lifecycle_component,
    files_component,
    invitations_component,
]
EXTRA_ROUTES: list[BaseRoute] = [SYNC_ROUTE]


def load_secret(settings: Settings) -> str:
    if settings.secret:
        return settings.secret
    path = settings.data_dir / "secret"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Created 0600 and exclusively, so two processes starting at once agree on one secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


async def resolve_database(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return await embedded.start_embedded(settings.data_dir)


async def healthz(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        await asyncio.wait_for(services.pool.fetchval("SELECT 1"), timeout=2)
    except Exception:
        return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
    return JSONResponse({"ok": True})


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(settings.projects_dir.mkdir, parents=True, exist_ok=True)
        url = await resolve_database(settings)
        await migrate.migrate(url)
        db = await pool.create_pool(url, settings.db_pool_min, settings.db_pool_max)
        services = Services(
            settings=settings,
            pool=db,
            database_url=url,
            sessions=Sessions(db, load_secret(settings), settings.session_max_age),
            keys=ApiKeys(db),
            limiter=LoginLimiter(db, settings),
        )
        api = Api()
        app.state.services = services
        app.state.api = api
        try:
            async with contextlib.AsyncExitStack() as stack:
                for component in COMPONENTS:
                    await stack.enter_async_context(component(services, api))
                log.info("server ready", extra={"event": "server.ready"})
                yield
        finally:
            await db.close()
            log.info("server stopped", extra={"event": "server.stopped"})

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        *auth_routes,
        *latex_routes,
        WebSocketRoute("/ws", ws_endpoint),
        *EXTRA_ROUTES,
        *files_routes,
        # Last: the app's client routes never shadow an API path.
        *web_routes,
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(CaptureProtocol), Middleware(RequestLog)],
    )
