"""The `files` table: one row per file and folder of a project, reconciled with the disk
by a scan and kept current by the watcher (collab/files/watcher.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import stat as st_mod
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import asyncpg

# Folders whose contents are not listed (the folder itself is): they are large and
# machine-made, and nobody opens their files from a tree.
OPAQUE = frozenset({".git", "node_modules", "__pycache__", ".ipynb_checkpoints", ".venv", ".cache"})
MAX_ENTRIES = 10000


@dataclass(frozen=True)
class Entry:
    path: str
    kind: str
    size: int
    modified: dt.datetime


def stat_entry(root: Path, path: str) -> Entry | None:
    """The entry for one path, or None when it no longer exists (symlinks not followed)."""
    try:
        st = (root / path).lstat()
    except OSError:
        return None
    if st_mod.S_ISDIR(st.st_mode):
        kind, size = "dir", 0
    elif st_mod.S_ISREG(st.st_mode) or st_mod.S_ISLNK(st.st_mode):
        kind, size = "file", st.st_size
    else:
        return None
    return Entry(path, kind, size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))


def listed(path: str) -> bool:
    """False for paths inside an opaque folder and for uploads still being written."""
    parts = path.split("/")
    return not any(part in OPAQUE for part in parts[:-1]) and not parts[-1].startswith(
        ".collab-upload-"
    )


def scan(root: Path) -> list[Entry]:
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        if rel and not listed(rel + "/x"):
            dirnames[:] = []
            continue
        for name in sorted(dirnames) + sorted(filenames):
            path = f"{rel}/{name}" if rel else name
            entry = stat_entry(root, path) if listed(path) else None
            if entry is not None:
                entries.append(entry)
            if len(entries) >= MAX_ENTRIES:
                return entries
    return entries


async def reconcile(pool: asyncpg.Pool, project_id: UUID, root: Path) -> int:
    """Make the project's rows equal the disk, writing only the differences (so the
    changefeed carries only real changes)."""
    entries = await asyncio.to_thread(scan, root)
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT path, kind, size, modified FROM files WHERE project_id = $1", project_id
        )
        have = {r["path"]: (r["kind"], r["size"], r["modified"]) for r in rows}
        want = {e.path: e for e in entries}
        gone = [p for p in have if p not in want]
        if gone:
            await conn.execute(
                "DELETE FROM files WHERE project_id = $1 AND path = ANY($2::text[])",
                project_id,
                gone,
            )
        changed = [e for e in entries if have.get(e.path) != (e.kind, e.size, e.modified)]
        if changed:
            await conn.executemany(
                _UPSERT, [(project_id, e.path, e.kind, e.size, e.modified) for e in changed]
            )
    return len(entries)


_UPSERT = """INSERT INTO files (project_id, path, kind, size, modified) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (project_id, path) DO UPDATE
             SET kind = EXCLUDED.kind, size = EXCLUDED.size, modified = EXCLUDED.modified
             WHERE (files.kind, files.size, files.modified)
                   IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.size, EXCLUDED.modified)"""


async def refresh(pool: asyncpg.Pool, project_id: UUID, root: Path, path: str) -> None:
    """Bring one path's row (and, for a folder that vanished, its descendants') up to date."""
    entry = await asyncio.to_thread(stat_entry, root, path)
    if entry is not None and listed(path):
        exists = await pool.fetchval("SELECT 1 FROM projects WHERE project_id = $1", project_id)
        if exists:
            await pool.execute(
                _UPSERT, project_id, entry.path, entry.kind, entry.size, entry.modified
            )
        return
    await pool.execute(
        """DELETE FROM files WHERE project_id = $1
           AND (path = $2 OR starts_with(path, $2 || '/'))""",
        project_id,
        path,
    )
