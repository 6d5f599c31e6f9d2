"""Three-way notebook merge for out-of-band file changes: cells matched by id, cells the
file added, deleted or moved are added, deleted or moved in the live document, each
cell's source merged as text, and other fields taken from the file only where the file
changed them since the base."""

from __future__ import annotations

import uuid
from difflib import SequenceMatcher
from typing import Any

from jupyter_ydoc import YNotebook
from jupyter_ydoc.utils import cast_all
from pycrdt import Array, Doc, Map, Text

from collab.sync import textmerge

Notebook = dict[str, Any]


def align_ids(base: Notebook, theirs: Notebook) -> Notebook:
    """Give the file's cells that have no id (nbformat < 4.5) the id of the base cell
    they continue, matched by content, so that an edit to an id-less file changes the
    cells it touched rather than replacing them all. Unmatched cells get new ids."""
    cells = theirs["cells"]
    if all(c.get("id") for c in cells):
        return theirs
    base_cells = base["cells"]
    taken = {c["id"] for c in cells if c.get("id")}
    key = [_cell_key(c) for c in base_cells]
    ours = [_cell_key(c) for c in cells]
    matcher = SequenceMatcher(None, key, ours, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            # A replaced run of the same length is the same cells edited in place.
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                bid = base_cells[i].get("id")
                if not cells[j].get("id") and bid and bid not in taken:
                    cells[j]["id"] = bid
                    taken.add(bid)
    for cell in cells:
        if not cell.get("id"):
            cell["id"] = str(uuid.uuid4())
    return theirs


def _cell_key(cell: dict[str, Any]) -> tuple[str, str]:
    return (str(cell.get("cell_type")), _source(cell))


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def merge(doc: Doc, base: Notebook, theirs: Notebook) -> None:
    """Apply the change base→theirs to the live notebook in `doc`. Both are notebook
    dicts whose cells all have ids."""
    nb = YNotebook(doc)
    with doc.transaction():
        _merge_meta(doc.get("meta", type=Map), base, theirs)
        _merge_cells(nb, base["cells"], theirs["cells"])


def _merge_meta(ymeta: Map, base: Notebook, theirs: Notebook) -> None:
    for key in ("nbformat", "nbformat_minor"):
        if theirs.get(key) != base.get(key) and key in theirs:
            ymeta[key] = float(theirs[key])
    old, new = base.get("metadata") or {}, theirs.get("metadata") or {}
    if old == new:
        return
    ymetadata = ymeta.get("metadata")
    if not isinstance(ymetadata, Map):
        ymeta["metadata"] = Map(_for_yjs(new))
        return
    _merge_map(ymetadata, old, new)


def _merge_map(ymap: Map, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Set the keys the file changed, delete those it removed; leave the rest (a live
    change to another key survives)."""
    for key in set(old) | set(new):
        if key in new and old.get(key) != new[key]:
            ymap[key] = _for_yjs(new[key])
        elif key not in new and key in ymap:
            del ymap[key]


def _for_yjs(value: Any) -> Any:
    # Yjs numbers are floats; jupyter-ydoc stores them so and casts back on reading.
    if isinstance(value, dict | list):
        return cast_all(_copy(value), int, float)
    return float(value) if type(value) is int else value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _merge_cells(nb: YNotebook, base_cells: list[Any], their_cells: list[Any]) -> None:
    ycells = nb.ycells
    base_by_id = {c["id"]: c for c in base_cells}
    their_by_id = {c["id"]: c for c in their_cells}

    # Cells the file deleted go, unless live changed their source since the base.
    for index in reversed(range(len(ycells))):
        cid = ycells[index].get("id")
        if cid in base_by_id and cid not in their_by_id:
            if str(ycells[index]["source"]) == _source(base_by_id[cid]):
                del ycells[index]

    # Cells present in both keep their live identity; fields change where the file did.
    for ycell in list(ycells):
        cid = ycell.get("id")
        if cid in base_by_id and cid in their_by_id:
            _merge_cell(nb, ycell, base_by_id[cid], their_by_id[cid])

    # Cells the file added or moved are placed after their predecessor in the file.
    common = [c["id"] for c in base_cells if c["id"] in their_by_id]
    their_order = [c["id"] for c in their_cells if c["id"] in base_by_id]
    kept = _stable(common, their_order)
    live_ids = [c.get("id") for c in ycells]
    for position, cell in enumerate(their_cells):
        cid = cell["id"]
        if cid in base_by_id and cid in kept:
            continue
        if cid in base_by_id:
            if cid not in live_ids:
                continue  # live deleted it: the file's move does not bring it back
            index = live_ids.index(cid)
            value = _live_cell(nb, ycells[index])
            del ycells[index]
            live_ids.pop(index)
        elif cid in live_ids:
            continue  # already there (the same cell added on both sides)
        else:
            value = cell
        at = _after_predecessor(live_ids, their_cells, position)
        ycells.insert(at, nb.create_ycell(value))
        live_ids.insert(at, cid)


def _stable(common: list[str], theirs: list[str]) -> set[str]:
    """The cells whose relative order the file kept (the longest common subsequence)."""
    matcher = SequenceMatcher(None, common, theirs, autojunk=False)
    kept: set[str] = set()
    for i, _, size in matcher.get_matching_blocks():
        kept.update(common[i : i + size])
    return kept


def _after_predecessor(live_ids: list[Any], their_cells: list[Any], position: int) -> int:
    for previous in reversed(their_cells[:position]):
        if previous["id"] in live_ids:
            return live_ids.index(previous["id"]) + 1
    return 0


def _live_cell(nb: YNotebook, ycell: Map) -> dict[str, Any]:
    cell: dict[str, Any] = ycell.to_py() or {}
    cell.pop("execution_state", None)
    cast_all(cell, float, int)
    return cell


def _merge_cell(nb: YNotebook, ycell: Map, base: dict[str, Any], theirs: dict[str, Any]) -> None:
    old_source, new_source = _source(base), _source(theirs)
    if old_source != new_source:
        ytext = ycell.get("source")
        if isinstance(ytext, Text):
            live = str(ytext)
            textmerge.apply(ytext, live, textmerge.edits(old_source, live, new_source))
        else:
            ycell["source"] = Text(new_source)
    for key in (set(base) | set(theirs)) - {"id", "source"}:
        if key in theirs and base.get(key) == theirs[key]:
            continue
        if key not in theirs:
            if key in base and key in ycell:
                del ycell[key]
        elif key == "outputs":
            outputs = ycell.get("outputs")
            if not isinstance(outputs, Array):
                outputs = Array()
                ycell["outputs"] = outputs
            outputs.clear()
            outputs.extend(nb._create_youtputs(theirs["outputs"]))
        elif key == "metadata":
            ymetadata = ycell.get("metadata")
            if isinstance(ymetadata, Map):
                _merge_map(ymetadata, base.get("metadata") or {}, theirs["metadata"])
            else:
                ycell["metadata"] = Map(_copy(theirs["metadata"]))
        else:
            ycell[key] = _copy(theirs[key])
