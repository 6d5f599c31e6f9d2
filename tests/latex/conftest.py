"""LaTeX test fixtures: a project, files written into it as its user would, and waiting
for a build's row to reach an end."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from collab.projects import store

DONE = ("succeeded", "failed", "cancelled")


@pytest.fixture
def settings(settings: Any) -> Any:
    # A merge window wide enough that two requests sent together land in it on a
    # loaded machine.
    return settings.replace(latex_merge_ms=1500)


@pytest.fixture
async def project(server: Any, user: Any) -> UUID:
    settings = server.services.settings
    return await store.create_project(
        server.services.pool, settings.projects_dir, UUID(user.account_id), "p"
    )


def put(server: Any, project: UUID, path: str, text: str) -> Path:
    """Write a project file owned like the project directory (its sandbox user once a
    sandbox adopted it), so a build may write beside it."""
    root = store.project_dir(server.services.settings.projects_dir, project)
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    if os.geteuid() == 0:
        st = root.stat()
        for item in [target, *target.relative_to(root).parents]:
            os.chown(root / item, st.st_uid, st.st_gid)
    return target


async def row(server: Any, project: UUID, path: str) -> Any:
    return await server.services.pool.fetchrow(
        "SELECT * FROM latex_builds WHERE project_id = $1 AND path = $2", project, path
    )


async def finished(server: Any, project: UUID, path: str, build: int, timeout: float = 120) -> Any:
    """The row of build number `build` once it ended."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await row(server, project, path)
        if found is not None and found["build"] >= build and found["status"] in DONE:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"build {build} of {path} did not end: {dict(found or {})}")
        await asyncio.sleep(0.1)


ARTICLE = r"""\documentclass{article}
\usepackage{amsmath}
\usepackage{graphicx}
\usepackage{hyperref}
\begin{document}
\section{Introduction}\label{sec:intro}
Hello, world. See Section~\ref{sec:intro}.
\begin{equation}
  e^{i\pi} + 1 = 0
\end{equation}
\input{chapter}
\end{document}
"""

CHAPTER = r"""A second file.

This line is the one we search for.

The end.
"""
