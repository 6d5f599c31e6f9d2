"""RoomManager: the rooms of this process. Loads a room once however many arrive at a
cold document, unloads it after its last hold goes (after flushing the log and the file),
listens for other processes' updates, and mirrors documents to and from their files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from collab.config import Settings
from collab.db.pool import connect
from collab.services import Services
from collab.sync import filebase, history, kinds, mirror, paths, relocate
from collab.sync.awareness import Limits, Presence, Reservations
from collab.sync.nbfile import NotebookFile
from collab.sync.protocol import CLOSE_DELETED, CLOSE_MOVED
from collab.sync.room import DocumentTooLarge, Room
from collab.sync.store import CHANNEL, UpdateStore

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0
# A file modified less than this long ago is left to its writer for now.
SETTLE_NS = 100_000_000
RECORD_SLOTS = 2
EMPTY_UPDATE = b"\x00\x00"
# Polls a file must stay missing before its document counts as deleted (a program that
# deletes and then rewrites a file, as some tools save, is not a deletion).
MISSING_POLLS = 2


class _Reappeared(Exception):
    """The file is back: the deletion is not recorded."""


class RoomManager:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.store = UpdateStore(services.pool, origin=uuid.uuid4().hex)
        self.rooms: dict[tuple[UUID, str], Room] = {}
        self.reservations = Reservations()
        self._by_doc: dict[int, Room] = {}
        self._loading: dict[tuple[UUID, str], asyncio.Task[Room]] = {}
        self._unloading: dict[tuple[UUID, str], asyncio.Task[None]] = {}
        self._catching_up: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        self._mirror_handles: dict[int, asyncio.TimerHandle] = {}
        # One file operation (merge or write) at a time per document in this process.
        self._file_locks: dict[int, asyncio.Lock] = {}
        # The hash of a changed file that could not be merged (not UTF-8, not a
        # notebook, too large): it is not overwritten, and reported once.
        self._unreadable: dict[int, str] = {}
        # Holders of a file record lock keep a pool connection, and a merge waits for
        # the update store (which needs one too): bounded, so a git pull that changes
        # many open documents cannot take the whole pool.
        self._record_slots = asyncio.Semaphore(RECORD_SLOTS)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncpg.Connection | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        # Rooms closed because their file was moved or deleted: (close code, reason) for
        # a client that reaches one before its close.
        self._retired: weakref.WeakKeyDictionary[Room, tuple[int, str]] = (
            weakref.WeakKeyDictionary()
        )
        # Consecutive polls that found a document's file missing.
        self._missing: dict[int, int] = {}
        self._compacting: set[int] = set()
        self._compactor: ProcessPoolExecutor | None = None

    # -- public interface ------------------------------------------------------------

    async def open(self, project_id: UUID, path: str) -> Room:
        """Load (or join the live) room for a document and hold it open until close()."""
        key = (project_id, paths.normalize(path))
        while True:
            unloading = self._unloading.get(key)
            if unloading is not None:
                await asyncio.shield(unloading)
                continue
            room = self.rooms.get(key)
            if room is not None and not room.closing:
                room.holds += 1
                if room.unload_handle is not None:
                    room.unload_handle.cancel()
                    room.unload_handle = None
                return room
            task = self._loading.get(key)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._load(*key))
                self._loading[key] = task
                task.add_done_callback(partial(self._loaded, key))
            await asyncio.shield(task)

    def _loaded(self, key: tuple[UUID, str], _task: asyncio.Task[Room]) -> None:
        self._loading.pop(key, None)

    async def close(self, room: Room) -> None:
        """Release one hold; the room unloads after the unload delay if none is left."""
        room.holds -= 1
        if room in self._retired:
            if room.holds <= 0:
                room.stop()
            return
        if self._stopping:
            return  # stop() unloads every room itself
        if room.holds <= 0 and room.unload_handle is None and not room.closing:
            delay = self.settings.sync_unload_delay_ms / 1000
            room.unload_handle = asyncio.get_running_loop().call_later(
                delay, self._start_unload, room
            )

    def retired(self, room: Room) -> tuple[int, str] | None:
        """The close code and reason if the room's file was moved or deleted."""
        return self._retired.get(room)

    @contextlib.asynccontextmanager
    async def relocating(self, project_id: UUID, path: str, to: str | None) -> AsyncIterator[None]:
        """Around a file operation that moves `path` to `to` (or deletes it, `to`
        None), a file or a folder: the documents there follow it (moved rows keep their
        history; deleted ones become tombstones), no mirror write can put the old file
        back, and every process closes their rooms: 4409 with the new path as reason, or
        4410. If the body raises, nothing changes."""
        code = CLOSE_DELETED if to is None else CLOSE_MOVED
        # A room still loading under the path is retired once it is loaded.
        loading = [t for k, t in self._loading.items() if _under(k, project_id, path)]
        for task in loading:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
        async with relocate.relocating(self.services.pool, project_id, path, to, code) as moved:
            yield
        await asyncio.gather(*(self._retire(m.doc_id, m.code, m.to) for m in moved))

    async def _retire(self, doc_id: int, code: int, to: str | None) -> None:
        """Close this process's room of a document that was moved or deleted. Its
        clients' updates so far are stored (under the document's new name, or in the
        tombstone), later ones are refused; the file is never written from it again."""
        room = self._by_doc.get(doc_id)
        if room is None:
            return
        reason = "document deleted" if to is None else to
        self._retired[room] = (code, reason)
        room.closing = True
        room.on_change = None
        for handle in (self._mirror_handles.pop(doc_id, None), room.unload_handle):
            if handle is not None:
                handle.cancel()
        room.unload_handle = None
        key = (room.project_id, room.path)
        if self.rooms.get(key) is room:
            del self.rooms[key]
        del self._by_doc[doc_id]
        self._file_locks.pop(doc_id, None)
        self._unreadable.pop(doc_id, None)
        self._missing.pop(doc_id, None)
        for client in list(room.clients):
            client.close(code, reason)
        # Opening either name waits until what the room took in is stored: a new room
        # loads it from the log (its own process's rows are not caught up by NOTIFY).
        task = asyncio.get_running_loop().create_task(self._settle(room))
        keys = [key] if to is None else [key, (room.project_id, to)]
        for k in keys:
            self._unloading[k] = task
            task.add_done_callback(partial(self._settled, k))
        log.info(
            "room closed: file moved" if to else "room closed: file deleted",
            extra={"event": "sync.room_retired", "doc_id": doc_id},
        )
        await task

    async def _settle(self, room: Room) -> None:
        await self.store.drain()
        if room.holds <= 0:
            room.stop()

    def _settled(self, key: tuple[UUID, str], task: asyncio.Task[None]) -> None:
        if self._unloading.get(key) is task:
            del self._unloading[key]

    async def _file_vanished(self, room: Room) -> None:
        """The file of an open document was deleted (or renamed) by another program and
        stayed away: the document is deleted as by files.delete (its history kept in
        the tombstone), rather than written back at the next edit."""

        def still_missing() -> None:
            if mirror.stat(room.file) is not None:
                raise _Reappeared

        try:
            async with self.relocating(room.project_id, room.path, None):
                await asyncio.to_thread(still_missing)
        except _Reappeared:
            self._missing.pop(room.doc_id, None)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()
        self._watcher = asyncio.create_task(self._watch())

    async def _listen(self) -> None:
        self._listener = await connect(self.services.database_url)
        await self._listener.add_listener(CHANNEL, self._on_notify)
        self._listener.add_termination_listener(self._on_listener_lost)

    def _on_listener_lost(self, _conn: Any) -> None:
        if not self._stopping:
            log.warning("update listener lost", extra={"event": "sync.listener_lost"})
            self._spawn(self._relisten())

    async def _relisten(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                await self._listen()
                break
            except Exception:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        # Notifications may have been missed meanwhile: every open room reads the log.
        for doc_id in list(self._by_doc):
            self._on_notify(None, 0, CHANNEL, f"{doc_id}:")

    async def stop(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for room in list(self.rooms.values()):
            for client in list(room.clients):
                client.close(1001, "server shutting down")
            await self._unload(room)
        for task in list(self._unloading.values()):
            with contextlib.suppress(Exception):
                await task
        await self.store.close()
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        if self._compactor is not None:
            self._compactor.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _load(self, project_id: UUID, path: str) -> Room:
        settings = self.settings
        file = await asyncio.to_thread(paths.resolve, settings.projects_dir, project_id, path)
        kind = kinds.kind_of(path)
        doc_id = await self.store.doc_id(project_id, path)
        presence = Presence(doc_id, Limits.from_settings(settings), self.reservations)
        room = Room(
            project_id,
            path,
            kind,
            doc_id,
            file,
            self.store,
            settings.sync_max_document_bytes,
            presence,
        )
        rows = await self.store.rows(doc_id)
        room.size = sum(len(r.data) for r in rows)
        if room.size > settings.sync_max_document_bytes:
            raise DocumentTooLarge("the stored document is over the size cap")
        room.apply_remote([r.data for r in rows])
        room.read_seq = rows[-1].seq if rows else 0
        room.start()
        if kinds.mirrored(kind):
            self._file_locks[doc_id] = asyncio.Lock()
            # Stat first: a change after it is seen by the watcher.
            room.file_stat = await asyncio.to_thread(mirror.stat, file)
            data = await asyncio.to_thread(mirror.read, file)
            if data is not None and len(data) > settings.sync_max_document_bytes:
                room.stop()
                raise DocumentTooLarge("the file is over the size cap")
            if not rows:
                await self._load_file(room, data)
            elif data is not None:
                # Changed on disk while nobody had it open (git pull): merged three-way.
                await self._absorb(room, data)
            room.on_change = lambda room=room: self._schedule_mirror(room)
            # Brings the file up to date if it lags the stored document (a crash came
            # between an acknowledged update and its mirror write); no-op otherwise.
            self._schedule_mirror(room)
        self.rooms[(project_id, path)] = room
        self._by_doc[doc_id] = room
        # Unloads unless the opener takes its hold (it may have gone away meanwhile).
        room.unload_handle = asyncio.get_running_loop().call_later(
            self.settings.sync_unload_delay_ms / 1000, self._start_unload, room
        )
        # Rows another process wrote while we loaded.
        self._on_notify(None, 0, CHANNEL, f"{doc_id}:")
        log.info(
            "room loaded",
            extra={"event": "sync.room_loaded", "doc_id": doc_id, "kind": kind, "rows": len(rows)},
        )
        return room

    def _start_unload(self, room: Room) -> None:
        room.unload_handle = None
        if room.holds > 0 or room.closing:
            return
        key = (room.project_id, room.path)
        task = asyncio.get_running_loop().create_task(self._unload(room))
        self._unloading[key] = task
        task.add_done_callback(lambda _t: self._unloading.pop(key, None))

    async def _unload(self, room: Room) -> None:
        if room.closing:
            return
        room.closing = True
        key = (room.project_id, room.path)
        try:
            handle = self._mirror_handles.pop(room.doc_id, None)
            if handle is not None:
                handle.cancel()
            await self._write_mirror(room)
            await self.store.drain()
        finally:
            room.stop()
            if self.rooms.get(key) is room:
                del self.rooms[key]
            if self._by_doc.get(room.doc_id) is room:
                del self._by_doc[room.doc_id]
                self._file_locks.pop(room.doc_id, None)
                self._unreadable.pop(room.doc_id, None)
        if room.rows_written >= self.settings.sync_compact_rows:
            self._spawn(self.compact(room.doc_id, room.kind))
        log.info("room unloaded", extra={"event": "sync.room_unloaded", "doc_id": room.doc_id})

    async def compact(self, doc_id: int, kind: str) -> int:
        if doc_id in self._compacting:
            return 0
        self._compacting.add(doc_id)
        try:
            if self._compactor is None:
                # Spawned, not forked: a fork of a process with running threads (asyncpg,
                # to_thread) may inherit a held lock.
                self._compactor = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn")
                )
            return await history.compact(
                self.services.pool,
                doc_id,
                kind,
                self.settings.sync_history_seconds,
                executor=self._compactor,
            )
        except BrokenProcessPool:
            log.exception("compaction worker died", extra={"event": "sync.compact_error"})
            self._compactor = None
            return 0
        except Exception:
            log.exception("compaction failed", extra={"event": "sync.compact_error"})
            return 0
        finally:
            self._compacting.discard(doc_id)

    # -- other processes ---------------------------------------------------------------

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            retire = relocate.parse_retire(payload)
        except ValueError:
            return
        if retire is not None:
            doc_id, code, to = retire
            if doc_id in self._by_doc:
                self._spawn(self._retire(doc_id, code, to))
            return
        doc_text, _, origin = payload.partition(":")
        if origin == self.store.origin:
            return
        try:
            doc_id = int(doc_text)
        except ValueError:
            return
        if doc_id not in self._by_doc:
            return
        if doc_id in self._catching_up:
            self._again.add(doc_id)
            return
        task = self._spawn(self._catch_up(doc_id))
        self._catching_up[doc_id] = task

    async def _catch_up(self, doc_id: int) -> None:
        try:
            while True:
                self._again.discard(doc_id)
                room = self._by_doc.get(doc_id)
                if room is None:
                    return
                updates, last = await self.store.foreign_rows(doc_id, room.read_seq)
                room.read_seq = max(room.read_seq, last)
                if updates:
                    room.apply_remote(updates)
                if doc_id not in self._again:
                    return
        except Exception:
            log.exception("catch-up failed", extra={"event": "sync.catch_up_error"})
        finally:
            self._catching_up.pop(doc_id, None)

    # -- files ---------------------------------------------------------------------------

    def _schedule_mirror(self, room: Room) -> None:
        if room.doc_id in self._mirror_handles or room.closing:
            return
        delay = self.settings.sync_mirror_debounce_ms / 1000
        self._mirror_handles[room.doc_id] = asyncio.get_running_loop().call_later(
            delay, self._fire_mirror, room
        )

    def _fire_mirror(self, room: Room) -> None:
        self._mirror_handles.pop(room.doc_id, None)
        self._spawn(self._write_mirror(room))

    async def _load_file(self, room: Room, data: bytes | None) -> None:
        """A document with no stored rows starts as its file (or empty), added to as it
        is: loading alone never gives the file a reason to be rewritten."""
        kind = room.kind
        value: Any = None
        if data is not None:
            raw = await asyncio.to_thread(kinds.parse_file, kind, data)
            value = await asyncio.to_thread(kinds.file_value, kind, raw)
        update = kinds.initial_update(kind, kinds.empty_content(kind) if value is None else value)
        if update != EMPTY_UPDATE:
            # Another process may be loading the same file: the database picks one.
            theirs = await self.store.store_first(room.doc_id, update)
            room.apply_remote([r.data for r in theirs] if theirs else [update])
        if data is not None:
            sha = mirror.sha256(data)
            room.file_sha = sha
            async with (
                self._record_slots,
                filebase.locked(self.services.pool, room.doc_id) as record,
            ):
                if record.sha != sha or record.base is None:
                    await record.set(sha, kinds.dump_base(kind, value))

    def _file_lock(self, room: Room) -> asyncio.Lock:
        return self._file_locks.setdefault(room.doc_id, asyncio.Lock())

    async def flush_mirrors(self, project_id: UUID) -> None:
        """Write now the files of the project's documents whose mirror write is pending:
        a LaTeX build (collab/latex) reads the files and must see the last edits."""
        for (owner, _), room in list(self.rooms.items()):
            if owner != project_id:
                continue
            handle = self._mirror_handles.pop(room.doc_id, None)
            if handle is not None:
                handle.cancel()
                await self._write_mirror(room)

    async def _write_mirror(self, room: Room) -> None:
        """Write the document to its file if it differs from the merge base. A change
        on disk since the base is merged first (never overwritten), and the rename
        happens under the file record's lock after checking the file is still the one
        the merge saw; otherwise the whole step runs again."""
        if not kinds.mirrored(room.kind):
            return
        try:
            async with self._file_lock(room):
                for _ in range(5):
                    if await self._write_once(room):
                        return
                log.warning("file kept changing; not mirrored", extra={"event": "sync.mirror_busy"})
                self._schedule_mirror(room)
        except Exception:
            log.exception("mirror write failed", extra={"event": "sync.mirror_error"})

    async def _write_once(self, room: Room) -> bool:
        """One attempt; False if the file or its record changed under it."""
        st = await asyncio.to_thread(mirror.stat, room.file)
        if st is None and room.file_stat is not None:
            # Deleted by another program: never written back; the watcher retires the
            # document if the file stays away.
            return True
        if st is not None and st != room.file_stat:
            checked = await self._check_file_locked(room)
            if checked is None:
                self._schedule_mirror(room)  # being written by someone: try again later
                return True
            if not checked:
                return True  # a changed file we cannot merge is left alone
        if room.doc_id in self._unreadable and st is not None:
            return True
        sha_seen, base_bytes = await filebase.read(self.services.pool, room.doc_id)
        notebook = self._notebook_file(room)
        # A notebook's value is converted cell by cell (a keystroke costs one cell, not
        # the whole document on the event loop); nothing awaits between it and `writer`.
        value = await notebook.content() if notebook else kinds.content(room.doc, room.kind)
        writer = notebook.writer(value) if notebook else None
        base = (
            None
            if base_bytes is None
            else await asyncio.to_thread(kinds.load_base, room.kind, base_bytes)
        )
        if base is not None and value == base:
            return True  # no change since the file was written or read: never rewrite it
        try:
            if writer is not None and notebook is not None:
                data = await asyncio.to_thread(writer.run)
                notebook.keep(writer)
            else:
                data = await asyncio.to_thread(kinds.encode_file, room.kind, value)
        except Exception:
            # A document that does not validate is not written over a good file.
            log.exception("document not mirrored", extra={"event": "sync.mirror_invalid"})
            return True
        sha = mirror.sha256(data)
        if not await self._still_inside(room):
            return True
        tmp = await asyncio.to_thread(mirror.prepare, room.file, data)
        try:
            async with (
                self._record_slots,
                filebase.locked(self.services.pool, room.doc_id) as record,
            ):
                if record.path != room.path:
                    return True  # moved or deleted meanwhile: the room is being closed
                if record.sha != sha_seen:
                    return False  # another process wrote or merged the file meanwhile
                # Renamed before the record commits: a process that reads the new
                # file waits on the lock and then finds it recorded, not an edit.
                done, st, displaced = await asyncio.to_thread(
                    mirror.commit_unless_changed, tmp, room.file, room.file_stat
                )
                if not done:
                    return False  # changed on disk meanwhile: merge it first
                room.file_stat = st
                room.file_sha = sha
                self._unreadable.pop(room.doc_id, None)
                await record.set(sha, kinds.dump_base(room.kind, value))
        finally:
            await asyncio.to_thread(mirror.discard, tmp)
        if displaced is not None:
            # Another program wrote the file in the instant before the swap: its
            # version, a change from the base it read, is merged now and written next.
            await self._merge_displaced(room, base, displaced)
        return True

    def _notebook_file(self, room: Room) -> NotebookFile | None:
        # Not made for a room on its way out: Room.stop() closes the one it has.
        if room.kind == kinds.NOTEBOOK and room.notebook_file is None and not room.closing:
            room.notebook_file = NotebookFile(room.doc)
        return room.notebook_file

    async def _merge_displaced(self, room: Room, base: Any, data: bytes) -> None:
        kind = room.kind
        try:
            raw = await asyncio.to_thread(kinds.parse_file, kind, data)
        except kinds.UnsupportedFile:
            log.error("a racing file write was replaced", extra={"event": "sync.merge_refused"})
            return
        if base is None:
            base = kinds.content(room.doc, kind)
        theirs = await asyncio.to_thread(kinds.file_value, kind, raw, base)
        room.apply_as(None, lambda: kinds.merge_file(room.doc, kind, base, theirs))
        log.info("racing file change merged", extra={"event": "sync.file_merged"})
        self._schedule_mirror(room)

    async def _absorb(self, room: Room, data: bytes) -> bool | None:
        """Merge file content `data` into the document if it is an edit made by
        something else: three-way, against the base recorded for the file the server
        last wrote or read. False if the file cannot be read as a document; None if
        the file changed since `data` was read (it is read again at the next poll)."""
        kind = room.kind
        sha = mirror.sha256(data)
        try:
            raw = await asyncio.to_thread(kinds.parse_file, kind, data)
        except kinds.UnsupportedFile:
            if self._unreadable.get(room.doc_id) != sha:
                self._unreadable[room.doc_id] = sha
                log.warning("file not merged", extra={"event": "sync.merge_refused"})
            return False
        self._unreadable.pop(room.doc_id, None)
        async with self._record_slots, filebase.locked(self.services.pool, room.doc_id) as record:
            # Every mirror write renames under this lock: the file read before it was
            # taken may since have been replaced by another process's write, and would
            # then look like an edit that reverts it.
            if record.path != room.path:
                return True  # moved or deleted meanwhile: the room is being closed
            if await asyncio.to_thread(mirror.read, room.file) != data:
                room.file_stat = None
                return None
            if record.sha == sha:
                room.file_sha = sha
                if record.base is None:  # recorded before merge bases were kept
                    value = await asyncio.to_thread(kinds.file_value, kind, raw)
                    await record.set(sha, kinds.dump_base(kind, value))
                self._schedule_mirror(room)  # the document may be ahead of this file
                return True
            if record.base is not None:
                base = await asyncio.to_thread(kinds.load_base, kind, record.base)
            else:
                # No base recorded (an older server wrote the file): the file wins
                # wherever it differs, as a two-way diff.
                log.warning("file merged without a base", extra={"event": "sync.merge_no_base"})
                base = kinds.content(room.doc, kind)
            theirs = await asyncio.to_thread(kinds.file_value, kind, raw, base)
            room.apply_as(None, lambda: kinds.merge_file(room.doc, kind, base, theirs))
            # The merge is in the log before the file is recorded as merged: a crash in
            # between merges it again, and a change both sides have is applied once.
            await room.stored()
            await record.set(sha, kinds.dump_base(kind, theirs))
        room.file_sha = sha
        log.info("file changed on disk", extra={"event": "sync.file_merged"})
        self._schedule_mirror(room)
        return True

    async def _watch(self) -> None:
        """Poll open documents' files (and expire stale presence) about once a second."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            rooms = [r for r in self.rooms.values() if not r.closing]
            for room in rooms:
                room.expire_presence(self.settings.sync_awareness_timeout_ms / 1000)
            watched = [r for r in rooms if kinds.mirrored(r.kind)]
            try:
                stats = await asyncio.to_thread(_stat_all, [r.file for r in watched])
                for room, st in zip(watched, stats, strict=True):
                    if room.closing:
                        continue
                    if st is None and room.file_stat is not None:
                        missing = self._missing.get(room.doc_id, 0) + 1
                        self._missing[room.doc_id] = missing
                        if missing >= MISSING_POLLS:
                            await self._file_vanished(room)
                        continue
                    self._missing.pop(room.doc_id, None)
                    if st is None or st == room.file_stat:
                        continue
                    await self._check_file(room)
                now = time.monotonic()
                for room in rooms:
                    if compaction_due(room.rows_written, now - room.last_write, self.settings):
                        room.rows_written = 0
                        self._spawn(self.compact(room.doc_id, room.kind))
            except Exception:
                log.exception("file watch failed", extra={"event": "sync.watch_error"})

    async def _still_inside(self, room: Room) -> bool:
        """The path is checked again before each write and read: a directory on it may
        have been replaced by a symlink out of the project since the room loaded."""
        try:
            current = await asyncio.to_thread(
                paths.resolve, self.settings.projects_dir, room.project_id, room.path
            )
        except paths.BadPath:
            current = None
        if current != room.file:
            log.warning(
                "document path moved out of the project", extra={"event": "sync.path_escaped"}
            )
            return False
        return True

    async def _check_file(self, room: Room) -> None:
        async with self._file_lock(room):
            await self._check_file_locked(room)

    async def _check_file_locked(self, room: Room) -> bool | None:
        """Read the file after its stat changed and merge it if something else edited
        it. False if it changed and cannot be merged (it must not be overwritten); None
        if it is being written right now (it is read again at the next poll)."""
        if not await self._still_inside(room):
            return False
        before = await asyncio.to_thread(mirror.stat, room.file)
        if mirror.settling(before, SETTLE_NS):
            return None
        data = await asyncio.to_thread(mirror.read, room.file)
        after = await asyncio.to_thread(mirror.stat, room.file)
        if before != after:
            return None
        if data is None:
            # Deleted: not an edit. The stat stays the last one seen, so the watcher
            # and the mirror know the file existed and was deleted.
            return True
        room.file_stat = after
        if len(data) > self.settings.sync_max_document_bytes:
            if self._unreadable.get(room.doc_id) != "large":
                self._unreadable[room.doc_id] = "large"
                log.warning("file over the size cap", extra={"event": "sync.merge_refused"})
            return False
        if mirror.sha256(data) == room.file_sha:
            self._unreadable.pop(room.doc_id, None)
            return True
        return await self._absorb(room, data)


def _under(key: tuple[UUID, str], project_id: UUID, path: str) -> bool:
    return key[0] == project_id and (key[1] == path or key[1].startswith(path + "/"))


def _stat_all(files: list[Path]) -> list[tuple[int, int] | None]:
    return [mirror.stat(f) for f in files]


def compaction_due(rows_written: int, quiet_for: float, settings: Settings) -> bool:
    """A live room is compacted once it has written `sync_compact_rows` rows and then
    gone quiet: never while it is hot, unless its log grew past `sync_compact_max_rows`
    (a room edited without pause for hours still gets a bounded log)."""
    if rows_written < settings.sync_compact_rows:
        return False
    return (
        quiet_for >= settings.sync_compact_quiet_ms / 1000
        or rows_written >= settings.sync_compact_max_rows
    )
