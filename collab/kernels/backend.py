"""Kernel backends: the process (or remote kernel) behind one session. `LocalBackend`
runs a kernel with jupyter-client in the project directory under an address-space limit,
inside the project's sandbox when given one (collab/sandbox): then the kernel talks ZeroMQ
over Unix sockets in a directory only its sandbox sees, since a sandbox without network
has no TCP port the server could reach. `collab.kernels.gateway.GatewayBackend` runs it
on a Jupyter Kernel Gateway."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import os
import resource
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import zmq
import zmq.asyncio
from jupyter_client.adapter import adapt
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import DELIM, Session

from collab.sandbox.jail import Jail

# Kernel messages the server's sockets queue before the kernel's IOPub socket drops any
# (ZeroMQ's high-water mark): a 2 s stall of the loop while a kernel prints at full speed.
IOPUB_BACKLOG = 100_000
# Messages read from one socket before the loop runs something else.
READ_BATCH = 256
# Signatures remembered to refuse a replayed message (jupyter-client's digest history).
SEEN_SIGNATURES = 65_536

log = logging.getLogger(__name__)

# (channel, message) for every message the kernel sends on iopub, shell or stdin.
OnMessage = Callable[[str, dict[str, Any]], None]


class Backend(Protocol):
    async def start(self, on_message: OnMessage) -> None: ...
    def execute(self, code: str) -> str: ...
    def input_reply(self, value: str) -> None: ...
    async def interrupt(self) -> None: ...
    async def restart(self) -> None: ...
    async def shutdown(self) -> None: ...
    async def is_alive(self) -> bool: ...


def process_environment() -> dict[str, str]:
    """The server's environment without its own settings and database credentials, for
    the kernels and shells that run project code."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("COLLAB_", "PG", "JPY_")):
            del env[key]
    return env


def _address_space_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        # Runs in the forked child before exec: the kernel and everything it spawns
        # inherit the limit, so one notebook cannot take the machine's memory.
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


