"""Terminal: one shell on a pseudo-terminal, shared by its viewers. Output is read at a
capped rate (a full pty buffer then blocks the writer, so `yes` cannot flood us), kept in
a bounded scrollback for late joiners and fanned out to every viewer."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import struct
import subprocess
import termios
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from collab.kernels.backend import process_environment
from collab.sandbox.jail import Jail

log = logging.getLogger(__name__)

# A viewer receives each event already encoded as a JSON frame (encoded once for all
# viewers): {"terminal": id, "data": text} for output, {"terminal": id, "exit": code} at the end.
Sink = Callable[[str], object]

READ_SIZE = 16 * 1024
FLUSH_INTERVAL = 0.02  # output is sent to viewers in batches at most this often


def shell_status(returncode: int) -> int:
    """An exit status as a shell reports it: 0…255, and 128 + N for a death by signal N
    (subprocess gives -N, which docs/protocol.md does not allow)."""
    return 128 - returncode if returncode < 0 else returncode & 0xFF


def _become_controlling_tty() -> None:
    # Runs in the child after setsid(): the pty on stdin becomes its controlling
    # terminal, so job control and Ctrl-C work in the shell.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    def __init__(
        self,
        cwd: Path,
        shell: str,
        *,
        scrollback_bytes: int = 1024 * 1024,
        rate_bytes: int = 256 * 1024,
        on_exit: Callable[[Terminal], None] | None = None,
        on_change: Callable[[Terminal], None] | None = None,
        jail: Jail | None = None,
    ) -> None:
        self.id = "t-" + secrets.token_hex(8)
        # The project's sandbox (None: the shell runs as the server, for tests of the pty).
        self.jail = jail
        self.cwd = cwd
        self.shell = shell
        self.scrollback_bytes = scrollback_bytes
        self.rate_bytes = rate_bytes
        self._on_exit = on_exit
        self._on_change = on_change
        self._scrollback: deque[str] = deque()
        self._scrollback_size = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._viewers: dict[object, tuple[Sink, int, int]] = {}
        self._pending: list[str] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._resume_handle: asyncio.TimerHandle | None = None
        self._tokens = float(rate_bytes)
        self._refilled = time.monotonic()
        self.size = (24, 80)
        self.exit_code: int | None = None
        self.last_activity = time.monotonic()
        self.bytes_read = 0
        self._loop = asyncio.get_running_loop()
        self._master = -1
        self._proc: subprocess.Popen[bytes] | None = None

    # -- process ---------------------------------------------------------------------

    def start(self) -> None:
        master, slave = os.openpty()
        try:
            self._set_size(slave, *self.size)
            argv, cwd = [self.shell], str(self.cwd)
            preexec: Callable[[], None] | None = _become_controlling_tty
            env = process_environment()
            jail = self.jail
            if jail is not None and jail.isolated:
                # The shell's session must live inside the sandbox's pid namespace: a
                # shell restores the terminal to its parent's process group on exit,
                # and bwrap's lies outside. So bwrap keeps no controlling terminal and
                # setsid gives the pty to the shell.
                argv = jail.command(["setsid", "--ctty", self.shell])
                env, cwd, preexec = jail.environment(), "/", None
            elif jail is not None:
                argv, env = jail.command(argv), jail.environment()

            env.update(TERM="xterm-256color", COLUMNS="80", LINES="24")
            self._proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._loop.add_reader(master, self._readable)

    @property
    def alive(self) -> bool:
        return self._master >= 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def kill(self) -> None:
        """End the shell and everything in its session."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGHUP)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._closed()

    def _closed(self) -> None:
        if self._master < 0:
            return
        self._loop.remove_reader(self._master)
        os.close(self._master)
        self._master = -1
        for handle in (self._flush_handle, self._resume_handle):
            if handle is not None:
                handle.cancel()
        self._flush()
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                code = self._proc.wait()
            self.exit_code = shell_status(code)
        self._broadcast({"terminal": self.id, "exit": self.exit_code})
        self._changed()
        if self._on_exit is not None:
            self._on_exit(self)

    # -- output ----------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the shell and every process holding the pty have gone
        if not data:
            self._closed()
            return
        self.bytes_read += len(data)
        self.last_activity = time.monotonic()
        self._output(self._decoder.decode(data))
        self._charge(len(data))

    def _charge(self, size: int) -> None:
        """Token bucket: past the rate, stop reading until the bucket refills."""
        now = time.monotonic()
        self._tokens = min(
            float(self.rate_bytes), self._tokens + (now - self._refilled) * self.rate_bytes
        )
        self._refilled = now
        self._tokens -= size
        if self._tokens < 0 and self._master >= 0:
            self._loop.remove_reader(self._master)
            delay = -self._tokens / self.rate_bytes
            self._resume_handle = self._loop.call_later(delay, self._resume)

    def _resume(self) -> None:
        self._resume_handle = None
        if self._master >= 0:
            self._loop.add_reader(self._master, self._readable)

    def _output(self, text: str) -> None:
        if not text:
            return
        self._scrollback.append(text)
        self._scrollback_size += len(text.encode())
        while self._scrollback_size > self.scrollback_bytes and self._scrollback:
            excess = self._scrollback_size - self.scrollback_bytes
            head = self._scrollback[0]
            head_size = len(head.encode())
            if head_size <= excess:
                self._scrollback.popleft()
                self._scrollback_size -= head_size
            else:
                kept = head.encode()[excess:].decode(errors="ignore")
                self._scrollback[0] = kept
                self._scrollback_size -= head_size - len(kept.encode())
        self._pending.append(text)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending = []
        self._broadcast({"terminal": self.id, "data": text})

    def _broadcast(self, event: dict[str, object]) -> None:
        frame = json.dumps(event)
        for sink, _, _ in list(self._viewers.values()):
            sink(frame)

    @property
    def scrollback(self) -> str:
        return "".join(self._scrollback)

    # -- viewers and input -----------------------------------------------------------

    def attach(self, viewer: object, sink: Sink, rows: int, cols: int) -> str:
        """Add a viewer; returns the scrollback it starts from (pending output included,
        so nothing is seen twice or missed)."""
        self._flush()
        self._viewers[viewer] = (sink, rows, cols)
        self._resize()
        self.last_activity = time.monotonic()
        return self.scrollback

    def detach(self, viewer: object) -> None:
        if self._viewers.pop(viewer, None) is not None:
            self._resize()
            self.last_activity = time.monotonic()

    def viewing(self, viewer: object) -> bool:
        return viewer in self._viewers

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def resize(self, viewer: object, rows: int, cols: int) -> None:
        entry = self._viewers.get(viewer)
        if entry is not None:
            self._viewers[viewer] = (entry[0], rows, cols)
            self._resize()

    def _resize(self) -> None:
        if not self._viewers or self._master < 0:
            return
        # The smallest viewer sets the size, so every viewer sees whole lines.
        size = (
            min(rows for _, rows, _ in self._viewers.values()),
            min(cols for _, _, cols in self._viewers.values()),
        )
        if size != self.size:
            self.size = size
            self._set_size(self._master, *size)
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception:
                log.exception("publishing terminal state failed")

    @staticmethod
    def _set_size(fd: int, rows: int, cols: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data: str) -> None:
        if self._master < 0:
            return
        self.last_activity = time.monotonic()
        payload = data.encode()
        # A pty accepts input a buffer at a time; the rest waits for a writable fd.
        view = memoryview(payload)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                self._loop.call_later(0.01, self.write, bytes(view).decode(errors="ignore"))
                return
            view = view[written:]
