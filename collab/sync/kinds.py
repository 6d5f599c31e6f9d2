"""Document kinds by file name: notebook (jupyter-ydoc YNotebook layout), text (YUnicode
`source`) and terminal (an empty Doc its package fills). Conversion to and from files."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import nbformat
from jupyter_ydoc import YNotebook, YUnicode
from pycrdt import Doc

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
    """File bytes to the value `set_content` takes (a notebook dict or a str)."""
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
        return _with_cell_ids(json.loads(json.dumps(nb)))
    raise UnsupportedFile(f"{kind} documents have no file")


def _with_cell_ids(nb: dict[str, Any]) -> dict[str, Any]:
    # jupyter-ydoc invents random ids for cells without one; ours are derived from the
    # position so that loading is deterministic.
    nb["nbformat_minor"] = max(int(nb.get("nbformat_minor", 5)), 5)
    cells = nb.get("cells") or [nbformat.v4.new_code_cell()]
    for index, cell in enumerate(cells):
        if not cell.get("id"):
            cell["id"] = str(uuid.uuid5(_CELL_NAMESPACE, str(index)))
    nb["cells"] = cells
    return nb


def empty_content(kind: str) -> Any:
    if kind == NOTEBOOK:
        return _with_cell_ids(json.loads(json.dumps(nbformat.v4.new_notebook())))
    return ""


def initial_update(kind: str, value: Any) -> bytes:
    """The update that loads `value` into an empty document."""
    doc: Doc = Doc(client_id=FILE_CLIENT_ID)
    set_content(doc, kind, value)
    return doc.get_update()


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
