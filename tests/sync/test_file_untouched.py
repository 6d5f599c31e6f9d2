"""Opening a document and changing nothing never rewrites its file; the first write after
a real change adds cell ids (nbformat 4.5 requires them) but no invented metadata."""

from __future__ import annotations

import asyncio
import json

import nbformat
import pytest
from jupyter_ydoc import YNotebook

from tests.sync.conftest import project_file
from tests.sync.yclient import connect, until


def _code(source: str, **extra) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": source,
        **extra,
    }


NOTEBOOKS = {
    "no-metadata": {
        "cells": [_code("x = 1", id="first")],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    },
    "no-cells": {
        "cells": [],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    },
    "nbformat-4.4": {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "text"]},
            _code("print(1)"),
        ],
        "metadata": {"language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 4,
    },
    "hand-formatted": {
        "cells": [_code("y = 2", id="only", metadata={"tags": ["a"]})],
        "metadata": {"custom": {"k": 1}},
        "nbformat": 4,
        "nbformat_minor": 5,
    },
}


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
async def test_opening_a_notebook_does_not_rewrite_it(server, user, project, name):
    original = NOTEBOOKS[name]
    path = project_file(server, project, f"{name}.ipynb")
    # Not nbformat's own formatting: any rewrite would change the bytes.
    path.write_text(json.dumps(original, indent=3) + "\n\n")
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    rooms = server.services.extra["rooms"]
    async with connect(server, project, f"{name}.ipynb", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        # Well past the mirror debounce (150 ms here) and a file watch pass (1 s).
        await asyncio.sleep(2.0)
        assert path.read_bytes() == data
        assert path.stat().st_mtime_ns == mtime
    await until(lambda: not rooms.rooms)  # unloading writes the file if it changed
    assert path.read_bytes() == data
    assert path.stat().st_mtime_ns == mtime

    # A real change: the file is written, valid, with ids and no invented metadata.
    async with connect(server, project, f"{name}.ipynb", user.key) as b:
        await asyncio.wait_for(b.synced.wait(), 10)
        nb = YNotebook(b.doc)
        if nb.cell_number:
            nb.ycells[0]["source"].insert(0, "# edited\n")
        else:
            nb.append_cell(nbformat.v4.new_code_cell("# edited\n", id="added"))
        await b.wait_acked()
        await until(lambda: path.read_bytes() != data)
    written = nbformat.read(path, as_version=4)
    nbformat.validate(written)
    assert written.metadata == original["metadata"]
    assert written.nbformat_minor == 5
    assert all(cell.get("id") for cell in written.cells)
    assert len(written.cells) == max(len(original["cells"]), 1)
    assert written.cells[0].source.startswith("# edited\n")
    for before, after in zip(original["cells"], written.cells, strict=bool(original["cells"])):
        source = "".join(before["source"])
        assert after.source.endswith(source)
        assert after.metadata == before["metadata"]


async def test_opening_a_text_file_does_not_rewrite_it(server, user, project):
    path = project_file(server, project, "notes.md")
    path.write_text("some notes\n")
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    rooms = server.services.extra["rooms"]
    async with connect(server, project, "notes.md", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        await asyncio.sleep(2.0)
    await until(lambda: not rooms.rooms)
    assert path.read_bytes() == data
    assert path.stat().st_mtime_ns == mtime
