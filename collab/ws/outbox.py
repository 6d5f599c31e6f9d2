"""Outbox: the bounded queue of messages on their way to one WebSocket client, and the
task that writes them. Sending never blocks the sender; what to do with a client too slow
to take its messages (close it with 4008) is its owner's call. /ws connections and
document clients both send through one."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketState

from collab.ws.wire import Frame, RawSocket, frame_of

log = logging.getLogger(__name__)

Message = str | bytes | Frame

CLOSE_SLOW_CONSUMER = 4008
# How long the close frame may wait behind a client that does not read.
CLOSE_TIMEOUT = 30.0


class Outbox:
    def __init__(self, websocket: WebSocket, size: int) -> None:
        self._websocket = websocket
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(size)
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self._client_gone = False
        self._abandoned = False
        self._writer: asyncio.Task[None] | None = None
        # The transport, once the writer runs on it; `_idle` while the writer waits on an
        # empty queue with nothing in hand. Then messages skip the queue: those of one
        # event-loop tick are collected in `_soon` and written together at its end.
        self._raw: RawSocket | None = None
        self._idle = False
        self._soon: list[Message] | None = None

    def put(self, message: Message) -> bool:
        """Send or queue a message; False when closed or when the queue is full. With
        nothing queued or being written, the messages of this tick are written in one
        transport write at its end, with no queue and no wake-up of the writer task
        (most messages, on a client that keeps up). Otherwise they wait in the queue,
        in order."""
        if self.closed.is_set():
            return False
        if self._idle and self._raw is not None and self._queue.empty():
            if self._soon is None:
                self._soon = [message]
                asyncio.get_running_loop().call_soon(self._write_soon)
            else:
                self._soon.append(message)
            return True
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    def _write_soon(self) -> None:
        messages, self._soon = self._soon, None
        if not messages or self.closed.is_set():
            return  # close() queued them ahead of the close frame, or dropped them
        raw = self._raw
        if raw is not None and self._idle:
            try:
                if raw.write_now(b"".join(frame_of(m) for m in messages)):
                    return
            except Exception:
                pass  # the socket went away: queued, the writer finds out and ends
        # The transport cannot take them now: they wait in the queue, in order (it is
        # empty: every message since the first of them came here).
        for message in messages:
            try:
                self._queue.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("slow client disconnected", extra={"event": "ws.slow_consumer"})
                self.close(CLOSE_SLOW_CONSUMER)
                return

    async def wait_for_room(self) -> None:
        """Wait while the queue is over half full, so that a long stream (a replay) is
        paced by the client instead of overflowing."""
        limit = max(1, self._queue.maxsize // 2)
        # What waits for the end of this tick counts too: a replay is paced by the
        # client's socket whether its messages queue or are collected in `_soon`.
        while self._queue.qsize() + len(self._soon or ()) >= limit and not self.closed.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    def close(self, code: int, reason: str = "", drop: bool = False) -> None:
        """Close from the server side: the close frame follows what is queued, except for
        a slow consumer, whose queue is dropped (the writer may be stuck behind a full
        socket, and nothing queued would reach it anyway), and with `drop` (a revoked
        client: what is queued was meant for someone who may no longer see it)."""
        if self.closed.is_set():
            return
        self.close_code = code
        self.close_reason = reason[:120]
        self.closed.set()
        if drop:
            while not self._queue.empty():
                self._queue.get_nowait()
        soon, self._soon = self._soon, None
        if soon and not drop and code != CLOSE_SLOW_CONSUMER:
            # Not yet written this tick: they go before the close frame.
            for message in soon:
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(message)
        if code == CLOSE_SLOW_CONSUMER and self._writer is not None:
            if self._writer is not asyncio.current_task():
                self._abandoned = True
                self._writer.cancel()
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def _send_each(self) -> None:
        send_text, send_bytes = self._websocket.send_text, self._websocket.send_bytes
        while True:
            message = await self._queue.get()
            if message is None:
                return
            if isinstance(message, Frame):
                await send_bytes(message.payload)
            elif isinstance(message, bytes):
                await send_bytes(message)
            else:
                await send_text(message)

    async def _write_batches(self, raw: RawSocket) -> None:
        """Everything queued when the writer wakes goes out in one transport write."""
        queue = self._queue
        self._raw = raw
        while True:
            self._idle = True
            try:
                message = await queue.get()
            finally:
                self._idle = False
            if message is None:
                return
            frames = [frame_of(message)]
            end = False
            while not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    end = True
                    break
                frames.append(frame_of(more))
            await raw.write(frames)
            if end:
                return

    def client_gone(self, code: int) -> None:
        """The client went away: nothing more can be sent, no close frame is due."""
        self._client_gone = True
        self.close(self.close_code or code)

    def start(self) -> asyncio.Task[None]:
        self._writer = asyncio.create_task(self._run())
        return self._writer

    async def _run(self) -> None:
        raw = RawSocket.of(self._websocket)
        try:
            if raw is None:
                await self._send_each()
            else:
                await self._write_batches(raw)
        except asyncio.CancelledError:
            if not self._abandoned:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception:
            # The socket went away under us.
            self._client_gone = True
            self.closed.set()
        ws = self._websocket
        if (
            self._client_gone
            or ws.application_state != WebSocketState.CONNECTED
            or ws.client_state != WebSocketState.CONNECTED
        ):
            return
        try:
            await asyncio.wait_for(
                ws.close(self.close_code or 1000, self.close_reason), CLOSE_TIMEOUT
            )
        except Exception:
            pass
