"""Three-way text merge for out-of-band file changes: the change from the base (what the
mirror last wrote or read) to the file, as edits positioned in the live text, so that
live edits made since the base survive. Pure functions; `apply` turns the edits into
Y.Text operations."""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import TypeVar

from pycrdt import Text

# (start, end, replacement) in the live text's code points, ascending, non-overlapping.
Edit = tuple[int, int, str]
T = TypeVar("T")

# Character-level diffs are quadratic in the worst case: regions larger than this are
# merged line by line only.
MAX_CHAR_REGION = 4_000


def merge(base: str, live: str, theirs: str) -> str:
    """`live` with the change base→theirs applied (what `apply` makes of a Y.Text)."""
    return replay(live, edits(base, live, theirs))


def replay(live: str, changes: list[Edit]) -> str:
    out, at = [], 0
    for start, end, text in changes:
        out.append(live[at:start])
        out.append(text)
        at = end
    out.append(live[at:])
    return "".join(out)


def edits(base: str, live: str, theirs: str) -> list[Edit]:
    """The edits that bring the change base→theirs into `live`. Where live and theirs
    changed the same base text differently, both versions are kept (live's first);
    a change both made identically is applied once."""
    if theirs == base or theirs == live:
        return []
    if live == base:
        return _two_way(live, theirs, 0)
    b, lv, th = (s.splitlines(keepends=True) for s in (base, live, theirs))
    out: list[Edit] = []
    live_at = 0  # code point offset of lv[l0] in live
    lpos = 0
    for (b0, b1), (l0, l1), (t0, t1) in _unstable_regions(b, lv, th):
        live_at += sum(len(x) for x in lv[lpos:l0])
        lpos = l0
        rb, rl, rt = "".join(b[b0:b1]), "".join(lv[l0:l1]), "".join(th[t0:t1])
        if rt == rb or rt == rl:
            continue
        if rl == rb:
            out.extend(_two_way(rl, rt, live_at))
        else:
            # Both changed these lines: merged by character where the two changes do
            # not overlap, else by line (both versions of the lines are kept, rather
            # than characters of the two interleaved).
            hunks = None
            if len(rb) + len(rl) + len(rt) <= MAX_CHAR_REGION:
                hunks, clash = _map_hunks(rb, rl, rt)
            if hunks is not None and not clash:
                out.extend((live_at + s, live_at + e, str(t)) for s, e, t in hunks)
            else:
                out.extend(_three_way_lines(b[b0:b1], lv[l0:l1], th[t0:t1], live_at))
    return out


def _blocks(a: Sequence[T], b: Sequence[T]) -> list[tuple[int, int, int]]:
    """difflib's matching blocks, fast where it matters: the common head and tail are
    matched directly (a file change and live typing are usually local), and a long
    middle is matched with difflib's junk heuristic (lines that recur everywhere,
    such as blank ones, do not anchor a match), which keeps it near linear."""
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    mid_a, mid_b = a[head : len(a) - tail], b[head : len(b) - tail]
    blocks = [(0, 0, head)] if head else []
    if mid_a and mid_b:
        matcher = SequenceMatcher(None, mid_a, mid_b, autojunk=len(mid_a) + len(mid_b) > 2000)
        blocks += [(i + head, j + head, k) for i, j, k in matcher.get_matching_blocks() if k]
    if tail:
        blocks.append((len(a) - tail, len(b) - tail, tail))
    merged: list[tuple[int, int, int]] = []
    for i, j, k in blocks:
        if merged and merged[-1][0] + merged[-1][2] == i and merged[-1][1] + merged[-1][2] == j:
            merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + k)
        else:
            merged.append((i, j, k))
    merged.append((len(a), len(b), 0))
    return merged


def _opcodes(a: Sequence[T], b: Sequence[T]) -> list[tuple[str, int, int, int, int]]:
    """As difflib's get_opcodes, from `_blocks`."""
    ops: list[tuple[str, int, int, int, int]] = []
    i = j = 0
    for ai, bj, size in _blocks(a, b):
        if i < ai and j < bj:
            ops.append(("replace", i, ai, j, bj))
        elif i < ai:
            ops.append(("delete", i, ai, j, bj))
        elif j < bj:
            ops.append(("insert", i, ai, j, bj))
        i, j = ai + size, bj + size
        if size:
            ops.append(("equal", ai, i, bj, j))
    return ops


def _two_way(live: str, theirs: str, offset: int) -> list[Edit]:
    """Minimal edits turning `live` into `theirs` (only one side changed)."""
    if len(live) + len(theirs) > MAX_CHAR_REGION:
        a, b = live.splitlines(keepends=True), theirs.splitlines(keepends=True)
        out, at = [], offset
        pos = 0
        for tag, i1, i2, j1, j2 in _opcodes(a, b):
            at += sum(len(x) for x in a[pos:i1])
            pos = i1
            if tag != "equal":
                width = sum(len(x) for x in a[i1:i2])
                out.append((at, at + width, "".join(b[j1:j2])))
        return out
    return [
        (offset + i1, offset + i2, theirs[j1:j2])
        for tag, i1, i2, j1, j2 in _opcodes(live, theirs)
        if tag != "equal"
    ]


