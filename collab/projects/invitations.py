"""Collaborators by email: an owner adds an account by its email, or, when no account has
it yet, records an invitation that the account's creation accepts (a trigger on
`accounts`, migration 0008, so sign-up and `collab user create` both honour it).
The answer is the same either way, so the call cannot tell whether an email has an account."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from collab.errors import ApiError
from collab.kernels.access import project_id_arg
from collab.projects import store
from collab.services import Services
from collab.ws.connection import Connection
from collab.ws.dispatch import Api

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PENDING = 200


def _only(args: dict[str, Any], *allowed: str) -> None:
    extra = set(args) - {"project_id", *allowed}
    if extra:
        raise ApiError("bad_args", f"unexpected arguments: {', '.join(sorted(extra))}")


async def _owner(conn: Connection, args: dict[str, Any]) -> Any:
    project_id = project_id_arg(args)
    role = await store.role(conn.services.pool, project_id, conn.account.account_id)
    if role != "owner":
        raise ApiError(
            "forbidden", "only the project's owner manages its collaborators", status=403
        )
    return project_id


def _email(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) > 320 or not _EMAIL.match(raw.strip()):
        raise ApiError("bad_email", "an email address is required")
    return raw.strip().lower()


async def invite(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    _only(args, "email")
    email = _email(args.get("email"))
    project_id = await _owner(conn, args)
    async with conn.services.pool.acquire() as db, db.transaction():
        account_id = await db.fetchval(
            "SELECT account_id FROM accounts WHERE lower(email) = $1", email
        )
        if account_id is not None:
            await db.execute(
                """INSERT INTO project_users (project_id, account_id, role)
                   VALUES ($1, $2, 'collaborator') ON CONFLICT DO NOTHING""",
                project_id,
                account_id,
            )
        else:
            pending = await db.fetchval(
                "SELECT count(*) FROM invitations WHERE project_id = $1", project_id
            )
            if pending >= MAX_PENDING:
                raise ApiError("too_many_invitations", f"at most {MAX_PENDING} pending invitations")
            await db.execute(
                """INSERT INTO invitations (project_id, email, invited_by) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING""",
                project_id,
                email,
                conn.account.account_id,
            )
    return {"ok": True}


async def invitations(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    _only(args)
    project_id = await _owner(conn, args)
    rows = await conn.services.pool.fetch(
        "SELECT email, created FROM invitations WHERE project_id = $1 ORDER BY created",
        project_id,
    )
    return {
        "invitations": [{"email": r["email"], "created": r["created"].isoformat()} for r in rows]
    }


async def uninvite(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    _only(args, "email")
    email = _email(args.get("email"))
    project_id = await _owner(conn, args)
    await conn.services.pool.execute(
        "DELETE FROM invitations WHERE project_id = $1 AND email = $2", project_id, email
    )
    return {"ok": True}


async def set_role(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    """project.set_role {project_id, account_id, role}: an owner makes a member a
    `collaborator` or a `viewer` (sees everything live, changes nothing). Owners' rows
    are not changed this way. Open connections follow the change at once."""
    _only(args, "account_id", "role")
    role = args.get("role")
    if role not in ("collaborator", "viewer"):
        raise ApiError("bad_args", "`role` is 'collaborator' or 'viewer'")
    raw = args.get("account_id")
    try:
        account_id = UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        account_id = None
    if account_id is None:
        raise ApiError("bad_args", "`account_id` is a UUID string")
    project_id = await _owner(conn, args)
    changed = await conn.services.pool.fetchval(
        """UPDATE project_users SET role = $3
           WHERE project_id = $1 AND account_id = $2 AND role <> 'owner' RETURNING 1""",
        project_id,
        account_id,
        role,
    )
    if not changed:
        raise ApiError("not_found", "no such member (an owner's role is not changed)", 404)
    return {"account_id": str(account_id), "role": role}


@contextlib.asynccontextmanager
async def component(services: Services, api: Api) -> AsyncIterator[None]:
    api.register_call("project.invite", invite)
    api.register_call("project.invitations", invitations)
    api.register_call("project.uninvite", uninvite)
    api.register_call("project.set_role", set_role)
    yield
