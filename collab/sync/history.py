"""History ("TimeTravel") and compaction: a document's versions are runs of its log rows
grouped by time, finer for recent edits and coarser with age; compaction merges each run
into one row, verified by reloading before anything is deleted."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pycrdt import Array, Doc, Map, Text, merge_updates

from collab.sync import kinds
from collab.sync.store import Row, lock_document

log = logging.getLogger(__name__)


class CompactionError(RuntimeError):
    """The merged log does not reload to the same document; nothing was changed."""


def _width(age: float, granularity: int) -> float | None:
    # Versions every `granularity` seconds for the last hour, then a minute for a day,
    # an hour for a month; older history is one snapshot.
    if age < 3600:
        return float(granularity)
    if age < 86400:
        return 60.0
    if age < 30 * 86400:
        return 3600.0
    return None


def group(rows: list[Row], now: datetime, granularity: int) -> list[list[Row]]:
    """Consecutive rows that fall in one time bucket form one version.

    The log's first row (the document as first loaded, usually from its file) is a
    version of its own for the hour of fine-grained history: edits made in the same
    bucket as the load must not hide the state before them."""
    groups: list[list[Row]] = []
    last_key: Any = object()
    for at, row in enumerate(rows):
        age = (now - row.last_at).total_seconds()
        width = _width(age, granularity)
        if width is None:
            key: Any = ("old",)
        elif at == 0 and age < 3600:
            key = ("first",)
        else:
            key = (width, int(row.last_at.timestamp() // width))
        if groups and key == last_key:
            groups[-1].append(row)
        else:
            groups.append([row])
        last_key = key
    return groups


def versions(rows: list[Row], now: datetime, granularity: int) -> list[dict[str, Any]]:
    out = []
    for run in group(rows, now, granularity):
        authors: list[str] = []
        for row in run:
            for author in row.authors:
                if str(author) not in authors:
                    authors.append(str(author))
        out.append(
            {
                "version": run[-1].seq,
                "first": run[0].first_at.isoformat(),
                "time": run[-1].last_at.isoformat(),
                "authors": authors,
                "updates": sum(r.merged for r in run),
            }
        )
    return out


def fingerprint(doc: Doc, kind: str) -> Any:
    """What must survive compaction: the document's content, read through its kind."""
    if kind == kinds.NOTEBOOK:
        return (doc.get("cells", type=Array).to_py(), doc.get("meta", type=Map).to_py())
    if kind == kinds.TEXT:
        return str(doc.get("source", type=Text))
    return None


def same_document(a: Doc, b: Doc, kind: str) -> bool:
    """Neither document has an item the other lacks, nor a deletion the other lacks, and
    both read the same. (A diff update always carries the whole delete set, so deletions
    are compared by merging each into the other and checking that nothing changes.)"""

    def lacks_nothing(x: Doc, y: Doc) -> bool:
        return x.get_update(y.get_state())[:1] == b"\x00"

    def merged(x: Doc, y: Doc) -> Any:
        both: Doc = Doc()
        both.apply_update(x.get_update())
        both.apply_update(y.get_update())
        return fingerprint(both, kind)

    return (
        lacks_nothing(a, b)
        and lacks_nothing(b, a)
        and fingerprint(a, kind) == fingerprint(b, kind) == merged(a, b)
    )


