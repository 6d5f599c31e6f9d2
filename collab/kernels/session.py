"""KernelSession: one kernel bound to one notebook document. It runs cells in FIFO order,
reading each cell's code from the document when the cell starts, and reports the kernel's
status, prompts and death into the document's `kernel` map."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Array, Doc, Map

from collab.kernels.backend import Backend
from collab.kernels.outputs import IDLE, NOT_RUN, QUEUED, OutputWriter

log = logging.getLogger(__name__)

STARTING, IDLE_K, BUSY, RESTARTING, DEAD, STOPPED = (
    "starting",
    "idle",
    "busy",
    "restarting",
    "dead",
    "stopped",
)


class KernelGone(Exception):
    """The run was cut short: the kernel died, restarted or shut down."""


@dataclass
class _Run:
    cell_id: str
    msg_id: str = ""
    reply: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    idle: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    prompt: dict[str, Any] | None = None
    interrupted: bool = False
    # How many runs were queued when this run's error reached the document: those were
    # asked for before anyone could see it, and a failed run drops only them.
    queued_at_error: int | None = None

    def abort(self, reason: str) -> None:
        for fut in (self.reply, self.idle):
            if not fut.done():
                fut.set_exception(KernelGone(reason))
                # Retrieved here so an abort nobody awaits is not logged as lost.
                fut.exception()


class KernelSession:
    def __init__(
        self,
        doc: Doc,
        make_backend: Callable[[str], Backend],
        *,
        default_kernel: str = "python3",
        max_output_bytes: int = 1024 * 1024,
        max_outputs: int = 500,
        flush_interval: float = 0.05,
        poll_interval: float = 1.0,
        on_status: Callable[[KernelSession], None] | None = None,
        on_execution: Callable[..., None] | None = None,
    ) -> None:
        self.doc = doc
        self._make_backend = make_backend
        self.default_kernel = default_kernel
        self.writer = OutputWriter(
            doc, max_bytes=max_output_bytes, max_outputs=max_outputs, flush_interval=flush_interval
        )
        self.poll_interval = poll_interval
        self._on_status = on_status
        # on_execution(kind, execution_id, **fields): a run was queued / started /
        # finished (collab/kernels/executions.py records it).
        self._on_execution = on_execution
        self.status = STOPPED
        self.kernel_name = ""
        # Names the kernel process: a new one at every start and restart.
        self.session_id = ""
        self.last_activity = time.monotonic()
        self._backend: Backend | None = None
        self._queue: deque[tuple[str, str]] = deque()  # (cell id, execution id)
        self._wake = asyncio.Event()
        self._run_now: _Run | None = None
        self._active: str | None = None  # the cell taken from the queue, until it is done
        self._drop_upto: int | None = None  # the last failed run's queued_at_error
        self._runner: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # start / restart / shutdown one at a time
        self._closed = False

    # -- public ----------------------------------------------------------------------

    def start(self) -> None:
        self._reset_stale()
        self.writer.start()
        self._runner = asyncio.create_task(self._run(), name="kernel-runner")
        self._monitor = asyncio.create_task(self._watch(), name="kernel-monitor")

    @property
    def busy(self) -> bool:
        return self._active is not None or bool(self._queue) or self.status in (BUSY, STARTING)

    @property
    def queued(self) -> list[str]:
        return [cell_id for cell_id, _ in self._queue]

    def execute(self, cell_ids: list[str], requester: dict[str, Any] | None = None) -> list[str]:
        """Queue code cells that exist in the document; returns the ids queued.
        `requester` ({account_id, name}) is recorded with each run."""
        if self._closed:
            raise KernelGone("the kernel is shut down")
        known = _code_cell_ids(self.doc)
        queued = [c for c in cell_ids if c in known]
        for cell_id in queued:
            execution_id = str(uuid.uuid4())
            self._queue.append((cell_id, execution_id))
            self.writer.set_state(cell_id, QUEUED)
            self._report("queued", execution_id, cell_id=cell_id, **(requester or {}))
        self._publish_queue(added=queued)
        self.last_activity = time.monotonic()
        self._wake.set()
        return queued

    async def interrupt(self) -> None:
        self.last_activity = time.monotonic()
        if self._run_now is not None:
            self._run_now.interrupted = True
        if self._backend is not None:
            await self._backend.interrupt()

    async def restart(self, spec: dict[str, Any] | None = None) -> None:
        """Restart the kernel (a fresh namespace); queued cells are not run. With `spec`
        ({name, display_name, language}) the notebook's metadata names that kernelspec
        and the new kernel is one."""
        async with self._lock:
            self.last_activity = time.monotonic()
            self._drop_queue()
            if self._run_now is not None:
                self._run_now.abort("the kernel restarted")
            if spec is not None:
                _set_kernelspec(self.doc, spec)
            changed = (_kernel_name(self.doc) or self.default_kernel) != self.kernel_name
            if self._backend is None or changed or not await self._backend.is_alive():
                await self._stop_backend()
                await self._start_backend()
                return
            self._set_status(RESTARTING)
            self.session_id = str(uuid.uuid4())
            try:
                await self._backend.restart()
            except Exception:
                log.exception("kernel restart failed", extra={"event": "kernel.restart_failed"})
                await self._stop_backend()
                self._set_status(DEAD)
                raise
            self._set_status(IDLE_K)

    async def shutdown(self) -> None:
        self._closed = True
        async with self._lock:
            self._drop_queue()
            if self._run_now is not None:
                self._run_now.abort("the kernel was shut down")
            for task in (self._runner, self._monitor):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self._stop_backend()
            self._set_status(STOPPED)
            self._publish(input=None)
            await self.writer.close()

    def input_reply(self, value: str) -> bool:
        """Answer the pending input() prompt; False if none is pending."""
        run = self._run_now
        if run is None or run.prompt is None or self._backend is None:
            return False
        prompt, run.prompt = run.prompt, None
        self._backend.input_reply(value)
        self._publish(input=None)
        self.last_activity = time.monotonic()
        # A password is never written anywhere; other answers are echoed like a console.
        shown = "" if prompt.get("password") else value
        self.writer.append_stream(run.cell_id, "stdout", f"{prompt.get('prompt', '')}{shown}\n")
        return True

    # -- running cells ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            cell_id, execution_id = self._queue.popleft()
            self._publish_queue(started=cell_id)
            self._active = cell_id
            try:
                ok = await self._run_cell(cell_id, execution_id)
            except Exception:
                log.exception("running a cell failed", extra={"event": "kernel.run_failed"})
                self._report("finished", execution_id, status="error", error="the run failed")
                ok = False
            finally:
                self._active = None
            if not ok:
                # Runs asked for once the error showed are someone's answer to it.
                self._drop_queue(self._drop_upto)
            self._drop_upto = None
            self.last_activity = time.monotonic()

    async def _run_cell(self, cell_id: str, execution_id: str = "") -> bool:
        code = _cell_source(self.doc, cell_id)
        if code is None:
            self._report("finished", execution_id, status="aborted", error="the cell was deleted")
            return True  # deleted while queued
        async with self._lock:
            if self._backend is None:
                try:
                    await self._start_backend()
                except Exception as exc:
                    log.exception("kernel start failed", extra={"event": "kernel.start_failed"})
                    self.writer.begin(cell_id)
                    self.writer.message(cell_id, "error", _error("KernelStartFailed", str(exc)))
                    self.writer.finish(cell_id, IDLE)
                    self._set_status(DEAD)
                    self._report(
                        "finished", execution_id, status="error", error=f"KernelStartFailed: {exc}"
                    )
                    return False
            backend = self._backend
            assert backend is not None
            run = self._run_now = _Run(cell_id)
            self.writer.begin(cell_id)
            self._report(
                "started",
                execution_id,
                session=self.session_id,
                kernel_name=self.kernel_name,
                source=code,
            )
            run.msg_id = backend.execute(code)
        try:
            reply = await run.reply
            await run.idle
        except KernelGone as gone:
            if self.status == DEAD:
                self.writer.message(cell_id, "error", _error("KernelDied", str(gone)))
            self.writer.finish(cell_id, IDLE)
            self._report("finished", execution_id, status="aborted", error=str(gone))
            return False
        finally:
            self._drop_upto = run.queued_at_error
            self._run_now = None
            self._publish(input=None)
        self.writer.finish(cell_id, IDLE)
        status = reply.get("status")
        count = reply.get("execution_count")
        count = count if isinstance(count, int) and not isinstance(count, bool) else None
        if status == "ok":
            self._report("finished", execution_id, status="ok", execution_count=count)
        else:
            ename = str(reply.get("ename") or "")
            outcome = "aborted" if status == "aborted" else "error"
            if status == "error" and (run.interrupted or ename == "KeyboardInterrupt"):
                outcome = "interrupted"
            error = f"{ename}: {reply.get('evalue') or ''}" if ename else ""
            self._report(
                "finished", execution_id, status=outcome, execution_count=count, error=error
            )
        return status == "ok"

    def _drop_queue(self, upto: int | None = None) -> None:
        """Mark the queued runs not run: all of them, or the first `upto`."""
        left = len(self._queue) if upto is None else min(upto, len(self._queue))
        for _ in range(left):
            cell_id, execution_id = self._queue.popleft()
            self.writer.set_state(cell_id, NOT_RUN)
            self._report("finished", execution_id, status="aborted", error="not run")
        self._publish_queue()

    def _publish_queue(self, added: Sequence[str] = (), started: str | None = None) -> None:
        """The kernel's queue in the document (`kernel.queue`, cell ids, next first), so
        every browser shows each queued cell's real place: the order runs were asked for,
        not the cells' order on the page. Kept as an array edited in place (an append per
        run asked for, a delete per run started) rather than rewritten, so "run all" on a
        long notebook costs the document O(cells), not O(cells²)."""
        state = self.doc.get("kernel", type=Map)
        current = state.get("queue")
        with self.doc.transaction():
            if not isinstance(current, Array):
                state["queue"] = Array(self.queued)
                return
            if started is not None and len(current) and current[0] == started:
                del current[0]
            if added:
                current.extend(list(added))
            if len(current) != len(self._queue) or (
                len(current) and current[0] != self._queue[0][0]
            ):
                current.clear()  # out of step (not expected): say what is true
                current.extend(self.queued)

    def _report(self, kind: str, execution_id: str, **fields: Any) -> None:
        if self._on_execution is None or not execution_id:
            return
        try:
            self._on_execution(kind, execution_id, **fields)
        except Exception:
            log.exception("reporting an execution failed")

    # -- kernel messages -------------------------------------------------------------

    def _on_message(self, channel: str, msg: dict[str, Any]) -> None:
        msg_type = msg.get("header", {}).get("msg_type", "")
        parent = (msg.get("parent_header") or {}).get("msg_id")
        content = msg.get("content") or {}
        run = self._run_now
        ours = run is not None and parent == run.msg_id
        if channel == "iopub":
            if msg_type == "status":
                state = content.get("execution_state")
                if state in ("busy", "idle") and self.status in (IDLE_K, BUSY):
                    self._set_status(BUSY if state == "busy" else IDLE_K)
                if ours and state == "idle" and run is not None and not run.idle.done():
                    run.idle.set_result(None)
            elif ours and run is not None:
                if msg_type == "error" and run.queued_at_error is None:
                    run.queued_at_error = len(self._queue)
                self.writer.message(run.cell_id, msg_type, content)
        elif channel == "shell" and ours and msg_type == "execute_reply":
            assert run is not None
            if content.get("execution_count") is not None:
                self.writer.set_execution_count(run.cell_id, content["execution_count"])
            if not run.reply.done():
                run.reply.set_result(content)
        elif channel == "stdin" and msg_type == "input_request" and run is not None:
            run.prompt = {
                "prompt": str(content.get("prompt", "")),
                "password": bool(content.get("password")),
            }
            self._publish(input={"cell_id": run.cell_id, **run.prompt})

    # -- kernel process --------------------------------------------------------------

    async def _start_backend(self) -> None:
        self.kernel_name = _kernel_name(self.doc) or self.default_kernel
        self.session_id = str(uuid.uuid4())
        self._set_status(STARTING)
        backend = self._make_backend(self.kernel_name)
        try:
            await backend.start(self._on_message)
        except BaseException:
            self._set_status(DEAD)
            raise
        self._backend = backend
        self._set_status(IDLE_K)

    async def _stop_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.shutdown()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            backend = self._backend
            if backend is None or self._lock.locked() or self.status in (STARTING, RESTARTING):
                continue
            try:
                alive = await backend.is_alive()
            except Exception:
                alive = False
            if alive or backend is not self._backend:
                continue
            log.warning("kernel died", extra={"event": "kernel.died"})
            self._set_status(DEAD)
            self._drop_queue()
            if self._run_now is not None:
                why = getattr(backend, "death_reason", lambda: None)()
                self._run_now.abort(
                    f"the kernel died{f' ({why})' if why else ''}; the next execution "
                    "starts a new one"
                )
            async with self._lock:
                if self._backend is backend:
                    await self._stop_backend()

    # -- document state --------------------------------------------------------------

    def _reset_stale(self) -> None:
        """A document can say a kernel is busy and cells are running when the process that
        ran them is gone (a crash, a restart): nothing runs here yet, so say so."""
        cells = self.doc.get("cells", type=Array)
        with self.doc.transaction():
            for ycell in cells:
                if isinstance(ycell, Map) and ycell.get("execution_state") in (QUEUED, "running"):
                    ycell["execution_state"] = NOT_RUN
            self._publish(status=STOPPED, input=None)
            self._publish_queue()

    def _set_status(self, status: str) -> None:
        if status == self.status:
            return
        self.status = status
        self._publish(status=status, name=self.kernel_name)
        if self._on_status is not None:
            self._on_status(self)

    def _publish(self, **values: Any) -> None:
        state = self.doc.get("kernel", type=Map)
        with self.doc.transaction():
            for key, value in values.items():
                if key == "input" and value is None:
                    if "input" in state:
                        del state["input"]
                elif state.get(key) != value:
                    state[key] = value


def _code_cell_ids(doc: Doc) -> set[str]:
    return {
        str(ycell.get("id"))
        for ycell in doc.get("cells", type=Array)
        if isinstance(ycell, Map) and ycell.get("cell_type") == "code"
    }


def _cell_source(doc: Doc, cell_id: str) -> str | None:
    """The current source of the first code cell with this id (None if it is gone)."""
    for ycell in doc.get("cells", type=Array):
        if isinstance(ycell, Map) and ycell.get("id") == cell_id:
            if ycell.get("cell_type") != "code":
                return None
            return str(ycell.get("source", ""))
    return None


def _kernel_name(doc: Doc) -> str | None:
    meta = doc.get("meta", type=Map)
    metadata = meta.get("metadata")
    if isinstance(metadata, Map):
        metadata = metadata.to_py()
    if isinstance(metadata, dict):
        spec = metadata.get("kernelspec")
        if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"]:
            return str(spec["name"])
    return None


def _set_kernelspec(doc: Doc, spec: dict[str, Any]) -> None:
    meta = doc.get("meta", type=Map)
    value = {"name": spec["name"], "display_name": spec.get("display_name") or spec["name"]}
    if spec.get("language"):
        value["language"] = spec["language"]
    with doc.transaction():
        metadata = meta.get("metadata")
        if isinstance(metadata, Map):
            metadata["kernelspec"] = value
        else:
            plain = dict(metadata) if isinstance(metadata, dict) else {}
            plain["kernelspec"] = value
            meta["metadata"] = Map(plain)


def _error(ename: str, evalue: str) -> dict[str, Any]:
    return {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}
