"""Creating projects and answering membership questions."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import asyncpg

from collab.errors import ApiError

# Roles (project_users.role): an owner manages the project and its members; a
# collaborator changes everything else; a viewer sees everything live and changes nothing.
ROLES = ("owner", "collaborator", "viewer")
WRITERS = frozenset({"owner", "collaborator"})


def project_dir(projects_dir: Path, project_id: UUID) -> Path:
    return projects_dir / str(project_id)


async def create_project(
    conn: asyncpg.Pool | asyncpg.Connection,
    projects_dir: Path,
    owner: UUID,
    title: str = "",
    description: str = "",
) -> UUID:
    """Insert the project and its owner in one transaction, then make its directory."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            return await create_project(c, projects_dir, owner, title, description)
    async with conn.transaction():
        project_id: UUID = await conn.fetchval(
            "INSERT INTO projects (title, description) VALUES ($1, $2) RETURNING project_id",
            title,
            description,
        )
        await conn.execute(
            "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, 'owner')",
            project_id,
            owner,
        )
    project_dir(projects_dir, project_id).mkdir(parents=True, exist_ok=True)
    return project_id


async def role(
    conn: asyncpg.Pool | asyncpg.Connection, project_id: UUID, account_id: UUID
) -> str | None:
    """The account's role in a live project ('owner' / 'collaborator' / 'viewer'), or None."""
    value: str | None = await conn.fetchval(
        """SELECT pu.role FROM project_users pu JOIN projects p USING (project_id)
           WHERE pu.project_id = $1 AND pu.account_id = $2 AND NOT p.deleted""",
        project_id,
        account_id,
    )
    return value


def check_role(value: str | None, write: bool) -> None:
    """ApiError('forbidden') for a non-member, and for a viewer when the act changes
    the project (never trust the browser to hide the button)."""
    if value is None:
        # Same answer for a missing project as for someone else's: no probing for ids.
        raise ApiError("forbidden", "you are not a member of this project", status=403)
    if write and value not in WRITERS:
        raise ApiError("forbidden", "viewers cannot change this project", status=403)
