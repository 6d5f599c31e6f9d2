"""SyncTeX through the `synctex` command in the project's sandbox: forward search (a
source line → a page and a position in the PDF) and inverse search (a page and a position
→ a source file and line)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import PurePosixPath
from typing import Any

from collab.errors import ApiError
from collab.latex import files
from collab.latex.runner import project_path
from collab.sandbox.jail import Jail

TIMEOUT = 20.0
MAX_OUTPUT = 256 * 1024


async def forward(jail: Jail, main: str, source: str, line: int, column: int) -> dict[str, Any]:
    """Where `source`:`line` is in the PDF of the main file `main`."""
    pdf = f"{jail.home}/{files.outputs(main, '.pdf')}"
    fields = await _run(jail, ["view", "-i", f"{line}:{column}:{jail.home}/{source}", "-o", pdf])
    try:
        return {
            "page": int(fields["Page"]),
            "x": float(fields["x"]),
            "y": float(fields["y"]),
            "width": float(fields.get("W", 0)),
            "height": float(fields.get("H", 0)),
        }
    except (KeyError, ValueError):
        raise ApiError("no_position", "SyncTeX knows no position for this line", 404) from None


async def inverse(jail: Jail, main: str, page: int, x: float, y: float) -> dict[str, Any]:
    """Which source file and line made the point (x, y) of `page` (in PDF points from
    the page's top left, as `synctex edit` takes them)."""
    pdf = f"{jail.home}/{files.outputs(main, '.pdf')}"
    fields = await _run(jail, ["edit", "-o", f"{page}:{x:g}:{y:g}:{pdf}"])
    try:
        name = fields["Input"]
        line = int(fields["Line"])
        column = int(fields.get("Column", -1))
    except (KeyError, ValueError):
        raise ApiError("no_position", "SyncTeX knows no source for this point", 404) from None
    folder = PurePosixPath(main).parent
    return {"file": project_path(name, folder, jail.home), "line": line, "column": column}


async def _run(jail: Jail, args: list[str]) -> dict[str, str]:
    if shutil.which("synctex") is None:
        raise ApiError(
            "tex_missing",
            "synctex is not installed on the server (Debian package texlive-binaries)",
            503,
        )
    proc = await asyncio.create_subprocess_exec(
        *jail.command(["synctex", *args]),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd="/" if jail.isolated else str(jail.directory),
        env=jail.environment(),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        out = await asyncio.wait_for(proc.stdout.read(MAX_OUTPUT), TIMEOUT)
        await asyncio.wait_for(proc.wait(), TIMEOUT)
    except TimeoutError:
        await _kill(proc)
        raise ApiError("synctex_failed", "synctex did not answer in time", 504) from None
    except BaseException:
        await _kill(proc)
        raise
    return _fields(out.decode("utf-8", "replace"))


async def _kill(proc: Any) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await asyncio.shield(proc.wait())


def _fields(text: str) -> dict[str, str]:
    """The first result's `Key:value` lines."""
    fields: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        if line.startswith("SyncTeX result begin"):
            inside = True
            continue
        if line.startswith("SyncTeX result end"):
            break
        key, sep, value = line.partition(":")
        if inside and sep and key not in fields:
            fields[key] = value
    return fields
