"""Kernel test fixtures: a project owned by the test user, and an in-process room manager
with the interface of collab.sync's (open/close, Room.doc, Room.kind) so that execution is
tested on real pycrdt documents. A "viewer" is a second Doc kept in sync by exchanging
pycrdt updates, as a second client would be."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest
from jupyter_ydoc import YNotebook
from pycrdt import Doc

from collab.projects import store


@dataclass
class Room:
    doc: Doc
    kind: str
    holders: int = 0


@dataclass
class MemoryRooms:
    rooms: dict[tuple[UUID, str], Room] = field(default_factory=dict)

    async def open(self, project_id: UUID, path: str) -> Room:
        key = (project_id, path)
        room = self.rooms.get(key)
        if room is None:
            kind = (
                "notebook"
                if path.endswith(".ipynb")
                else "terminal"
                if path.endswith(".term")
                else "text"
            )
            room = self.rooms[key] = Room(Doc(), kind)
        room.holders += 1
        return room

    async def close(self, room: Room) -> None:
        room.holders -= 1


def notebook(cells: list[tuple[str, str]], kernel: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if kernel:
        metadata["kernelspec"] = {"name": kernel, "display_name": kernel}
    return {
        "cells": [
            {
                "cell_type": "code",
                "id": cid,
                "source": src,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
            for cid, src in cells
        ],
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def viewer(doc: Doc) -> Doc:
    """A replica that receives every update of `doc`, as a connected client would."""
    replica: Doc = Doc()
    replica.apply_update(doc.get_update())
    doc.observe(lambda event: replica.apply_update(event.update))
    return replica


def cells(doc: Doc) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in YNotebook(doc).get()["cells"]}


def kernel_state(doc: Doc) -> dict[str, Any]:
    from pycrdt import Map

    return dict(doc.get("kernel", type=Map).to_py() or {})


async def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


def text_of(cell: dict[str, Any]) -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")


@pytest.fixture
def rooms(server: Any) -> MemoryRooms:
    rooms = MemoryRooms()
    server.services.extra["rooms"] = rooms
    return rooms


@pytest.fixture
async def project(server: Any, user: Any) -> UUID:
    settings = server.services.settings
    return await store.create_project(
        server.services.pool, settings.projects_dir, UUID(user.account_id), "p"
    )


async def put_notebook(rooms: MemoryRooms, project_id: UUID, path: str, nb: dict[str, Any]) -> Doc:
    room = await rooms.open(project_id, path)
    YNotebook(room.doc).set(nb)
    await rooms.close(room)
    return room.doc


def states(doc: Doc) -> dict[str, Any]:
    from pycrdt import Array

    return {c["id"]: c.get("execution_state") for c in doc.get("cells", type=Array).to_py()}
