"""Revocation of open connections: which live WebSockets rest on which session, API key,
account and project membership, and closing them when the change log says that one is
gone (sign-out, key revoked, account deleted, member removed, project deleted).

Every server process reads the change log (collab/tables/engine.py), so every process
closes its own connections. Published as services.extra["revocations"]."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from collab.auth.identity import Identity
from collab.projects.store import role
from collab.services import Services
from collab.tables.state import Change
from collab.ws.dispatch import Api

log = logging.getLogger(__name__)

# Close codes, documented in docs/protocol.md.
CLOSE_REVOKED = 4401  # the session or key ended, or the account was deleted
CLOSE_ACCESS_LOST = 4403  # /yjs: no longer a member of the document's project

# A credential revoked before its connection registered (the change was dispatched
# between the connection's authentication and its watch) is remembered this long.
RECENT_SECONDS = 600.0

Closer = Callable[[int, str], None]
ProjectLostHook = Callable[[str, str | None], None]


@dataclass(eq=False)
class Watch:
    """One live connection's dependencies. `revoked` is set, and the connection closed,
    the moment the signal arrives; a connection checks it before applying anything."""

    account_id: str
    credential: str
    is_admin: bool
    project_id: str | None = None
    # The account may only look (a viewer): /yjs drops its document updates. Follows
    # role changes in the change log while the connection is open.
    read_only: bool = False
    role_changed: bool = False  # a role change arrived after the watch was made
    revoked: bool = False
    code: int = 0
    reason: str = ""
    _closer: Closer | None = None
    _expiry: asyncio.TimerHandle | None = field(default=None, repr=False)

    def set_closer(self, closer: Closer) -> None:
        """Who closes the connection; called at once if it was revoked meanwhile."""
        self._closer = closer
        if self.revoked:
            closer(self.code, self.reason)

    def revoke(self, code: int, reason: str) -> None:
        if self.revoked:
            return
        self.revoked, self.code, self.reason = True, code, reason
        if self._expiry is not None:
            self._expiry.cancel()
        if self._closer is not None:
            self._closer(code, reason)


class Revocations:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_credential: dict[str, set[Watch]] = {}
        self._by_account: dict[str, set[Watch]] = {}
        self._by_project: dict[str, set[Watch]] = {}
        self._recent: dict[str, float] = {}
        self._project_lost: list[ProjectLostHook] = []

    def attach(self, tables: Any) -> None:
        """Listen to the change log through the table engine's listener."""
        tables.on_change("sessions", self._on_session)
        tables.on_change("api_keys", self._on_key)
        tables.on_change("accounts", self._on_account)
        tables.on_change("project_users", self._on_membership)
        tables.on_change("projects", self._on_project)

    def on_project_lost(self, hook: ProjectLostHook) -> None:
        """Call hook(project_id, account_id) when an account loses a project (None: every
        account, the project was deleted), so that parts which hand out a project's data
        over /ws (terminal output) stop."""
        self._project_lost.append(hook)

    # ---- connections ----

    def watch(self, identity: Identity, project_id: str | None = None) -> Watch:
        """Register a connection (before its project membership is checked, so that a
        removal committed after that check always reaches it)."""
        account_id = str(identity.account.account_id)
        w = Watch(account_id, identity.credential, identity.account.is_admin, project_id)
        self._by_credential.setdefault(w.credential, set()).add(w)
        self._by_account.setdefault(account_id, set()).add(w)
        if project_id is not None:
            self._by_project.setdefault(project_id, set()).add(w)
        if self._recent.get(w.credential, 0.0) > time.monotonic():
            w.revoke(CLOSE_REVOKED, "the session or key was revoked")
        elif identity.expires is not None:
            delay = (identity.expires - datetime.now(UTC)).total_seconds()
            w._expiry = asyncio.get_running_loop().call_later(
                max(delay, 0.0), w.revoke, CLOSE_REVOKED, "the session expired"
            )
        return w

    def unwatch(self, w: Watch) -> None:
        if w._expiry is not None:
            w._expiry.cancel()
        _discard(self._by_credential, w.credential, w)
        _discard(self._by_account, w.account_id, w)
        if w.project_id is not None:
            _discard(self._by_project, w.project_id, w)

    def open_connections(self) -> int:
        return sum(len(g) for g in self._by_account.values())

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # ---- signals from the change log ----

    def revoke_credential(self, credential: str, reason: str) -> None:
        now = time.monotonic()
        # Kept in expiry order (insertion order, one fixed lifetime): expired ones are
        # at the front.
        self._recent.pop(credential, None)
        self._recent[credential] = now + RECENT_SECONDS
        while True:
            oldest = next(iter(self._recent))
            if self._recent[oldest] > now:
                break
            del self._recent[oldest]
        self._close(self._by_credential.get(credential, ()), CLOSE_REVOKED, reason)

    def _on_session(self, change: Change) -> None:
        if change.op == "D" and change.old is not None:
            self.revoke_credential(f"session:{change.old['session_id']}", "signed out")

    def _on_key(self, change: Change) -> None:
        row = change.old if change.op == "D" else change.new
        if row is not None and (change.op == "D" or row.get("revoked") is not None):
            self.revoke_credential(f"key:{row['key_id']}", "the API key was revoked")

    def _on_account(self, change: Change) -> None:
        old, new = change.old, change.new
        if change.op == "D" and old is not None:
            # Its memberships, sessions and keys are deleted with it, and logged too.
            self._close(self._by_account.get(old["account_id"], ()), CLOSE_REVOKED, "deleted")
        elif (
            old is not None and new is not None and old.get("is_admin") and not new.get("is_admin")
        ):
            task = asyncio.get_running_loop().create_task(self._demoted(new["account_id"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _demoted(self, account_id: str) -> None:
        """An admin opens any project's documents; one who is no longer an admin keeps
        only those of the projects they are a member of."""
        watches = [w for w in self._by_account.get(account_id, ()) if w.project_id is not None]
        for w in watches:
            w.is_admin = False
        for w in watches:
            try:
                member = await role(self._pool, UUID(w.project_id), UUID(account_id))
            except Exception:
                log.exception("membership check failed", extra={"event": "auth.revoke_error"})
                continue
            if member is None:
                self._close([w], CLOSE_ACCESS_LOST, "no longer an admin")

    def _on_membership(self, change: Change) -> None:
        if change.op == "U" and change.new is not None:
            project_id, account_id = change.new["project_id"], change.new["account_id"]
            viewer = change.new.get("role") == "viewer"
            for w in self._by_project.get(project_id, ()):
                if w.account_id == account_id:
                    w.read_only, w.role_changed = viewer, True
            return
        if change.op != "D" or change.old is None:
            return
        project_id, account_id = change.old["project_id"], change.old["account_id"]
        self._close(
            [
                w
                for w in self._by_project.get(project_id, ())
                if w.account_id == account_id and not w.is_admin
            ],
            CLOSE_ACCESS_LOST,
            "removed from the project",
        )
        self._lost(project_id, account_id)

    def _on_project(self, change: Change) -> None:
        old, new = change.old or {}, change.new or {}
        if (change.op == "D" or new.get("deleted")) and not old.get("deleted"):
            project_id = (change.new or change.old or {}).get("project_id")
            if project_id is None:
                return
            self._close(
                [w for w in self._by_project.get(project_id, ()) if not w.is_admin],
                CLOSE_ACCESS_LOST,
                "the project was deleted",
            )
            self._lost(project_id, None)

    def _lost(self, project_id: str, account_id: str | None) -> None:
        for hook in self._project_lost:
            try:
                hook(project_id, account_id)
            except Exception:
                log.exception("project-lost hook failed", extra={"event": "auth.revoke_error"})

    def _close(self, watches: Any, code: int, reason: str) -> None:
        watches = list(watches)
        for w in watches:
            try:
                w.revoke(code, reason)
            except Exception:
                log.exception("revocation failed", extra={"event": "auth.revoke_error"})
        if watches:
            log.info(
                "connections revoked",
                extra={"event": "auth.revoked", "connections": len(watches), "reason": reason},
            )


def _discard(index: dict[str, set[Watch]], key: str, w: Watch) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(w)
        if not group:
            del index[key]


@contextlib.asynccontextmanager
async def revocation_component(services: Services, api: Api) -> AsyncIterator[None]:
    revocations = Revocations(services.pool)
    revocations.attach(services.extra["tables"])
    services.extra["revocations"] = revocations
    try:
        yield
    finally:
        revocations.stop()
