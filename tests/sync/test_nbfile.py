"""NotebookFile, the mirror's cell-by-cell view of a notebook: after any sequence of
changes (typing, outputs, cells inserted, deleted and moved, metadata, a cell pasted with
a repeated id, an invalid cell) it gives exactly what converting and writing the whole
document gives, and converts only the cells that changed."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_ydoc import YNotebook
from pycrdt import Array, Doc, Map, Text

from collab.sync import kinds
from collab.sync.nbfile import NotebookFile


def _doc(cells: int) -> Doc:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    for i in range(cells):
        if i % 3 == 2:
            nb.cells.append(nbformat.v4.new_markdown_cell(f"# Part {i}\n\nsome $x^{i}$"))
        else:
            c = nbformat.v4.new_code_cell(f"x{i} = {i}\nprint(x{i})")
            c.execution_count = i + 1
            c.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}\nmore\n")]
            nb.cells.append(c)
    doc: Doc = Doc()
    kinds.fill(doc, kinds.NOTEBOOK, kinds.file_value(kinds.NOTEBOOK, dict(nb)))
    return doc


def _whole(doc: Doc) -> tuple[dict[str, Any], bytes]:
    value = YNotebook(doc).get()
    return value, kinds.encode_file(kinds.NOTEBOOK, copy.deepcopy(value))


async def _cached(view: NotebookFile) -> tuple[dict[str, Any], bytes]:
    value = await view.content()
    writer = view.writer(value)
    data = await asyncio.to_thread(writer.run)
    view.keep(writer)
    return value, data


def _new_cell(n: int, kind: str = "code") -> Map:
    cell = (nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell)(
        f"new {n}"
    )
    return YNotebook(Doc()).create_ycell(dict(cell))


def _change(doc: Doc, step: tuple[str, int, int]) -> None:
    """One change like those users and kernels make (indices taken modulo the size)."""
    what, a, b = step
    cells = doc.get("cells", type=Array)
    n = len(cells)
    if what == "type" and n:
        source = cells[a % n]["source"]
        source.insert(b % (len(source) + 1), "q")
    elif what == "erase" and n:
        source = cells[a % n]["source"]
        if len(source):
            del source[b % len(source)]
    elif what == "insert":
        cells.insert(a % (n + 1), _new_cell(b, "code" if b % 2 else "markdown"))
    elif what == "delete" and n:
        del cells[a % n]
    elif what == "move" and n > 1:
        # jupyter-ydoc moves a cell as a delete and an insert of its copy, in one change.
        nb = YNotebook(doc)
        value = nb.get_cell(a % n)
        with doc.transaction():
            del cells[a % n]
            cells.insert(b % n, nb.create_ycell(value))
    elif what == "output" and n:
        cell = cells[a % n]
        if cell.get("cell_type") == "code":
            with doc.transaction():
                cell["execution_count"] = b
                cell["outputs"].append(
                    Map({"output_type": "stream", "name": "stdout", "text": Text(f"{b}\n")})
                )
    elif what == "clear" and n:
        cell = cells[a % n]
        if cell.get("cell_type") == "code":
            cell["outputs"].clear()
    elif what == "state" and n:
        cells[a % n]["execution_state"] = "running" if b % 2 else "idle"
    elif what == "metadata":
        meta = doc.get("meta", type=Map)
        meta["metadata"] = Map({"kernelspec": {"name": f"k{b}", "display_name": "K"}})
    elif what == "cell_metadata" and n:
        cells[a % n]["metadata"] = Map({"tags": [f"t{b}"]})
    elif what == "batch" and n:
        # Several changes in one transaction, a structural one among them.
        with doc.transaction():
            cells[a % n]["source"].insert(0, "z")
            cells.insert(0, _new_cell(b))
            cells[(a % n) + 1]["source"].insert(0, "w")
            del cells[len(cells) - 1 - (b % n)]  # after the insert, in the same delta


STEPS = st.tuples(
    st.sampled_from(
        ["type", "erase", "insert", "delete", "move", "output", "clear", "state",
         "metadata", "cell_metadata", "batch"]
    ),
    st.integers(0, 50),
    st.integers(0, 50),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(STEPS, min_size=1, max_size=6), min_size=1, max_size=6))
def test_any_changes_give_what_the_whole_document_gives(rounds: list[list[Any]]) -> None:
    async def check() -> None:
        doc = _doc(12)
        view = NotebookFile(doc)
        assert await _cached(view) == _whole(doc)
        for steps in rounds:
            for step in steps:
                _change(doc, step)
            assert await _cached(view) == _whole(doc), steps
        view.close()

    asyncio.run(check())


async def test_typing_in_one_cell_converts_and_writes_only_that_cell(monkeypatch) -> None:
    doc = _doc(300)
    view = NotebookFile(doc)
    await _cached(view)
    converted: list[Any] = []
    written: list[Any] = []
    import collab.sync.nbfile as nbfile

    real_convert, real_text = nbfile._cell_value, nbfile._cell_text

    def convert(ycell: Map, meta: Any) -> Any:
        converted.append(ycell)
        return real_convert(ycell, meta)

    def text(cell: Any, version: int, minor: int) -> str:
        written.append(cell["id"])
        return real_text(cell, version, minor)

    monkeypatch.setattr(nbfile, "_cell_value", convert)
    monkeypatch.setattr(nbfile, "_cell_text", text)
    cells = doc.get("cells", type=Array)
    for _ in range(5):
        cells[150]["source"].insert(0, "q")
    cells.insert(10, _new_cell(1))
    value, data = await _cached(view)
    assert (value, data) == _whole(doc)
    assert len(converted) == 2 and len(written) == 2
    assert written[1] == cells[151]["id"]  # the typed-in cell, one place down now


async def test_a_pasted_cell_with_a_repeated_id_is_handled_as_jupyter_ydoc_does() -> None:
    doc = _doc(5)
    view = NotebookFile(doc)
    await _cached(view)
    cells = doc.get("cells", type=Array)
    same = YNotebook(doc).get_cell(1)
    different = {**YNotebook(doc).get_cell(3), "source": "changed"}
    cells.append(YNotebook(doc).create_ycell(same))  # an exact copy: left out
    cells.append(YNotebook(doc).create_ycell(different))  # a different cell: a new id
    value, data = await _cached(view)
    expected = YNotebook(doc).get()  # the new id is in the document already
    assert value == expected and len(value["cells"]) == 6
    assert len({c["id"] for c in value["cells"]}) == 6
    assert data == kinds.encode_file(kinds.NOTEBOOK, copy.deepcopy(expected))
    assert await _cached(view) == _whole(doc)  # and afterwards as before


async def test_an_invalid_cell_is_refused_as_the_whole_document_is() -> None:
    doc = _doc(5)
    view = NotebookFile(doc)
    await _cached(view)
    doc.get("cells", type=Array)[1]["execution_count"] = "not a number"
    with pytest.raises(nbformat.ValidationError):
        await _cached(view)
    with pytest.raises(nbformat.ValidationError):
        _whole(doc)
    doc.get("cells", type=Array)[1]["execution_count"] = 7
    assert await _cached(view) == _whole(doc)


async def test_a_notebook_emptied_and_filled_again() -> None:
    doc = _doc(4)
    view = NotebookFile(doc)
    cells = doc.get("cells", type=Array)
    cells.clear()
    assert await _cached(view) == _whole(doc)
    cells.append(_new_cell(3))
    assert await _cached(view) == _whole(doc)
