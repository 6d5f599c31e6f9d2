"""The three-way notebook merge on a live pycrdt document: cells by id, sources as
text, other fields only where the file changed them, live edits kept."""

from __future__ import annotations

import copy
import json

import nbformat
from jupyter_ydoc import YNotebook
from pycrdt import Doc

from collab.sync import kinds


def _value(cells, metadata=None, minor=5) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = minor
    nb.metadata = metadata or {}
    nb.cells = cells
    return json.loads(json.dumps(nb))


def _live(value: dict) -> tuple[Doc, YNotebook]:
    doc: Doc = Doc()
    kinds.fill(doc, kinds.NOTEBOOK, value)
    return doc, YNotebook(doc)


def _cell(nb: YNotebook, cid: str):
    return next(c for c in nb.ycells if c["id"] == cid)


def _merge(doc: Doc, base: dict, theirs: dict) -> dict:
    base = kinds.file_value(kinds.NOTEBOOK, base)
    theirs = kinds.file_value(kinds.NOTEBOOK, theirs, base)
    kinds.merge_file(doc, kinds.NOTEBOOK, base, theirs)
    return kinds.content(doc, kinds.NOTEBOOK)


def test_moves_outputs_and_metadata_from_disk_keep_live_edits():
    base = _value(
        [
            nbformat.v4.new_code_cell("a = 1", id="a"),
            nbformat.v4.new_code_cell("b = 2", id="b", metadata={"tags": ["x"]}),
            nbformat.v4.new_markdown_cell("# c", id="c"),
            nbformat.v4.new_code_cell("d = 4", id="d"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    doc, nb = _live(kinds.file_value(kinds.NOTEBOOK, copy.deepcopy(base)))
    # Live: a is typed in, d is typed in, a live metadata key on the notebook.
    _cell(nb, "a")["source"].insert(5, "0")
    _cell(nb, "d")["source"].insert(0, "# live\n")
    nb._ymeta["metadata"]["live_key"] = "kept"
    # Disk: c moved to the front, b's output and tags changed, d deleted, a new
    # notebook metadata key, a's source changed elsewhere in the line.
    theirs = copy.deepcopy(base)
    a, b, c, _d = theirs["cells"]
    a["source"] = "a = 1  # disk"
    b["outputs"] = [
        json.loads(json.dumps(nbformat.v4.new_output("stream", name="stdout", text="2\n")))
    ]
    b["execution_count"] = 3
    b["metadata"] = {"tags": ["y"]}
    theirs["cells"] = [c, a, b]
    theirs["metadata"]["language_info"] = {"name": "python"}
    merged = _merge(doc, base, theirs)
    cells = {c["id"]: c for c in merged["cells"]}
    assert [c["id"] for c in merged["cells"]] == ["c", "a", "b", "d"]
    assert cells["a"]["source"] == "a = 10  # disk"
    assert cells["b"]["outputs"][0]["text"] == "2\n"
    assert cells["b"]["execution_count"] == 3
    assert cells["b"]["metadata"] == {"tags": ["y"]}
    # Deleted on disk but edited live: kept, with the live text.
    assert cells["d"]["source"] == "# live\nd = 4"
    assert merged["metadata"]["live_key"] == "kept"
    assert merged["metadata"]["language_info"] == {"name": "python"}
    assert merged["metadata"]["kernelspec"]["name"] == "python3"


def test_a_file_without_cell_ids_changed_on_disk_matches_cells_by_content():
    def old_cell(source):
        cell = nbformat.v4.new_code_cell(source)
        del cell["id"]
        return cell

    base = _value([old_cell("one"), old_cell("two"), old_cell("three")], minor=4)
    base_value = kinds.file_value(kinds.NOTEBOOK, copy.deepcopy(base))
    doc, nb = _live(base_value)
    ids = [c["id"] for c in nb.ycells]
    nb.ycells[1]["source"].insert(3, " (live)")
    # Disk: a cell inserted at the top, "three" edited; still no ids.
    theirs = _value(
        [old_cell("zero"), old_cell("one"), old_cell("two"), old_cell("three!")], minor=4
    )
    merged = _merge(doc, base, theirs)
    assert [c["source"] for c in merged["cells"]] == ["zero", "one", "two (live)", "three!"]
    assert [c["id"] for c in merged["cells"]][1:] == ids


def test_the_same_cell_added_on_both_sides_is_not_duplicated():
    base = _value([nbformat.v4.new_code_cell("x", id="x")])
    doc, nb = _live(kinds.file_value(kinds.NOTEBOOK, copy.deepcopy(base)))
    nb.append_cell(nbformat.v4.new_code_cell("y", id="y"))
    theirs = copy.deepcopy(base)
    theirs["cells"].append(json.loads(json.dumps(nbformat.v4.new_code_cell("y", id="y"))))
    merged = _merge(doc, base, theirs)
    assert [(c["id"], c["source"]) for c in merged["cells"]] == [("x", "x"), ("y", "y")]
