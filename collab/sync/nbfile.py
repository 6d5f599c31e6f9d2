"""NotebookFile: a live notebook document's file form (jupyter-ydoc's `get()` value and
nbformat's file bytes), kept up to date cell by cell as the document changes.

Converting a whole 2,000-cell document takes about 130 ms of the event loop and writing
it as nbformat about 350 ms more; the file mirror needs both about once a second while
someone types. Here a keystroke costs the conversion, validation and serialisation of
the one cell it changed: the cells' Python values and their JSON text are cached, and a
deep observer on the cells says which ones changed (by index after the transaction) and
how the array itself moved (its delta)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import nbformat
from jupyter_ydoc import YNotebook
from jupyter_ydoc.utils import cast_all
from pycrdt import Array, Doc, Map, Subscription

# nbformat's writer puts the cells before the metadata (sorted keys, one-space indent):
# a notebook with no cells starts with exactly this, and a cell's text is found between
# the list's opening and the line that closes it.
_NO_CELLS = '{\n "cells": [],'
_CELLS_OPEN = '{\n "cells": [\n'
_CELLS_CLOSE = '\n ],\n "metadata": '
# Cells converted per event-loop turn when many are (the first time).
_BATCH = 100


class NotebookFile:
    def __init__(self, doc: Doc) -> None:
        self._doc = doc
        self._ycells: Array = doc.get("cells", type=Array)
        self._ymeta: Map = doc.get("meta", type=Map)
        # Per cell, aligned with the array: its value (None: to convert) and its text in
        # the file (None: to validate and write).
        self._values: list[dict[str, Any] | None] = []
        self._texts: list[str | None] = []
        self._meta: dict[str, Any] | None = None
        self._meta_text: str | None = None
        self._meta_changes = 0  # a writer's metadata text is kept only if none since
        self._whole = True  # everything is to be converted again
        self._subscriptions: list[tuple[Any, Subscription]] = [
            (self._ycells, self._ycells.observe_deep(self._on_cells)),
            (self._ymeta, self._ymeta.observe_deep(self._on_meta)),
        ]

    def close(self) -> None:
        for shared, subscription in self._subscriptions:
            shared.unobserve(subscription)
        self._subscriptions = []

    # -- change tracking -----------------------------------------------------------

    def _on_cells(self, events: list[Any]) -> None:
        # Runs in every transaction's commit: it must not raise. The array's own delta
        # (positions before the transaction) is applied first; the cells' events name
        # their cell by its index after it.
        try:
            if self._whole:
                return
            for event in events:
                if not event.path:  # the array itself: cells inserted, deleted, moved
                    self._apply_delta(event.delta)
            for event in events:
                path = event.path
                if path:
                    self._forget(int(path[0]))
        except Exception:
            self._whole = True

    def _apply_delta(self, delta: list[dict[str, Any]]) -> None:
        at = 0
        for step in delta:
            if "retain" in step:
                at += int(step["retain"])
            elif "insert" in step:
                n = len(step["insert"])
                self._values[at:at] = [None] * n
                self._texts[at:at] = [None] * n
                at += n
            elif "delete" in step:
                n = int(step["delete"])
                del self._values[at : at + n]
                del self._texts[at : at + n]
        if len(self._values) != len(self._ycells):
            self._whole = True  # not expected: start again rather than guess

    def _forget(self, index: int) -> None:
        if 0 <= index < len(self._values):
            self._values[index] = self._texts[index] = None
        else:
            self._whole = True

    def _on_meta(self, events: list[Any]) -> None:
        try:
            self._meta = self._meta_text = None
            self._meta_changes += 1
            for event in events:
                # Cells' values and texts depend on the format's version (ids from 4.5).
                if not event.path and {"nbformat", "nbformat_minor"} & set(event.keys):
                    self._whole = True
        except Exception:
            self._whole = True

    # -- the document as JSON --------------------------------------------------------

    async def content(self) -> dict[str, Any]:
        """What `YNotebook(doc).get()` returns, converting only the cells changed since
        the last call (all of them the first time, yielding to the event loop every
        `_BATCH` cells). The cells' dicts are shared with the cache: do not change them."""
        while True:
            if self._meta is None:
                meta: dict[str, Any] = self._ymeta.to_py() or {}
                cast_all(meta, float, int)
                self._meta = meta
            if self._whole:
                n = len(self._ycells)
                self._values, self._texts = [None] * n, [None] * n
                self._whole = False
            missing = [i for i, value in enumerate(self._values) if value is None]
            if not missing:
                break
            for i in missing[:_BATCH]:
                self._values[i] = _cell_value(self._ycells[i], self._meta)
            if len(missing) > _BATCH:
                await asyncio.sleep(0)  # the document may change meanwhile: look again
        meta = self._meta
        assert meta is not None
        return {
            "cells": self._deduplicated(),
            "metadata": meta.get("metadata", {}),
            "nbformat": int(meta.get("nbformat", 0)),
            "nbformat_minor": int(meta.get("nbformat_minor", 0)),
        }

    def _deduplicated(self) -> list[dict[str, Any]]:
        """jupyter-ydoc's rule for repeated ids: an exact copy is left out, a different
        cell gets a new id (written to the document, as `get()` does)."""
        seen: set[str] = set()
        cells: list[dict[str, Any]] = []
        for value in self._values:
            assert value is not None
            cell_id = value.get("id")
            if cell_id and cell_id in seen:
                # Rare (cells pasted with their ids): jupyter-ydoc's own pass decides.
                self._whole = True
                return list(YNotebook(self._doc).get()["cells"])
            if cell_id:
                seen.add(cell_id)
            cells.append(value)
        return cells

    # -- the file --------------------------------------------------------------------

    def writer(self, value: dict[str, Any]) -> FileWriter:
        """On the event loop: what writing `value` (the last `content()`) needs. Its
        `run()` may go to a thread; `keep()` it afterwards, back on the loop."""
        cached = (
            value["nbformat"] == 4
            and not self._whole
            and len(value["cells"]) == len(self._values)
            and all(a is b for a, b in zip(value["cells"], self._values, strict=True))
        )
        writer = FileWriter(value, list(self._texts) if cached else None, self._meta_text)
        writer.meta_changes = self._meta_changes
        return writer

    def keep(self, writer: FileWriter) -> None:
        """Keep the texts the writer made for cells still unchanged (the same dict at
        the same place), and the metadata's if the metadata did not change."""
        if writer.texts is None or self._whole:
            return
        if writer.meta_changes == self._meta_changes:
            self._meta_text = writer.meta_text
        cells = writer.value["cells"]
        if len(cells) != len(self._values):
            return
        for i, (cell, text) in enumerate(zip(cells, writer.texts, strict=True)):
            if self._texts[i] is None and self._values[i] is cell:
                self._texts[i] = text


