"""StreamBuffer properties: chunking never changes the text, and the dirty tails it
reports rebuild exactly the text (they are what the writer applies to the Y.Text)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collab.kernels.stream import StreamBuffer

chunks = st.lists(st.text(alphabet="ab\n\r\bé", max_size=12), max_size=30)


@given(chunks)
def test_chunking_does_not_change_the_text(parts):
    whole, pieces = StreamBuffer(), StreamBuffer()
    whole.feed("".join(parts))
    for part in parts:
        pieces.feed(part)
    assert pieces.text == whole.text


@given(chunks)
def test_dirty_tails_rebuild_the_text(parts):
    buf = StreamBuffer()
    mirror = ""
    for part in parts:
        buf.feed(part)
        change = buf.take_dirty()
        if change is not None:
            offset, tail = change
            assert offset <= len(mirror)
            mirror = mirror[:offset] + tail
        assert mirror == buf.text


def test_a_progress_bar_stays_one_line():
    buf = StreamBuffer()
    for i in range(1000):
        buf.feed(f"\r{i:4d}/1000")
    buf.feed("\n")
    assert buf.text == " 999/1000\n"


@given(chunks, st.lists(st.booleans(), max_size=30))
def test_the_shared_text_matches_the_stream_through_any_flushes(parts, flushes):
    from jupyter_ydoc import YNotebook
    from pycrdt import Doc

    from collab.kernels.outputs import OutputWriter
    from tests.kernels.conftest import cells, notebook

    doc = Doc()
    YNotebook(doc).set(notebook([("c", "")]))
    writer = OutputWriter(doc)
    writer.begin("c")
    for i, part in enumerate(parts):
        writer.message("c", "stream", {"name": "stdout", "text": part})
        if i < len(flushes) and flushes[i]:
            writer.flush()
    writer.finish("c")
    expected = StreamBuffer()
    expected.feed("".join(parts))
    outputs = cells(doc)["c"]["outputs"]
    assert "".join(o["text"] for o in outputs) == expected.text