class MessageDecoder:
    """A kernel message's frames to jupyter-client's message dict, as
    `Session.deserialize` makes it (signature checked, a replayed signature refused,
    older protocol versions adapted) but without parsing the headers' dates into
    datetimes, which nothing here reads: about a tenth of the server's CPU while a kernel
    prints flushed lines."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._seen: set[bytes] = set()
        self._order: collections.deque[bytes] = collections.deque()

    def decode(self, frames: list[bytes]) -> dict[str, Any]:
        session = self.session
        if DELIM not in frames:
            raise ValueError("malformed kernel message: no delimiter")
        parts = frames[frames.index(DELIM) + 1 :]
        if len(parts) < 5:
            raise ValueError("malformed kernel message: fewer than 5 parts")
        if session.auth is not None:
            signature = parts[0]
            if not signature:
                raise ValueError("unsigned kernel message")
            if signature in self._seen:
                raise ValueError("replayed kernel message")
            if not hmac.compare_digest(signature, session.sign(parts[1:5])):
                raise ValueError("kernel message with an invalid signature")
            self._seen.add(signature)
            self._order.append(signature)
            if len(self._order) > SEEN_SIGNATURES:
                self._seen.discard(self._order.popleft())
        header = session.unpack(parts[1])
        message = {
            "header": header,
            "msg_id": header["msg_id"],
            "msg_type": header["msg_type"],
            "parent_header": session.unpack(parts[2]),
            "metadata": session.unpack(parts[3]),
            "content": session.unpack(parts[4]),
            "buffers": [memoryview(b) for b in parts[5:]],
        }
        return adapt(message)


class _JailedKernelManager(AsyncKernelManager):
    """Starts the kernelspec's command inside the jail."""

    jail: Jail | None = None
    binds: list[Path] = []
    address_space = 0  # RLIMIT_AS of the kernel, in bytes (0: none)

    def write_connection_file(self, **kwargs: Any) -> None:
        super().write_connection_file(**kwargs)
        jail = self.jail
        if jail is not None and jail.isolated and jail.gid is not None:
            # Written 0600 by the server; the kernel reads it through the project's
            # group. Never through a link: the file stays the server's, in a sticky dir.
            fd = os.open(self.connection_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fchown(fd, -1, jail.gid)
                os.fchmod(fd, 0o640)
            finally:
                os.close(fd)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd: list[str] = super().format_kernel_cmd(extra_arguments)
        if self.jail is None:
            return cmd
        return self.jail.command(cmd, binds=self.binds, address_space=self.address_space)


def _is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


class LocalBackend:
    def __init__(
        self,
        kernel_name: str,
        cwd: Path,
        memory_limit: int,
        startup_timeout: float = 60,
        jail: Callable[[], Awaitable[Jail]] | None = None,
        on_exit: Callable[[], None] | None = None,
        oom_kills: Callable[[], int] | None = None,
    ) -> None:
        self.kernel_name = kernel_name
        self.cwd = cwd
        self.memory_limit = memory_limit
        self.startup_timeout = startup_timeout
        # The project's sandbox, prepared at each start (None: a plain local process).
        self._jail = jail
        self._on_exit = on_exit
        # The project's count of processes killed for its memory limit (cgroups).
        self._oom_kills = oom_kills
        self._oom_before = 0
        self._folder: Path | None = None
        self._km: AsyncKernelManager | None = None
        self._kc: Any = None
        self._readers: list[asyncio.Task[None]] = []
        self._decoder: MessageDecoder | None = None
        self._on_message: OnMessage = lambda channel, msg: None
        self._exit_pending = False

    async def start(self, on_message: OnMessage) -> None:
        jail = await self._jail() if self._jail is not None else None
        self._exit_pending = self._on_exit is not None
        if self._oom_kills is not None:
            self._oom_before = self._oom_kills()
        km = _JailedKernelManager(kernel_name=self.kernel_name)
        # A graceful shutdown that takes longer than this is finished with SIGKILL.
        km.shutdown_wait_time = 3.0
        kwargs: dict[str, Any] = {"cwd": str(self.cwd), "env": process_environment()}
        if jail is not None:
            folder = self._folder = await asyncio.to_thread(jail.private_dir, "k-")
            km.connection_file = str(folder / "kernel.json")
            km.jail = jail
            if jail.isolated:
                km.transport = "ipc"
                km.ip = str(folder / "k")
                km.binds = [folder]
                await asyncio.to_thread(jail.make_dirs, ".ipython/profile_default")
                kwargs["cwd"] = "/"
                # A SIGINT to the process group would end bwrap itself, and the sandbox
                # with it: interrupts go as a message on the control channel instead.
                if km.kernel_spec is not None:
                    km.kernel_spec.interrupt_mode = "message"
                # The kernel inherits the server's stdout and stderr: when those are the
                # terminal an admin started the server from, the project's code could
                # write to it and read what the admin types. Logs (pipes, files) stay.
                for stream, fd in (("stdout", 1), ("stderr", 2)):
                    if _is_terminal(fd):
                        kwargs[stream] = subprocess.DEVNULL
            kwargs["env"] = jail.environment()
            # The jail's command line takes the limit: no preexec_fn, no fork of the server.
            km.address_space = max(0, self.memory_limit)
        elif self.memory_limit > 0:
            kwargs["preexec_fn"] = _address_space_limit(self.memory_limit)
        try:
            await km.start_kernel(**kwargs)
        except BaseException:
            self._ended()
            raise
        self._km = km
        kc = km.client()
        # Room for a burst the loop is too busy to read: ZeroMQ's default of 1,000
        # messages a side would have the kernel's IOPub socket (a PUB, which never waits)
        # drop the rest, leaving holes in a cell's output. Bounded, for a kernel that
        # prints flushed lines forever (about 1 KB a message).
        kc.context.setsockopt(zmq.RCVHWM, IOPUB_BACKLOG)
        kc.start_channels()
        self._kc = kc
        try:
            await kc.wait_for_ready(timeout=self.startup_timeout)
        except BaseException:
            await self.shutdown()
            raise
        self._on_message = on_message
        self._start_readers()

    def _start_readers(self) -> None:
        if self._decoder is None or self._decoder.session is not self._kc.session:
            self._decoder = MessageDecoder(self._kc.session)
        for channel in ("iopub", "shell", "stdin"):
            self._readers.append(
                asyncio.create_task(self._read(channel, self._on_message), name=f"kernel-{channel}")
            )

    async def _stop_readers(self) -> None:
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._readers = []

    async def _read(self, channel: str, on_message: OnMessage) -> None:
        """Every message of one channel, in order. A wake-up reads what is waiting, up to
        READ_BATCH messages, without a future per message (jupyter-client's get_msg
        polls and awaits each one: a third of the server's CPU under a flood of
        stream messages)."""
        sock: zmq.asyncio.Socket = getattr(self._kc, f"{channel}_channel").socket
        # The same socket, read without the event loop once it says something is there.
        raw: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        decoder = self._decoder
        assert decoder is not None
        refused = 0
        while True:
            try:
                await sock.poll()  # for reading
            except asyncio.CancelledError:
                raise
            except Exception:
                # A torn-down socket: the death monitor reports the kernel itself.
                log.debug("kernel channel closed", extra={"channel": channel})
                return
            for _ in range(READ_BATCH):
                try:
                    frames = raw.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError:
                    log.debug("kernel channel closed", extra={"channel": channel})
                    return
                try:
                    msg = decoder.decode(frames)
                except Exception as exc:
                    # Said once, then every thousandth: the project's code may send these.
                    if refused % 1000 == 0:
                        log.warning(
                            "a kernel message was refused (%d so far): %s",
                            refused + 1,
                            str(exc)[:200],
                            extra={"event": "kernel.bad_message", "channel": channel},
                        )
                    refused += 1
                    continue
                try:
                    on_message(channel, msg)
                except Exception:
                    log.exception("handling a kernel message failed")
            # Others' turn (a kernel that floods must not hold the loop).
            await asyncio.sleep(0)

    def death_reason(self) -> str | None:
        """Why the kernel died, when the machine says: the project's memory limit."""
        if self._oom_kills is not None and self._oom_kills() > self._oom_before:
            return "out of memory: the project's memory limit was reached"
        return None

    def execute(self, code: str) -> str:
        msg_id: str = self._kc.execute(code, store_history=True, allow_stdin=True)
        return msg_id

    def input_reply(self, value: str) -> None:
        self._kc.input(value)

    async def interrupt(self) -> None:
        # interrupt_kernel follows the kernelspec: a signal to the process group, or an
        # interrupt_request on the control channel for interrupt_mode "message".
        if self._km is not None:
            await self._km.interrupt_kernel()

    async def restart(self) -> None:
        if self._km is None:
            raise RuntimeError("kernel not started")
        # wait_for_ready reads the shell channel itself, so the readers step aside meanwhile.
        await self._stop_readers()
        try:
            await self._km.restart_kernel(now=False)
            await self._kc.wait_for_ready(timeout=self.startup_timeout)
        finally:
            self._start_readers()

    async def shutdown(self) -> None:
        await self._stop_readers()
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        km, self._km = self._km, None
        if km is not None:
            with contextlib.suppress(Exception):
                if await km.is_alive():
                    await km.shutdown_kernel(now=False)
                else:
                    await km.shutdown_kernel(now=True)
        self._ended()

    def _ended(self) -> None:
        self._remove_folder()
        if self._on_exit is not None and self._exit_pending:
            self._exit_pending = False
            self._on_exit()

    def _remove_folder(self) -> None:
        folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    async def is_alive(self) -> bool:
        return self._km is not None and bool(await self._km.is_alive())
