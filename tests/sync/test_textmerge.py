"""Properties of the three-way text merge that brings a file changed on disk into a live
document: both sides' changes survive, an identical change is applied once, and an
overlapping conflict keeps both sides' text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.sync import textmerge

# Base text is made of characters that occur once (plus newlines, each after one of
# them), and every edit inserts characters of its own: which change is whose is then
# unambiguous.
_BASE = [chr(0x4E00 + i) for i in range(400)]
_NEW = iter(chr(0xAC00 + i) for i in range(10**6))

LIVE, THEIRS, BOTH = "live", "theirs", "both"

segment = st.tuples(
    st.integers(1, 6),  # base characters kept before the edit (at least one)
    st.sampled_from([LIVE, THEIRS, BOTH]),
    st.integers(0, 5),  # base characters the edit replaces (0: an insertion)
    st.integers(0, 4),  # characters it inserts (0: a deletion)
    st.booleans(),  # a newline among the kept characters (exercises the line pass)
)


def _build(segments, tail, pool):
    base, live, theirs, expected = [], [], [], []
    for keep, owner, width, inserted, newline in segments:
        kept = [next(pool) for _ in range(keep)]
        if newline:
            # After a character of its own: lines stay distinct, so the alignment is
            # unambiguous (with repeated lines a diff may align an identical change
            # differently on the two sides and keep it twice).
            kept.append("\n")
        removed = [next(pool) for _ in range(width)]
        new = [next(_NEW) for _ in range(inserted)]
        base += kept + removed
        expected += kept + new
        live += kept + (new if owner in (LIVE, BOTH) else removed)
        theirs += kept + (new if owner in (THEIRS, BOTH) else removed)
    rest = [next(pool) for _ in range(tail)]
    return ("".join(x + rest) for x in (base, live, theirs, expected))


@settings(max_examples=300, deadline=None)
@given(st.lists(segment, max_size=12), st.integers(0, 5))
def test_disjoint_changes_of_both_sides_all_survive(segments, tail):
    base, live, theirs, expected = _build(segments, tail, iter(_BASE))
    assert textmerge.merge(base, live, theirs) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.integers(2, 60),
    st.data(),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_overlapping_changes_keep_both_sides_text(length, data, n_live, n_theirs):
    base = "".join(_BASE[:length])
    a = data.draw(st.integers(0, length - 1))
    b = data.draw(st.integers(a + 1, length))
    c = data.draw(st.integers(max(0, a - 3), b - 1))  # [c, d) overlaps [a, b)
    d = data.draw(st.integers(max(c + 1, a + 1), length))
    mine = "".join(next(_NEW) for _ in range(n_live))
    yours = "".join(next(_NEW) for _ in range(n_theirs))
    live = base[:a] + mine + base[b:]
    theirs = base[:c] + yours + base[d:]
    merged = textmerge.merge(base, live, theirs)
    assert mine in merged
    assert yours in merged
    # Every base character neither side deleted is still there.
    gone = set(base[a:b]) | set(base[c:d])
    assert all(ch in merged for ch in base if ch not in gone)


@settings(max_examples=300, deadline=None)
@given(st.text("ab\n", max_size=30), st.text("ab\n", max_size=30))
def test_one_sided_changes_are_exact(base, other):
    assert textmerge.merge(base, base, other) == other
    assert textmerge.merge(base, other, base) == other
    assert textmerge.merge(base, other, other) == other


@settings(max_examples=200, deadline=None)
@given(
    st.text("ab\n😀é", max_size=20),
    st.text("ab\n😀é", max_size=20),
    st.text("ab\n😀é", max_size=20),
)
def test_edits_applied_to_a_ytext_give_the_merge(base, live, theirs):
    # Y.Text is indexed by UTF-8 byte; the edits are in code points.
    doc = Doc()
    text = doc.get("source", type=Text)
    text += live
    changes = textmerge.edits(base, live, theirs)
    with doc.transaction():
        textmerge.apply(text, live, changes)
    assert str(text) == textmerge.replay(live, changes)
    # Whatever the overlap, live's insertions are never dropped.
    if base == "":
        assert live in str(text) or all(ch in str(text) for ch in live)


def test_issue_reproduction_keeps_the_live_insertion_and_the_file_change():
    assert textmerge.merge("one\ntwo\n", "oneXYZ\ntwo\n", "one\ntwo!\n") == "oneXYZ\ntwo!\n"


def test_the_same_line_changed_differently_keeps_both_versions():
    merged = textmerge.merge("x = 1\nend\n", "x = 31\nend\n", "x = 2\nend\n")
    assert merged == "x = 32\nend\n"
    merged = textmerge.merge("a\nsame line\nb\n", "a\nlive line\nb\n", "a\ndisk words\nb\n")
    assert "live" in merged and "disk" in merged and "words" in merged


def test_large_documents_merge_line_by_line():
    base = "".join(f"line {i}\n" for i in range(20_000))
    live = base.replace("line 5\n", "line 5 typed\n")
    theirs = base.replace("line 19000\n", "LINE 19000\n")
    merged = textmerge.merge(base, live, theirs)
    assert "line 5 typed\n" in merged and "LINE 19000\n" in merged
    assert len(merged) == len(base) + len(" typed")
