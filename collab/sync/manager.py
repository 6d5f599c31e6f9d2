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
from collab.sync import history, kinds, mirror, paths
from collab.sync.awareness import Limits, Presence, Reservations
from collab.sync.room import DocumentTooLarge, Room
from collab.sync.store import CHANNEL, UpdateStore

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0
EMPTY_UPDATE = b"\x00\x00"


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
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncpg.Connection | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
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
        if self._stopping:
            return  # stop() unloads every room itself
        if room.holds <= 0 and room.unload_handle is None and not room.closing:
            delay = self.settings.sync_unload_delay_ms / 1000
            room.unload_handle = asyncio.get_running_loop().call_later(
                delay, self._start_unload, room
            )

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
            data = await asyncio.to_thread(mirror.read, file)
            if data is not None and len(data) > settings.sync_max_document_bytes:
                room.stop()
                raise DocumentTooLarge("the file is over the size cap")
            if not rows:
                value = (
                    await asyncio.to_thread(kinds.parse_file, kind, data)
                    if data is not None
                    else None
                )
                if value is None:
                    value = kinds.empty_content(kind)
                update = kinds.initial_update(kind, value)
                if update != EMPTY_UPDATE:
                    # Another process may be loading the same file: the database picks one.
                    theirs = await self.store.store_first(doc_id, update)
                    room.apply_remote([r.data for r in theirs] if theirs else [update])
                if data is not None:
                    room.file_sha = mirror.sha256(data)
                    await self.store.set_file_sha(doc_id, room.file_sha)
            elif data is not None:
                sha = mirror.sha256(data)
                room.file_sha = sha
                if await self.store.claim_file_sha(doc_id, sha):
                    # Changed on disk while nobody had it open (git pull): merge as a diff.
                    await self._merge_file(room, data)
            room.file_stat = await asyncio.to_thread(mirror.stat, file)
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

    async def _write_mirror(self, room: Room) -> None:
        if not kinds.mirrored(room.kind):
            return
        # A change on disk that the watcher has not seen yet is merged first, so that
        # this write does not overwrite it.
        st = await asyncio.to_thread(mirror.stat, room.file)
        if st is not None and st != room.file_stat:
            await self._check_file(room)
        try:
            value = kinds.content(room.doc, room.kind)
            data = await asyncio.to_thread(kinds.encode_file, room.kind, value)
        except Exception:
            # A document that does not validate is not written over a good file.
            log.exception("document not mirrored", extra={"event": "sync.mirror_invalid"})
            return
        sha = mirror.sha256(data)
        if sha == room.file_sha:
            return
        if not await self._still_inside(room):
            return
        try:
            # Record the hash first: another process that sees the new file must know it
            # is our mirror, not an edit to merge.
            room.file_sha = sha
            await self.store.set_file_sha(room.doc_id, sha)
            room.file_stat = await asyncio.to_thread(mirror.write_atomic, room.file, data)
        except Exception:
            log.exception("mirror write failed", extra={"event": "sync.mirror_error"})

    async def _merge_file(self, room: Room, data: bytes) -> None:
        try:
            value = await asyncio.to_thread(kinds.parse_file, room.kind, data)
        except kinds.UnsupportedFile:
            log.warning("file not merged", extra={"event": "sync.merge_refused"})
            return
        room.apply_as(None, lambda: kinds.set_content(room.doc, room.kind, value))

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
                    if st is None or st == room.file_stat or room.closing:
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
        if not await self._still_inside(room):
            return
        st = await asyncio.to_thread(mirror.stat, room.file)
        data = await asyncio.to_thread(mirror.read, room.file)
        room.file_stat = st
        if data is None or len(data) > self.settings.sync_max_document_bytes:
            return
        sha = mirror.sha256(data)
        if sha == room.file_sha:
            return
        room.file_sha = sha
        if await self.store.claim_file_sha(room.doc_id, sha):
            log.info("file changed on disk", extra={"event": "sync.file_merged"})
            await self._merge_file(room, data)


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
