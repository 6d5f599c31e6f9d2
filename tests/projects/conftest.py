"""Lifecycle test helpers: a project with a second member, a projects changefeed that
collects state transitions, and a notebook file the real document rooms load."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import UUID

from collab.projects import store

QUERY = {
    "projects": [
        {
            "project_id": None,
            "state": None,
            "state_error": None,
            "state_changed": None,
            "action": None,
        }
    ]
}


async def new_project(server: Any, owner: Any, *members: Any) -> UUID:
    pool = server.services.pool
    project = await store.create_project(
        pool, server.services.settings.projects_dir, UUID(owner.account_id), "p"
    )
    for member in members:
        await pool.execute(
            "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, 'collaborator')",
            project,
            UUID(member.account_id),
        )
    return project


async def subscribe(ws: Any) -> str:
    answer = await ws.request({"query": QUERY, "changes": True})
    assert "feed" in answer, answer
    return str(answer["feed"])


async def states_until(
    ws: Any, feed: str, project: UUID, last: str, timeout: float = 60, since: str = ""
) -> list[dict[str, Any]]:
    """The project's rows from the feed each time its state changed (from `since`, by
    default the opposite end of the cycle), until `last`."""
    since = since or ("stopped" if last == "running" else "running")
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1]["state"] != last:
        msg = json.loads(await asyncio.wait_for(ws.conn.recv(), deadline - time.monotonic()))
        new = msg.get("new_val") if msg.get("feed") == feed else None
        if new and new["project_id"] == str(project):
            if (seen[-1]["state"] if seen else since) != new["state"]:
                seen.append(new)
    return seen


def put_notebook(server: Any, project: UUID, path: str, source: str) -> None:
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "id": "c",
                "source": source,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    directory = store.project_dir(server.services.settings.projects_dir, project)
    (directory / path).write_text(json.dumps(nb))


async def wait_until(predicate: Any, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
