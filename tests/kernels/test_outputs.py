"""Outputs written into the notebook document by a real kernel: every output type,
stream coalescing with \\r and \\b, display updates, clear_output, caps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_ydoc import YNotebook
from pycrdt import Doc

from collab.kernels.backend import LocalBackend
from collab.kernels.outputs import TRUNCATED_MARK
from collab.kernels.session import KernelSession
from collab.kernels.stream import StreamBuffer
from tests.kernels.conftest import cells, notebook, states, text_of, viewer, wait_for


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Any]:
    """run(source, **limits) -> the cell as a viewer's replica of the document shows it."""
    sessions: list[KernelSession] = []
    doc = Doc()
    YNotebook(doc).set(notebook([]))
    replica = viewer(doc)
    counter = iter(range(10_000))

    async def run_cell(source: str, **limits: Any) -> dict[str, Any]:
        if not sessions or limits:
            session = KernelSession(
                doc, lambda name: LocalBackend(name, tmp_path, 0), flush_interval=0.05, **limits
            )
            session.start()
            sessions.append(session)
        cell_id = f"cell{next(counter)}"
        YNotebook(doc).append_cell(notebook([(cell_id, source)])["cells"][0])
        assert sessions[-1].execute([cell_id]) == [cell_id]
        session = sessions[-1]
        await wait_for(lambda: not session.busy, what="cell done")
        session.writer.flush()
        assert states(replica)[cell_id] == "idle"
        return cells(replica)[cell_id]

    run_cell.replica = replica  # type: ignore[attr-defined]
    yield run_cell
    for session in sessions:
        await session.shutdown()


def test_stream_buffer_handles_carriage_return_and_backspace_like_a_terminal():
    buf = StreamBuffer()
    for chunk in ["10%", "\r20%", "\r30%\n", "done", "\b\b\bDONE", "\nabc\rX\n"]:
        buf.feed(chunk)
    assert buf.text == "30%\ndDONE\nXbc\n"
    assert buf.take_dirty() == (0, buf.text)
    assert buf.take_dirty() is None
    buf.feed("tail\rT")
    assert buf.take_dirty() == (len("30%\ndDONE\nXbc\n"), "Tail")


async def test_every_output_type_lands_in_the_document(run):
    src = (
        "import sys\n"
        "from IPython.display import display, HTML\n"
        "print('out')\n"
        "print('err', file=sys.stderr)\n"
        "display(HTML('<b>x</b>'))\n"
        "42"
    )
    cell = await run(src)
    kinds = [(o["output_type"], o.get("name")) for o in cell["outputs"]]
    assert kinds == [
        ("stream", "stdout"),
        ("stream", "stderr"),
        ("display_data", None),
        ("execute_result", None),
    ]
    assert cell["outputs"][2]["data"]["text/html"] == "<b>x</b>"
    assert cell["outputs"][3]["data"]["text/plain"] == "42"
    assert cell["outputs"][3]["execution_count"] == cell["execution_count"] == 1
    error = await run("1/0")
    assert error["outputs"][0]["output_type"] == "error"
    assert error["outputs"][0]["ename"] == "ZeroDivisionError"
    assert error["execution_count"] == 2


async def test_stream_output_is_coalesced_and_progress_bars_overwrite_themselves(run):
    src = (
        "import sys, time\n"
        "for i in range(200):\n"
        "    print(f'\\rprogress {i:3d}', end='', flush=True)\n"
        "    if i % 50 == 0: time.sleep(0.12)\n"
        "print()\n"
        "print('ab\\bc')\n"
        "for i in range(300): print(i)\n"
    )
    cell = await run(src)
    assert len(cell["outputs"]) == 1
    expected = "progress 199\nac\n" + "".join(f"{i}\n" for i in range(300))
    assert cell["outputs"][0]["text"] == expected


async def test_display_updates_follow_the_display_id_across_cells(run):
    first = await run("h = display('one', display_id='d1')")
    assert first["outputs"][0]["data"]["text/plain"] == "'one'"
    second = await run("h.update('two')\nprint('updated')")
    assert text_of(second) == "updated\n"
    # The update lands in the first cell's output, where the display lives.
    assert cells(run.replica)["cell0"]["outputs"][0]["data"]["text/plain"] == "'two'"
    third = await run("display('three', display_id='d1', update=True);")
    assert third["outputs"] == []
    assert cells(run.replica)["cell0"]["outputs"][0]["data"]["text/plain"] == "'three'"


async def test_clear_output_with_wait_replaces_on_the_next_output(run):
    src = (
        "from IPython.display import clear_output\n"
        "import time\n"
        "for i in range(5):\n"
        "    clear_output(wait=True)\n"
        "    print(f'frame {i}')\n"
        "    time.sleep(0.03)\n"
    )
    cell = await run(src)
    assert [o.get("text") for o in cell["outputs"]] == ["frame 4\n"]
    cleared = await run("print('gone')\nfrom IPython.display import clear_output\nclear_output()")
    assert cleared["outputs"] == []


async def test_output_beyond_the_byte_cap_is_cut_with_a_visible_notice(run):
    cell = await run("for i in range(100000): print('x' * 99)", max_output_bytes=100_000)
    stream, notice = cell["outputs"]
    assert len(stream["text"]) == 100_000
    assert notice["metadata"][TRUNCATED_MARK] is True
    assert "output truncated" in notice["data"]["text/plain"]


async def test_outputs_beyond_the_message_cap_are_cut_with_a_visible_notice(run):
    cell = await run("for i in range(50): display(i)", max_outputs=10)
    assert len(cell["outputs"]) == 11
    assert [o["data"]["text/plain"] for o in cell["outputs"][:10]] == [str(i) for i in range(10)]
    assert cell["outputs"][10]["metadata"][TRUNCATED_MARK] is True