def _unstable_regions(
    base: Sequence[T], live: Sequence[T], theirs: Sequence[T]
) -> list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
    """The stretches between the parts of `base` both sides kept (as in diff3): each is
    (base range, live range, theirs range)."""
    ml = _blocks(base, live)
    mt = _blocks(base, theirs)
    syncs: list[tuple[int, int, int, int]] = []  # base start, base end, live start, theirs start
    il = it = 0
    while il < len(ml) and it < len(mt):
        lb, lm, ln = ml[il]
        tb, tm, tn = mt[it]
        lo, hi = max(lb, tb), min(lb + ln, tb + tn)
        if lo < hi:
            syncs.append((lo, hi, lm + lo - lb, tm + lo - tb))
        if lb + ln < tb + tn:
            il += 1
        else:
            it += 1
    syncs.append((len(base), len(base), len(live), len(theirs)))
    regions = []
    bz = lz = tz = 0
    for b0, b1, l0, t0 in syncs:
        if b0 > bz or l0 > lz or t0 > tz:
            regions.append(((bz, b0), (lz, l0), (tz, t0)))
        bz, lz, tz = b1, l0 + (b1 - b0), t0 + (b1 - b0)
    return regions


def _three_way_lines(
    base: list[str], live: list[str], theirs: list[str], offset: int
) -> list[Edit]:
    starts = [0]
    for line in live:
        starts.append(starts[-1] + len(line))
    return [
        (offset + starts[s], offset + starts[e], "".join(t))
        for s, e, t in _map_hunks(base, live, theirs)[0]
    ]


def _map_hunks(
    base: Sequence[T], live: Sequence[T], theirs: Sequence[T]
) -> tuple[list[tuple[int, int, Sequence[T]]], bool]:
    """Each hunk of base→theirs as an edit of `live` (item indices). The base items the
    hunk removes are removed from live where live still has them; its new items go in
    at the hunk's place (see `_right`). So, as for two concurrent CRDT edits, every
    deletion holds and every insertion is kept. Also says whether any hunk overlapped
    a change of live's other than by inserting at the same point."""
    live_ops = _opcodes(base, live)
    their_ops = _opcodes(base, theirs)
    out: list[tuple[int, int, Sequence[T]]] = []
    clash = False
    for tag, i1, i2, j1, j2 in their_ops:
        if tag == "equal":
            continue
        new = theirs[j1:j2]
        changed = [op for op in live_ops if op[0] != "equal" and _touches(op, i1, i2)]
        if len(changed) == 1 and changed[0][1:3] == (i1, i2):
            _, _, _, k1, k2 = changed[0]
            if list(live[k1:k2]) == list(new):
                continue  # the same change on both sides
        # Two insertions at one point are kept side by side; anything else that
        # overlaps is a clash (merged by character it could interleave the two).
        clash = clash or any(not (op[1] == op[2] == i1 == i2) for op in changed)
        # Whole lines inserted at a line start go above what live typed there (live
        # typed into the line that follows); otherwise live's insertion comes first.
        above = (
            isinstance(base, str) and str(new).endswith("\n") and (i1 == 0 or base[i1 - 1] == "\n")
        )
        at = _right(live_ops, i1, above)
        pieces: list[tuple[int, int]] = []
        for op in live_ops:
            if op[0] != "equal":
                continue
            lo, hi = max(op[1], i1), min(op[2], i2)
            if lo < hi:
                pieces.append((op[3] + lo - op[1], op[3] + hi - op[1]))
        if pieces and pieces[0][0] == at:
            out.append((pieces[0][0], pieces[0][1], new))
            out.extend((s, e, new[:0]) for s, e in pieces[1:])
        else:
            out.append((at, at, new))
            out.extend((s, e, new[:0]) for s, e in pieces)
    out.sort(key=lambda e: (e[0], e[1]))
    return out, clash


def _touches(op: tuple[str, int, int, int, int], i1: int, i2: int) -> bool:
    """Whether live's change `op` overlaps theirs on base [i1, i2)."""
    _, a1, a2, _, _ = op
    if a1 == a2:  # live inserted at a1
        return i1 < a1 < i2 or (i1 == i2 == a1)
    if i1 == i2:  # theirs inserts inside what live replaced
        return a1 < i1 < a2
    return a1 < i2 and i1 < a2


def _right(live_ops: Sequence[tuple[str, int, int, int, int]], p: int, above: bool = False) -> int:
    """Where base boundary `p` lands in live: after anything live inserted there
    (before it if `above`), before live's text if live replaced a stretch starting
    there, and after it if live replaced a stretch around it."""
    at = 0
    for tag, i1, i2, j1, j2 in live_ops:
        if i1 <= p <= i2 and tag == "equal":
            at = j1 + p - i1
            if p < i2:
                return at
        elif tag == "insert" and i1 == p:
            return j1 if above else j2
        elif i1 < p < i2 or (i1 == p and p < i2):
            return j2 if i1 < p else j1
        elif i1 > p:
            return at
    return at if live_ops else 0


def apply(text: Text, live: str, changes: list[Edit]) -> None:
    """Apply `edits(…, live, …)` to the Y.Text whose content is `live` (pycrdt indexes
    Y.Text by UTF-8 byte). Call inside a transaction."""
    for start, end, new in reversed(changes):
        b0 = len(live[:start].encode("utf-8"))
        b1 = b0 + len(live[start:end].encode("utf-8"))
        if b1 > b0:
            del text[b0:b1]
        if new:
            text.insert(b0, new)