class FileWriter:
    """nbformat's file for one `content()` value, validated, byte for byte what
    `kinds.encode_file` writes. Touches no Doc: `run()` may run in a thread."""

    def __init__(self, value: dict[str, Any], texts: list[str | None] | None, meta: str | None):
        self.value = value
        self.texts = texts  # None: no cache to use, the whole file is written
        self.meta_text = meta
        self.meta_changes = 0

    def run(self) -> bytes:
        """The file's bytes; nbformat's ValidationError for an invalid notebook."""
        value = self.value
        if self.texts is None:
            return (_file_text(value) + "\n").encode("utf-8")
        if self.meta_text is None:
            self.meta_text = _file_text({**value, "cells": []})
        texts = self.texts
        for i, text in enumerate(texts):
            if text is None:
                texts[i] = _cell_text(value["cells"][i], value["nbformat"], value["nbformat_minor"])
        if not texts:
            return (self.meta_text + "\n").encode("utf-8")
        head = _CELLS_OPEN + ",\n".join(t for t in texts if t is not None) + "\n ],"
        return (self.meta_text.replace(_NO_CELLS, head, 1) + "\n").encode("utf-8")


def _cell_value(ycell: Map, meta: dict[str, Any]) -> dict[str, Any]:
    """One cell as jupyter-ydoc's `get()` gives it (its `_cell_to_py`, which needs a
    YNotebook: one kept for the room's life would keep an undo history of every edit)."""
    cell: dict[str, Any] = ycell.to_py() or {}
    cell.pop("execution_state", None)
    cast_all(cell, float, int)
    if (
        "id" in cell
        and int(meta.get("nbformat", 0)) == 4
        and int(meta.get("nbformat_minor", 0)) <= 4
    ):
        del cell["id"]  # cell ids exist from nbformat 4.5 on
    if (
        cell.get("cell_type") in ("raw", "markdown")
        and "attachments" in cell
        and not cell["attachments"]
    ):
        del cell["attachments"]
    return cell


def _file_text(value: dict[str, Any]) -> str:
    """As `nbformat.writes` (validate, then its version's writer), validated once."""
    nb = nbformat.from_dict(value)
    nbformat.validate(nb)
    text: str = nbformat.versions[nb.nbformat].writes_json(nb)
    return text


def _cell_text(cell: dict[str, Any], version: int, minor: int) -> str:
    """The cell as it appears in its notebook's file, indented for the cells' list."""
    alone = _file_text(
        {
            "cells": [copy.deepcopy(cell)],
            "metadata": {},
            "nbformat": version,
            "nbformat_minor": minor,
        }
    )
    start = len(_CELLS_OPEN)
    end = alone.rindex(_CELLS_CLOSE)
    if not alone.startswith(_CELLS_OPEN):
        raise ValueError("nbformat's layout changed: cannot place a cell")
    return alone[start:end]
