"""The sync component: the RoomManager on services.extra["rooms"], the /yjs route, and
the history calls on /ws (doc.history, doc.version, doc.restore)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from starlette.routing import WebSocketRoute

from collab.errors import ApiError
from collab.services import Services
from collab.sync import history, kinds, paths
from collab.sync.endpoint import may_open, yjs_endpoint
from collab.sync.manager import RoomManager
from collab.ws.connection import Connection
from collab.ws.dispatch import Api

ROUTE = WebSocketRoute("/yjs/{project_id}/{path:path}", yjs_endpoint)
MAX_VERSIONS = 1000
# Versions are bigint sequence numbers in PostgreSQL.
MAX_VERSION = 2**63 - 1


@contextlib.asynccontextmanager
async def sync_component(services: Services, api: Api) -> AsyncIterator[None]:
    manager = RoomManager(services)
    await manager.start()
    services.extra["rooms"] = manager
    calls = _HistoryCalls(services, manager)
    api.register_call("doc.history", calls.history)
    api.register_call("doc.version", calls.version)
    api.register_call("doc.restore", calls.restore)
    try:
        yield
    finally:
        await manager.stop()


class _HistoryCalls:
    def __init__(self, services: Services, manager: RoomManager) -> None:
        self.services = services
        self.manager = manager

    async def _document(
        self, conn: Connection, args: dict[str, Any], allowed: set[str], write: bool = False
    ) -> tuple[UUID, str, int | None]:
        extra = set(args) - allowed
        if extra:
            raise ApiError("bad_args", f"unexpected arguments: {', '.join(sorted(extra))}")
        raw_project, raw_path = args.get("project_id"), args.get("path")
        if not isinstance(raw_project, str) or not isinstance(raw_path, str):
            raise ApiError("bad_args", "`project_id` and `path` are strings")
        try:
            project_id = UUID(raw_project)
        except ValueError:
            raise ApiError("bad_args", "`project_id` is a UUID") from None
        try:
            path = paths.normalize(raw_path)
        except paths.BadPath as exc:
            raise ApiError("bad_path", str(exc)) from None
        access = await may_open(self.services, conn.account, project_id)
        if not access:
            raise ApiError("forbidden", "no such project, or not a member", status=403)
        if write and access == "viewer":
            raise ApiError("forbidden", "viewers cannot change this project", status=403)
        doc_id = await self.manager.store.find_doc(project_id, path)
        return project_id, path, doc_id

    @staticmethod
    def _version_arg(args: dict[str, Any]) -> int:
        version = args.get("version")
        if (
            isinstance(version, bool)
            or not isinstance(version, int)
            or not 0 < version <= MAX_VERSION
        ):
            raise ApiError("bad_args", "`version` is a positive integer from doc.history")
        return version

    async def history(self, conn: Connection, args: dict[str, Any]) -> Any:
        """doc.history {project_id, path, limit?} -> {versions: [...]}, newest first."""
        limit = args.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_VERSIONS:
            raise ApiError("bad_args", f"`limit` is an integer from 1 to {MAX_VERSIONS}")
        _, _, doc_id = await self._document(conn, args, {"project_id", "path", "limit"})
        if doc_id is None:
            return {"versions": []}
        rows = await self.manager.store.row_meta(doc_id)
        found = history.versions(
            rows, datetime.now(UTC), self.services.settings.sync_history_seconds
        )
        names = await self._names({a for v in found for a in v["authors"]})
        for v in found:
            v["authors"] = [{"account_id": a, "name": names.get(a, "")} for a in v["authors"]]
        return {"versions": list(reversed(found))[:limit]}

    async def _names(self, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        records = await self.services.pool.fetch(
            "SELECT account_id, name FROM accounts WHERE account_id = ANY($1::uuid[])",
            [UUID(i) for i in ids],
        )
        return {str(r["account_id"]): r["name"] for r in records}

    async def _content_at(self, doc_id: int | None, kind: str, version: int) -> Any:
        if doc_id is None:
            raise ApiError("not_found", "the document has no history", status=404)
        rows = await self.manager.store.rows(doc_id, upto=version)
        # Every stored row is a point in time; doc.history lists a selection of them.
        if not rows or rows[-1].seq != version:
            raise ApiError("not_found", "no such version", status=404)
        # Built and read in one worker thread: a Doc stays on the thread that made it.
        return await asyncio.to_thread(lambda: kinds.content(history.build(rows), kind))

    async def version(self, conn: Connection, args: dict[str, Any]) -> Any:
        """doc.version {project_id, path, version} -> {version, kind, content}."""
        version = self._version_arg(args)
        _, path, doc_id = await self._document(conn, args, {"project_id", "path", "version"})
        kind = kinds.kind_of(path)
        return {
            "version": version,
            "kind": kind,
            "content": await self._content_at(doc_id, kind, version),
        }

    async def restore(self, conn: Connection, args: dict[str, Any]) -> Any:
        """doc.restore {project_id, path, version}: a new change that makes the document
        equal that version; everyone in the room receives it. Answers once stored."""
        version = self._version_arg(args)
        project_id, path, doc_id = await self._document(
            conn, args, {"project_id", "path", "version"}, write=True
        )
        kind = kinds.kind_of(path)
        if not kinds.mirrored(kind):
            raise ApiError("bad_args", "terminal documents are not restored", status=400)
        value = await self._content_at(doc_id, kind, version)
        room = await self.manager.open(project_id, path)
        try:
            room.apply_as(conn.account.account_id, lambda: kinds.set_content(room.doc, kind, value))
            await room.store.barrier()
        finally:
            await self.manager.close(room)
        return {"restored": version}