def _plan(
    rows: list[Row], kind: str, now: datetime, granularity: int
) -> list[tuple[list[Row], Row]]:
    """The runs to merge, each with its merged row; raises CompactionError if the new log
    would not reload to the document the old one gives.

    Incremental: rows before the first run to merge stay as they are, so they are folded
    into one base update (merge_updates keeps structs still waiting for a dependency,
    which a Doc's own encoding would drop) and only the tail is replayed, twice."""
    plan: list[tuple[list[Row], Row]] = []
    tail: list[Row] = []
    start: int | None = None
    at = 0
    for run in group(rows, now, granularity):
        if len(run) > 1 and start is None:
            start = at
        at += len(run)
        if start is None:
            continue
        if len(run) == 1:
            tail.append(run[0])
            continue
        authors: list[Any] = []
        for row in run:
            authors.extend(a for a in row.authors if a not in authors)
        merged = Row(
            seq=run[-1].seq,
            data=merge_updates(*[r.data for r in run]),
            first_at=run[0].first_at,
            last_at=run[-1].last_at,
            authors=authors,
            merged=sum(r.merged for r in run),
        )
        plan.append((run, merged))
        tail.append(merged)
    if start is None:
        return plan
    prefix = [r.data for r in rows[:start]]
    base = [merge_updates(*prefix)] if len(prefix) > 1 else prefix
    before = base + [r.data for r in rows[start:]]
    after = base + [r.data for r in tail]
    if not same_document(build(before), build(after), kind):
        raise CompactionError("the merged log does not reload to the same document")
    return plan


def build(rows: list[Row] | list[bytes]) -> Doc:
    doc: Doc = Doc()
    for row in rows:
        doc.apply_update(row.data if isinstance(row, Row) else row)
    return doc


async def compact(
    pool: asyncpg.Pool,
    doc_id: int,
    kind: str,
    granularity: int,
    now: datetime | None = None,
    executor: Executor | None = None,
) -> int:
    """Merge the document's log; returns how many rows were removed.

    The merge and its check run on a snapshot of the log, outside any lock, in
    `executor` (the manager's worker process: it takes no GIL from the event loop) or
    else a thread. Only the short swap holds the document's writer lock: it checks that
    the rows it merged are still the log's (another process may have compacted
    meanwhile: then it does nothing), and rows appended since are left alone."""
    rows = [
        Row(**dict(r))
        for r in await pool.fetch(
            """SELECT seq, data, first_at, last_at, authors, merged FROM yjs_updates
               WHERE doc_id = $1 ORDER BY seq""",
            doc_id,
        )
    ]
    if not rows:
        return 0
    when = now or datetime.now(UTC)
    if executor is None:
        plan = await asyncio.to_thread(_plan, rows, kind, when, granularity)
    else:
        loop = asyncio.get_running_loop()
        plan = await loop.run_in_executor(executor, _plan, rows, kind, when, granularity)
    if not plan:
        return 0
    upto = rows[-1].seq
    gone = [row.seq for run, _ in plan for row in run]
    gone_set = set(gone)
    expected = sorted(
        [(r.seq, r.data) for r in rows if r.seq not in gone_set]
        + [(m.seq, m.data) for _, m in plan]
    )
    async with pool.acquire() as conn, conn.transaction():
        await lock_document(conn, doc_id)
        current = await conn.fetch(
            "SELECT seq FROM yjs_updates WHERE doc_id = $1 AND seq <= $2 ORDER BY seq",
            doc_id,
            upto,
        )
        if [r["seq"] for r in current] != [r.seq for r in rows]:
            return 0
        await conn.execute(
            "DELETE FROM yjs_updates WHERE doc_id = $1 AND seq = ANY($2::bigint[])", doc_id, gone
        )
        await conn.executemany(
            """INSERT INTO yjs_updates (doc_id, seq, data, first_at, last_at, authors, merged)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            [(doc_id, m.seq, m.data, m.first_at, m.last_at, m.authors, m.merged) for _, m in plan],
        )
        # Reread the merged part inside the transaction: it must be, byte for byte, the
        # log _plan verified, or everything rolls back.
        reloaded = await conn.fetch(
            "SELECT seq, data FROM yjs_updates WHERE doc_id = $1 AND seq <= $2 ORDER BY seq",
            doc_id,
            upto,
        )
        if [(r["seq"], bytes(r["data"])) for r in reloaded] != expected:
            raise CompactionError("the compacted log does not reload to the same document")
        removed = len(gone) - len(plan)
    log.info(
        "document compacted",
        extra={"event": "sync.compacted", "doc_id": doc_id, "removed": removed},
    )
    return removed
