"""Document kinds by file name: notebook (jupyter-ydoc YNotebook layout), text (YUnicode
`source`) and terminal (an empty Doc its package fills). Conversion to and from files."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import nbformat
from jupyter_ydoc import YNotebook, YUnicode
from jupyter_ydoc.utils import cast_all
from pycrdt import Doc, Map, Text

from collab.sync import nbmerge, textmerge

NOTEBOOK = "notebook"
TEXT = "text"
TERMINAL = "terminal"

# The client id of content loaded from a file. Loading is not byte-deterministic
# (nested maps encode in hash order), so the store lets only one loader's update in;
# a fixed id keeps the file's content recognisable in the log.
FILE_CLIENT_ID = 1
_CELL_NAMESPACE = uuid.UUID("8b0d1c1e-7d44-4c55-9a43-2f0cdbc7a1f5")


class UnsupportedFile(ValueError):
    """A file that cannot be a document of its kind (not UTF-8, not a notebook)."""


def kind_of(path: str) -> str:
    if path.endswith(".ipynb"):
        return NOTEBOOK
    if path.endswith(".term"):
        return TERMINAL
    return TEXT


def mirrored(kind: str) -> bool:
    return kind != TERMINAL


def parse_file(kind: str, data: bytes) -> Any:
    """File bytes to a document value (a notebook dict or a str). A notebook keeps what
    the file has: cells without ids stay without (see `with_cell_ids`)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedFile("the file is not UTF-8 text") from None
    if kind == TEXT:
        return text
    if kind == NOTEBOOK:
        try:
            nb = nbformat.reads(text, as_version=4) if text.strip() else nbformat.v4.new_notebook()
        except Exception as exc:
            raise UnsupportedFile(f"the file is not a notebook: {exc}") from None
        value: dict[str, Any] = json.loads(json.dumps(nb))
        value.setdefault("cells", [])
        return value
    raise UnsupportedFile(f"{kind} documents have no file")


def with_cell_ids(nb: dict[str, Any]) -> dict[str, Any]:
    """The notebook as a document holds it: every cell has an id (the merge matches
    cells by id) and so the format is 4.5. Ids are derived from the position, so that
    loading is deterministic. Nothing else is added: a file opened and not changed is
    never rewritten, and its first write carries no invented metadata."""
    nb["nbformat_minor"] = max(int(nb.get("nbformat_minor", 5)), 5)
    for index, cell in enumerate(nb["cells"]):
        if not cell.get("id"):
            cell["id"] = str(uuid.uuid5(_CELL_NAMESPACE, str(index)))
    return nb


def empty_content(kind: str) -> Any:
    """A new document without a file (a new notebook has one empty code cell)."""
    if kind == NOTEBOOK:
        nb = json.loads(json.dumps(nbformat.v4.new_notebook()))
        nb["cells"] = [json.loads(json.dumps(nbformat.v4.new_code_cell()))]
        return with_cell_ids(nb)
    return ""


def initial_update(kind: str, value: Any) -> bytes:
    """The update that loads `value` into an empty document, adding nothing to it."""
    doc: Doc = Doc(client_id=FILE_CLIENT_ID)
    fill(doc, kind, value)
    return doc.get_update()


def fill(doc: Doc, kind: str, value: Any) -> None:
    """Load `value` into an empty document as it is. (jupyter-ydoc's `set` would add
    empty kernelspec and language_info metadata and a cell to an empty notebook.)"""
    if kind == NOTEBOOK:
        nb = YNotebook(doc)
        cells = [nb.create_ycell(cell) for cell in value["cells"]]
        meta = {k: copy.deepcopy(v) for k, v in value.items() if k != "cells"}
        cast_all(meta, int, float)
        with doc.transaction():
            ymeta = doc.get("meta", type=Map)
            ymeta["nbformat"] = meta.get("nbformat", 4.0)
            ymeta["nbformat_minor"] = meta.get("nbformat_minor", 5.0)
            ymeta["metadata"] = Map(meta.get("metadata", {}))
            nb.ycells.extend(cells)
    elif kind == TEXT:
        if value:
            doc.get("source", type=Text).insert(0, value)
    else:
        raise UnsupportedFile(f"{kind} documents have no content to set")


def normalize(kind: str, value: Any) -> Any:
    """`value` as the document gives it back after loading it (jupyter-ydoc drops some
    empty fields): the form the mirror compares and keeps as its merge base."""
    if kind != NOTEBOOK:
        return value
    doc: Doc = Doc()
    fill(doc, kind, value)
    return content(doc, kind)


def dump_base(kind: str, value: Any) -> bytes:
    if kind == NOTEBOOK:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return str(value).encode("utf-8")


def load_base(kind: str, data: bytes) -> Any:
    text = data.decode("utf-8")
    return json.loads(text) if kind == NOTEBOOK else text


def file_value(kind: str, raw: Any, base: Any | None = None) -> Any:
    """A parsed file as the document would hold it (the mirror's merge base and the
    value merged in). Cells without ids continue the base's cells where they match."""
    if kind != NOTEBOOK:
        return raw
    if base is not None:
        raw = nbmerge.align_ids(base, raw)
    return normalize(kind, with_cell_ids(raw))


def merge_file(doc: Doc, kind: str, base: Any, theirs: Any) -> None:
    """Apply the change base→theirs (file values) to the live document, keeping every
    live change made since the base. Opens its own transactions."""
    if kind == NOTEBOOK:
        nbmerge.merge(doc, base, theirs)
    elif kind == TEXT:
        ytext = doc.get("source", type=Text)
        live = str(ytext)
        changes = textmerge.edits(base, live, theirs)
        if changes:
            with doc.transaction():
                textmerge.apply(ytext, live, changes)
    else:
        raise UnsupportedFile(f"{kind} documents have no file")


def set_content(doc: Doc, kind: str, value: Any) -> None:
    """Make the document's content equal `value` with a minimal change (jupyter-ydoc's
    granular `set`), so cursors and concurrent edits elsewhere survive."""
    if kind == NOTEBOOK:
        YNotebook(doc).set(copy.deepcopy(value))
    elif kind == TEXT:
        YUnicode(doc).set(value)
    else:
        raise UnsupportedFile(f"{kind} documents have no content to set")


def content(doc: Doc, kind: str) -> Any:
    """The document as JSON: a notebook dict, a str, or for terminals the raw roots."""
    if kind == NOTEBOOK:
        return YNotebook(doc).get()
    if kind == TEXT:
        return YUnicode(doc).get()
    return {name: _to_py(root) for name, root in doc.items()}


def _to_py(value: Any) -> Any:
    to_py = getattr(value, "to_py", None)
    return to_py() if to_py else str(value)


def has_content(doc: Doc, kind: str) -> bool:
    if kind == NOTEBOOK:
        return bool(YNotebook(doc).get()["nbformat"])
    return True


def to_file(doc: Doc, kind: str) -> bytes:
    """The file bytes for a document; a notebook is validated by nbformat first."""
    return encode_file(kind, content(doc, kind))


def encode_file(kind: str, value: Any) -> bytes:
    """File bytes for `content()`'s value. Touches no Doc, so it may run in a thread
    (nbformat validation of a large notebook is slow)."""
    if kind == TEXT:
        return str(value).encode("utf-8")
    if kind == NOTEBOOK:
        nb = nbformat.from_dict(value)
        nbformat.validate(nb)
        return (nbformat.writes(nb) + "\n").encode("utf-8")
    raise UnsupportedFile(f"{kind} documents have no file")
