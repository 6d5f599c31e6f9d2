"""History lists, fetches and restores versions; compaction keeps every byte of content."""

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from jupyter_ydoc import YNotebook
from pycrdt import Doc, Text

from collab.config import Settings
from collab.sync import history, kinds
from collab.sync.manager import compaction_due
from collab.sync.store import Row
from tests.conftest import make_user, ws_connect
from tests.sync.yclient import connect, until


async def _rows(pool):
    return await pool.fetch("SELECT seq, data, last_at FROM yjs_updates ORDER BY seq")


def _text_of(rows) -> str:
    doc = Doc()
    for r in rows:
        doc.apply_update(r["data"])
    return str(doc.get("source", type=Text))


async def test_history_lists_fetches_and_restores_versions(server, user, project):
    async with connect(server, project, "story.txt", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        for text in ("first draft", " with more", " and an ending"):
            a.text.insert(len(str(a.text)), text)
            await a.wait_acked()
            await asyncio.sleep(1.2)
        async with ws_connect(server, user.key) as ws:
            answer = await ws.call("doc.history", {"project_id": str(project), "path": "story.txt"})
            versions = answer["result"]["versions"]
            assert len(versions) >= 3
            assert versions[0]["authors"] == [{"account_id": user.account_id, "name": "Test User"}]
            by_version = {}
            for v in versions:
                got = await ws.call(
                    "doc.version",
                    {"project_id": str(project), "path": "story.txt", "version": v["version"]},
                )
                by_version[v["version"]] = got["result"]["content"]
            assert by_version[versions[0]["version"]] == "first draft with more and an ending"
            assert {"first draft", "first draft with more"} <= set(by_version.values())
            oldest = next(v for v, text in by_version.items() if text == "first draft")
            restored = await ws.call(
                "doc.restore", {"project_id": str(project), "path": "story.txt", "version": oldest}
            )
            assert restored["result"] == {"restored": oldest}
            # Everyone in the room receives the restore as an ordinary change.
            await until(lambda: str(a.text) == "first draft")
            after = await ws.call("doc.history", {"project_id": str(project), "path": "story.txt"})
            assert after["result"]["versions"][0]["version"] > versions[0]["version"]


async def test_history_calls_check_access_and_arguments(server, user, project):
    stranger = await make_user(server)
    args = {"project_id": str(project), "path": "story.txt"}
    async with ws_connect(server, stranger.key) as ws:
        for call in ("doc.history", "doc.version", "doc.restore"):
            answer = await ws.call(call, {**args, "version": 1})
            assert answer["error"]["code"] in ("forbidden", "bad_args")
        assert (await ws.call("doc.history", args))["error"]["code"] == "forbidden"
    async with ws_connect(server, user.key) as ws:
        bad = [
            ("doc.history", {"project_id": 5, "path": "a"}, "bad_args"),
            ("doc.history", {"project_id": "nope", "path": "a"}, "bad_args"),
            ("doc.history", {**args, "path": "../x"}, "bad_path"),
            ("doc.history", {**args, "limit": 0}, "bad_args"),
            ("doc.history", {**args, "extra": 1}, "bad_args"),
            ("doc.version", {**args, "version": "1"}, "bad_args"),
            ("doc.version", {**args, "version": 10**9}, "not_found"),
            ("doc.restore", {**args, "version": -1}, "bad_args"),
        ]
        for call, call_args, code in bad:
            answer = await ws.call(call, call_args)
            assert answer["error"]["code"] == code, (call, call_args, answer)
        assert (await ws.call("doc.history", args))["result"] == {"versions": []}


async def test_compaction_preserves_content_and_bounds_rows(server, user, project):
    pool = server.services.pool
    async with (
        connect(server, project, "log.txt", user.key) as a,
        connect(server, project, "log.txt", user.key) as b,
    ):
        await asyncio.wait_for(a.synced.wait(), 10)
        await asyncio.wait_for(b.synced.wait(), 10)
        rng = random.Random(4)
        for i in range(300):
            c = a if i % 2 else b
            s = str(c.text)
            if s and rng.random() < 0.3:
                start = rng.randrange(len(s))
                del c.text[start : min(len(s), start + rng.randint(1, 5))]
            else:
                c.text.insert(rng.randint(0, len(s)), f"{i},")
            if i % 25 == 0:
                await asyncio.sleep(0.01)
        await a.wait_acked()
        await b.wait_acked()
        await until(lambda: str(a.text) == str(b.text))
        live = str(a.text)
    rooms = server.services.extra["rooms"]
    await until(lambda: not rooms.rooms)
    rows = await _rows(pool)
    assert _text_of(rows) == live
    # Spread the log over an hour, a day and two months so that every tier merges.
    now = datetime.now(UTC)
    ages = [timedelta(days=60), timedelta(days=2), timedelta(hours=3), timedelta(minutes=10)]
    for i, r in enumerate(rows):
        when = now - ages[i * len(ages) // len(rows)] + timedelta(milliseconds=i)
        await pool.execute(
            "UPDATE yjs_updates SET first_at = $2, last_at = $2 WHERE seq = $1", r["seq"], when
        )
    doc_id = await pool.fetchval("SELECT doc_id FROM yjs_documents")
    removed = await history.compact(pool, doc_id, "text", 5)
    after = await _rows(pool)
    assert removed == len(rows) - len(after) and len(after) < 10
    assert _text_of(after) == live
    # Idempotent: a second run finds nothing to merge and changes nothing.
    assert await history.compact(pool, doc_id, "text", 5) == 0
    async with connect(server, project, "log.txt", user.key) as c:
        await asyncio.wait_for(c.synced.wait(), 10)
        assert str(c.text) == live


async def test_compaction_that_would_lose_content_changes_nothing(
    server, user, project, monkeypatch
):
    pool = server.services.pool
    async with connect(server, project, "keep.txt", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        for i in range(20):
            a.text.insert(0, f"{i} ")
        await a.wait_acked()
    before = await _rows(pool)
    doc_id = await pool.fetchval("SELECT doc_id FROM yjs_documents")
    # A merge that drops content (the failure pycrdt-store's squash had) is caught by
    # the reload check and the transaction rolls back.
    monkeypatch.setattr(history, "merge_updates", lambda *updates: updates[0])
    with pytest.raises(history.CompactionError):
        await history.compact(pool, doc_id, "text", 3600)
    assert await _rows(pool) == before


async def test_compacted_notebook_keeps_cells(server, user, project):
    pool = server.services.pool
    async with connect(server, project, "nb.ipynb", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        nb = YNotebook(a.doc)
        for i in range(10):
            nb.append_cell({"cell_type": "code", "source": f"print({i})", "id": f"c{i}"})
        nb.ycells[3]["source"].insert(0, "# edited\n")
        del nb.ycells[5]
        await a.wait_acked()
        expected = nb.get()
    doc_id = await pool.fetchval("SELECT doc_id FROM yjs_documents")
    assert await history.compact(pool, doc_id, "notebook", 3600) > 0
    doc = Doc()
    for r in await _rows(pool):
        doc.apply_update(r["data"])
    assert YNotebook(doc).get() == expected


async def _write_text(server, project, user, path: str, n: int) -> str:
    async with connect(server, project, path, user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        for i in range(n):
            a.text.insert(len(str(a.text)), f"{i} ")
        await a.wait_acked()
        return str(a.text)


async def test_rows_written_while_compaction_plans_are_kept(server, user, project, monkeypatch):
    """The merge is planned outside the writer lock: an update stored meanwhile is
    neither merged nor lost."""
    pool = server.services.pool
    live = await _write_text(server, project, user, "busy.txt", 30)
    doc_id = await pool.fetchval("SELECT doc_id FROM yjs_documents")
    loop = asyncio.get_running_loop()
    extra = history.build([r["data"] for r in await _rows(pool)])
    before = extra.get_state()
    extra.get("source", type=Text).insert(0, "late ")
    late = extra.get_update(before)
    plan = history._plan

    def plan_while_writing(*args):
        # Runs in the compaction thread; the write commits before the swap.
        asyncio.run_coroutine_threadsafe(
            pool.execute(
                "INSERT INTO yjs_updates (doc_id, data, origin) VALUES ($1, $2, 'other')",
                doc_id,
                late,
            ),
            loop,
        ).result(20)
        return plan(*args)

    monkeypatch.setattr(history, "_plan", plan_while_writing)
    assert await history.compact(pool, doc_id, "text", 3600) > 0
    rows = await _rows(pool)
    assert rows[-1]["data"] == late
    assert _text_of(rows) == "late " + live


async def test_incremental_compaction_leaves_the_merged_prefix_alone(server, user, project):
    """A second compaction merges only what came after the first: the rows it merged
    before keep their seq and bytes, and the content is whole."""
    pool = server.services.pool
    await _write_text(server, project, user, "grow.txt", 40)
    doc_id = await pool.fetchval("SELECT doc_id FROM yjs_documents")
    old = datetime.now(UTC) - timedelta(days=2)
    await pool.execute("UPDATE yjs_updates SET first_at = $1, last_at = $1", old)
    assert await history.compact(pool, doc_id, "text", 5) > 0
    first = await _rows(pool)
    assert len(first) == 1
    live = await _write_text(server, project, user, "grow.txt", 40)
    assert await history.compact(pool, doc_id, "text", 3600) > 0
    second = await _rows(pool)
    assert second[0]["seq"] == first[0]["seq"] and second[0]["data"] == first[0]["data"]
    assert len(second) == 2
    assert _text_of(second) == live


async def test_incremental_compaction_still_catches_a_bad_merge(server, user, project, monkeypatch):
    pool = server.services.pool
    await _write_text(server, project, user, "check.txt", 20)
    doc_id = await pool.fetchval("SELECT doc_id FROM yjs_documents")
    old = datetime.now(UTC) - timedelta(days=2)
    await pool.execute("UPDATE yjs_updates SET first_at = $1, last_at = $1", old)
    assert await history.compact(pool, doc_id, "text", 5) > 0
    await _write_text(server, project, user, "check.txt", 20)
    before = await _rows(pool)
    # Only the new rows are merged (the prefix is one row): a merge that drops content
    # there must still roll everything back.
    monkeypatch.setattr(history, "merge_updates", lambda *updates: updates[0])
    with pytest.raises(history.CompactionError):
        await history.compact(pool, doc_id, "text", 3600)
    assert await _rows(pool) == before


async def test_manager_compacts_in_its_worker_process(server, user, project):
    pool = server.services.pool
    live = await _write_text(server, project, user, "worker.txt", 50)
    doc_id = await pool.fetchval("SELECT doc_id FROM yjs_documents")
    rooms = server.services.extra["rooms"]
    assert await rooms.compact(doc_id, "text") > 0
    assert rooms._compactor is not None  # the merge ran in the spawned worker
    rows = await _rows(pool)
    assert len(rows) < 50 and _text_of(rows) == live


def test_a_hot_room_is_compacted_only_when_quiet_or_past_the_cap():
    s = Settings(sync_compact_rows=1000, sync_compact_quiet_ms=10000, sync_compact_max_rows=20000)
    assert not compaction_due(999, 3600, s)
    assert not compaction_due(5000, 0.5, s)  # hot: still being written
    assert compaction_due(5000, 10.0, s)  # quiet now
    assert compaction_due(20000, 0.0, s)  # hot for too long: the log stays bounded


def _row(seq: int, data: bytes, when: datetime) -> Row:
    return Row(seq=seq, data=data, first_at=when, last_at=when, authors=[], merged=1)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.booleans(),
            st.integers(0, 1000),
            st.text(alphabet="abcxyz ", min_size=1, max_size=4),
            st.integers(0, 90 * 86400),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_merge_plan_never_changes_the_document(edits):
    """Three replicas edit concurrently (inserts, deletes, interleaved delivery); whatever
    the timestamps, the compacted log reloads to the same text."""
    now = datetime.now(UTC)
    docs = [Doc() for _ in range(3)]
    rows: list[Row] = []
    for seq, (who, delete, pos, text, age) in enumerate(edits, start=1):
        doc = docs[who]
        t = doc.get("source", type=Text)
        state = doc.get_state()
        s = str(t)
        if delete and s:
            start = pos % len(s)
            del t[start : min(len(s), start + 1 + pos % 3)]
        else:
            t.insert(pos % (len(s) + 1), text)
        update = doc.get_update(state)
        rows.append(_row(seq, update, now - timedelta(seconds=age)))
        if seq % 3 == 0:  # occasional sync between replicas
            for other in docs:
                other.apply_update(doc.get_update())
    plan = history._plan(rows, kinds.TEXT, now, 5)
    merged_seqs = {r.seq for run, _ in plan for r in run}
    result = sorted(
        [r for r in rows if r.seq not in merged_seqs] + [m for _, m in plan], key=lambda r: r.seq
    )
    full = history.build(rows)
    assert history.same_document(full, history.build(result), kinds.TEXT)


def test_the_first_row_is_a_version_of_its_own_for_an_hour():
    """The document as loaded from its file stays a restore point even when edits follow
    within the same bucket; after an hour it coarsens like the rest."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(seconds=now.timestamp() % 5) - timedelta(seconds=10)
    rows = [_row(i, b"", start + timedelta(milliseconds=100 * i)) for i in range(1, 4)]
    assert [[r.seq for r in run] for run in history.group(rows, now, 5)] == [[1], [2, 3]]
    later = now + timedelta(hours=2)
    assert [[r.seq for r in run] for run in history.group(rows, later, 5)] == [[1, 2, 3]]
