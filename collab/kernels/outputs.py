"""OutputWriter: kernel messages become cell outputs in a notebook document (jupyter-ydoc
`YNotebook` layout), batched into one document transaction per flush interval, with
stream coalescing, display_id updates, clear_output(wait) and per-cell caps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Array, Doc, Map, Text

from collab.kernels.stream import StreamBuffer

log = logging.getLogger(__name__)

# Execution states a code cell's `execution_state` takes. JupyterLab knows idle/running;
# queued and not_run are ours (a queued cell dropped by an error, interrupt or restart).
QUEUED, RUNNING, IDLE, NOT_RUN = "queued", "running", "idle", "not_run"
TRUNCATED_MARK = "collab_truncated"


@dataclass
class _Output:
    data: dict[str, Any]
    stream: StreamBuffer | None = None
    ymap: Map | None = None
    dirty: bool = True
    size: int = 0


@dataclass
class _Cell:
    cell_id: str
    outputs: list[_Output] = field(default_factory=list)
    reset: bool = False  # the document's outputs must be cleared before the next write
    clear_on_next: bool = False  # clear_output(wait=True) pending
    size: int = 0
    count: int = 0
    truncated: bool = False
    dropped: int = 0
    fields: dict[str, Any] = field(default_factory=dict)  # execution_count / state to write
    finished: bool = False  # done or dropped: the model goes once written


class OutputWriter:
    def __init__(
        self,
        doc: Doc,
        *,
        max_bytes: int = 1024 * 1024,
        max_outputs: int = 500,
        flush_interval: float = 0.05,
    ) -> None:
        self.doc = doc
        self.max_bytes = max_bytes
        self.max_outputs = max_outputs
        self.flush_interval = flush_interval
        self._cells: dict[str, _Cell] = {}
        self._displays: dict[str, list[tuple[_Cell, _Output]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kernel-output-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception(
                    "writing kernel outputs failed", extra={"event": "kernel.write_failed"}
                )
            # The pause is what batches: messages arriving meanwhile join the next flush.
            await asyncio.sleep(self.flush_interval)

    def _touch(self) -> None:
        self._wake.set()

    # -- what the executor reports ---------------------------------------------------

    def _cell(self, cell_id: str) -> _Cell:
        cell = self._cells.get(cell_id)
        if cell is None:
            cell = self._cells[cell_id] = _Cell(cell_id)
        return cell

    def set_state(self, cell_id: str, state: str) -> None:
        cell = self._cell(cell_id)
        cell.fields["execution_state"] = state
        cell.finished = state in (IDLE, NOT_RUN)
        self._touch()

    def begin(self, cell_id: str) -> None:
        """A cell starts running: its old outputs go, its counters restart."""
        cell = self._cell(cell_id)
        self._forget_outputs(cell)
        cell.reset = True
        cell.clear_on_next = False
        cell.size = cell.count = cell.dropped = 0
        cell.truncated = False
        cell.finished = False
        cell.fields["execution_state"] = RUNNING
        cell.fields["execution_count"] = None
        self._touch()

    def set_execution_count(self, cell_id: str, count: int | None) -> None:
        self._cell(cell_id).fields["execution_count"] = count
        self._touch()

    def finish(self, cell_id: str, state: str = IDLE) -> None:
        cell = self._cell(cell_id)
        cell.clear_on_next = False
        cell.fields["execution_state"] = state
        cell.finished = True
        # The end of a cell is written at once, not at the next tick: a short cell then
        # costs no batching delay, and at most one extra write per cell.
        try:
            self.flush()
        except Exception:
            log.exception("writing kernel outputs failed", extra={"event": "kernel.write_failed"})

    def message(self, cell_id: str, msg_type: str, content: dict[str, Any]) -> None:
        """Apply one iopub message whose parent is the request that runs `cell_id`."""
        cell = self._cell(cell_id)
        if msg_type == "clear_output":
            if content.get("wait"):
                cell.clear_on_next = True
            else:
                self._clear(cell)
            self._touch()
            return
        if msg_type == "update_display_data":
            self._update_display(content)
            return
        if msg_type == "execute_input":
            self.set_execution_count(cell_id, content.get("execution_count"))
            return
        if msg_type not in ("stream", "display_data", "execute_result", "error"):
            return
        if cell.clear_on_next:
            cell.clear_on_next = False
            self._clear(cell)
        if cell.truncated:
            cell.dropped += 1
            return
        if msg_type == "stream":
            self._stream(cell, content)
        else:
            output = _nbformat_output(msg_type, content)
            self._append(cell, output, _size(output))
            display_id = (content.get("transient") or {}).get("display_id")
            if isinstance(display_id, str):
                self._displays.setdefault(display_id, []).append((cell, cell.outputs[-1]))
            if msg_type == "execute_result":
                cell.fields["execution_count"] = content.get("execution_count")
        self._touch()

    def append_stream(self, cell_id: str, name: str, text: str) -> None:
        """Text the server itself adds to a cell (an answered input prompt, a notice)."""
        self.message(cell_id, "stream", {"name": name, "text": text})

    # -- output model ----------------------------------------------------------------

    def _stream(self, cell: _Cell, content: dict[str, Any]) -> None:
        name = content.get("name", "stdout")
        text = content.get("text", "")
        if not isinstance(text, str):
            return
        last = cell.outputs[-1] if cell.outputs else None
        if last is None or last.stream is None or last.data.get("name") != name:
            if not self._admit(cell, 0):
                return
            last = _Output({"output_type": "stream", "name": name}, stream=StreamBuffer())
            cell.outputs.append(last)
            cell.count += 1
        before = len(last.stream) if last.stream else 0
        room = self.max_bytes - cell.size
        if len(text) > room:
            text = text[: max(room, 0)]
            self._truncate(cell)
        assert last.stream is not None
        last.stream.feed(text)
        grown = len(last.stream) - before
        cell.size += grown
        last.size += grown
        last.dirty = True
        if cell.truncated and cell.outputs[-1] is last:
            self._add_notice(cell)

    def _admit(self, cell: _Cell, size: int) -> bool:
        if cell.count + 1 > self.max_outputs or cell.size + size > self.max_bytes:
            self._truncate(cell)
            self._add_notice(cell)
            return False
        return True

    def _append(self, cell: _Cell, output: dict[str, Any], size: int) -> None:
        if not self._admit(cell, size):
            return
        cell.outputs.append(_Output(output, size=size))
        cell.count += 1
        cell.size += size

    def _truncate(self, cell: _Cell) -> None:
        if not cell.truncated:
            cell.truncated = True
            log.info(
                "cell output capped",
                extra={"event": "kernel.output_capped", "cell_id": cell.cell_id},
            )

    def _add_notice(self, cell: _Cell) -> None:
        if any(o.data.get("metadata", {}).get(TRUNCATED_MARK) for o in cell.outputs):
            return
        text = (
            f"[output truncated: this cell reached the limit of {self.max_bytes} bytes "
            f"or {self.max_outputs} outputs; further output is discarded]"
        )
        notice = {
            "output_type": "display_data",
            "data": {"text/plain": text},
            "metadata": {TRUNCATED_MARK: True},
        }
        cell.outputs.append(_Output(notice, size=len(text)))

    def _clear(self, cell: _Cell) -> None:
        self._forget_outputs(cell)
        cell.reset = True
        cell.size = cell.count = 0
        cell.truncated = False

    def _forget_outputs(self, cell: _Cell) -> None:
        gone = {id(o) for o in cell.outputs}
        cell.outputs = []
        if gone:
            for key in list(self._displays):
                kept = [(c, o) for c, o in self._displays[key] if id(o) not in gone]
                if kept:
                    self._displays[key] = kept
                else:
                    del self._displays[key]

    def _update_display(self, content: dict[str, Any]) -> None:
        display_id = (content.get("transient") or {}).get("display_id")
        if not isinstance(display_id, str):
            return
        for cell, output in self._displays.get(display_id, []):
            new = {**output.data, "data": content.get("data", {})}
            new["metadata"] = content.get("metadata", {})
            size = _size(new)
            if cell.size - output.size + size > self.max_bytes:
                continue
            cell.size += size - output.size
            output.size = size
            output.data = new
            output.dirty = True
        self._touch()

    # -- writing into the document ---------------------------------------------------

    def flush(self) -> None:
        """Write every pending change in one document transaction."""
        pending = [c for c in self._cells.values() if c.reset or c.fields or _has_dirty(c)]
        if not pending:
            return
        cells = self.doc.get("cells", type=Array)
        with self.doc.transaction():
            index = _cell_index(cells, {c.cell_id for c in pending})
            for cell in pending:
                ycell = index.get(cell.cell_id)
                if ycell is None:
                    # The cell was deleted from the document: nothing to show it in.
                    cell.reset, cell.fields = False, {}
                    for output in cell.outputs:
                        output.dirty = False
                    continue
                self._write_cell(cell, ycell)
        self._drop_finished(pending)

    def _drop_finished(self, cells: list[_Cell]) -> None:
        """Forget finished cells once written, unless a display id still points into them
        (a later update_display_data rewrites their outputs)."""
        shown = {id(c) for entries in self._displays.values() for c, _ in entries}
        for cell in cells:
            if cell.finished and id(cell) not in shown and self._cells.get(cell.cell_id) is cell:
                del self._cells[cell.cell_id]

    def _write_cell(self, cell: _Cell, ycell: Map) -> None:
        for key, value in cell.fields.items():
            ycell[key] = value
        cell.fields = {}
        youtputs = ycell.get("outputs")
        if not isinstance(youtputs, Array):
            youtputs = ycell["outputs"] = Array()
            cell.reset = False
        if cell.reset:
            youtputs.clear()
            cell.reset = False
        for output in cell.outputs:
            if output.ymap is None:
                youtputs.append(_to_ymap(output))
                output.ymap = youtputs[len(youtputs) - 1]
                output.dirty = False
                if output.stream is not None:
                    output.stream.take_dirty()
            elif output.dirty:
                output.dirty = False
                if output.stream is not None:
                    change = output.stream.take_dirty()
                    if change is None:
                        continue
                    offset, tail = change
                    ytext = output.ymap["text"]
                    # pycrdt indexes text in UTF-8 bytes.
                    start = len(output.stream.text[:offset].encode())
                    if start < len(ytext):
                        del ytext[start:]
                    ytext += tail
                else:
                    output.ymap["data"] = output.data.get("data", {})
                    output.ymap["metadata"] = output.data.get("metadata", {})


def _has_dirty(cell: _Cell) -> bool:
    return any(o.dirty or o.ymap is None for o in cell.outputs)


def _cell_index(cells: Array, wanted: set[str]) -> dict[str, Map]:
    found: dict[str, Map] = {}
    for ycell in cells:
        if isinstance(ycell, Map):
            cell_id = ycell.get("id")
            if cell_id in wanted and cell_id not in found:
                found[cell_id] = ycell
    return found


def _to_ymap(output: _Output) -> Map:
    data = dict(output.data)
    if output.stream is not None:
        data["text"] = Text(output.stream.text)
    return Map(data)


def _nbformat_output(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    if msg_type == "error":
        return {
            "output_type": "error",
            "ename": str(content.get("ename", "")),
            "evalue": str(content.get("evalue", "")),
            "traceback": [str(line) for line in content.get("traceback", [])],
        }
    output: dict[str, Any] = {
        "output_type": msg_type,
        "data": content.get("data", {}),
        "metadata": content.get("metadata", {}),
    }
    if msg_type == "execute_result":
        output["execution_count"] = content.get("execution_count")
    return output


def _size(output: dict[str, Any]) -> int:
    return len(json.dumps(output, separators=(",", ":"), default=str))
