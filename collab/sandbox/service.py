"""Sandbox: the server's one view of how project code runs. It checks at start-up what
isolation this host allows and logs it, prepares a Jail per project (its user, cgroups,
network policy, disk allowance), stops a project's processes at its disk quota, and
removes a deleted project's user, cgroups and files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

from collab.config import Settings
from collab.errors import ApiError
from collab.sandbox import users
from collab.sandbox.cgroups import Cgroups, Limits
from collab.sandbox.jail import Jail

log = logging.getLogger(__name__)

DISK_CHECK_SECONDS = 0.5


class SandboxError(RuntimeError):
    pass


class Sandbox:
    def __init__(self, settings: Settings, pool: Any = None) -> None:
        self.settings = settings
        self.pool = pool
        self.mode = settings.sandbox
        self.root = os.geteuid() == 0
        self.unavailable: str | None = None  # why bwrap cannot run here
        self.cgroups = Cgroups()
        self.limits = Limits(
            settings.sandbox_memory_bytes, settings.sandbox_pids, settings.sandbox_cpu_weight
        )
        self._runtime: Path | None = None
        self._adopted: set[UUID] = set()
        self._active: dict[UUID, int] = {}  # live processes per project, for the disk watch
        self._gids: dict[UUID, int] = {}  # projects' groups (root only), for the disk watch
        self._watcher: asyncio.Task[None] | None = None
        self._started = False

    @property
    def runtime(self) -> Path:
        """This process's directory of kernels' connection files and sockets (0700)."""
        if self._runtime is None:
            self._runtime = Path(tempfile.mkdtemp(prefix="collab-run-"))
        return self._runtime

    # -- start and stop --------------------------------------------------------------

    def start(self) -> None:
        """Check the setting and what this host allows; log what is in force."""
        if self._started:
            return
        self._started = True
        if self.mode not in ("bwrap", "none"):
            raise SandboxError(f'setting sandbox: "bwrap" or "none", not {self.mode!r}')
        if self.mode == "none":
            if not self.settings.sandbox_allow_none:
                raise SandboxError(
                    'sandbox = "none" runs every project as the server itself; it needs '
                    "sandbox_allow_none = true (or `collab serve --no-sandbox`)"
                )
            log.warning(
                "NO SANDBOX: kernels and terminals run as the server's own user and can read "
                "every project, the secret and the database; only for one trusted user",
                extra={"event": "sandbox.none"},
            )
            return
        self.unavailable = _probe(self.root)
        if self.unavailable is not None:
            log.error(
                "sandbox unavailable, kernels and terminals will not start: %s",
                self.unavailable,
                extra={"event": "sandbox.unavailable"},
            )
            return
        if self.root:
            self.cgroups = Cgroups.discover(self.settings.sandbox_projects_cpu_weight)
        limits = self.cgroups.describe(self.limits)
        missing = [f"{c}: {why}" for c, why in self.cgroups.missing.items()]
        if not self.root:
            missing.append("memory, processes, cpu: the server is not root (no cgroups)")
        s = self.settings
        log.info(
            "sandbox bwrap: namespaces mount, pid, ipc, uts%s; %s; limits: %s; "
            "open files %d, /tmp %d bytes, file size up to the disk quota%s",
            ", net (unless allowed)" if not s.sandbox_network_all else " (network on for all)",
            f"per-project users uid {s.sandbox_uid_min}-{s.sandbox_uid_max}"
            if self.root
            else "user namespace as the server's user",
            ", ".join(limits) or "no cgroup limits",
            s.sandbox_open_files,
            s.sandbox_tmp_bytes,
            f"; NOT in force: {'; '.join(missing)}" if missing else "",
            extra={"event": "sandbox.ready"},
        )

    def start_watch(self) -> None:
        if self.mode == "bwrap" and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_disk(), name="sandbox-disk")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._runtime is not None:
            await asyncio.to_thread(shutil.rmtree, self._runtime, True)

    # -- jails -----------------------------------------------------------------------

    async def jail(self, project_id: UUID, directory: Path) -> Jail:
        """How this project's next process starts; ApiError if it cannot be sandboxed."""
        self.start()
        s = self.settings
        network, used = await self._policy(project_id)
        quota = s.project_disk_quota_bytes
        if self.mode == "none":
            return Jail(project_id, directory, False, True, None, None, "", runtime=self.runtime)
        if self.unavailable is not None:
            raise ApiError(
                "sandbox_unavailable", f"the sandbox cannot run: {self.unavailable}", 503
            )
        uid = gid = None
        name = os.environ.get("USER", "user")
        etc: tuple[tuple[Path, str], ...] = ()
        dirs: list[Path] = []
        try:
            if self.root:
                entry = await asyncio.to_thread(
                    users.ensure, project_id, s.sandbox_uid_min, s.sandbox_uid_max
                )
                uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
                self._gids[project_id] = gid
                etc = await asyncio.to_thread(self._etc_files, entry)
                if project_id not in self._adopted:
                    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
                    await asyncio.to_thread(users.adopt, directory, uid, gid)
                    self._adopted.add(project_id)
                dirs = await asyncio.to_thread(self.cgroups.create, str(project_id), self.limits)
        except (OSError, users.UserError) as exc:
            log.exception("preparing a sandbox failed", extra={"event": "sandbox.failed"})
            raise ApiError("sandbox_unavailable", f"the sandbox cannot run: {exc}", 503) from None
        return Jail(
            project_id,
            directory,
            True,
            network,
            uid,
            gid,
            name,
            cgroups=tuple(dirs),
            open_files=s.sandbox_open_files,
            file_size=max(0, quota - used),
            tmp_bytes=s.sandbox_tmp_bytes,
            ro_paths=s.sandbox_ro_paths,
            runtime=self.runtime,
            etc_files=etc,
        )

    async def _policy(self, project_id: UUID) -> tuple[bool, int]:
        """(network allowed, disk used) from the projects row."""
        if self.pool is None:
            return self.settings.sandbox_network_all, 0
        row = await self.pool.fetchrow(
            "SELECT network, disk_used FROM projects WHERE project_id = $1", project_id
        )
        if row is None:
            return self.settings.sandbox_network_all, 0
        return bool(row["network"] or self.settings.sandbox_network_all), int(row["disk_used"])

    def _etc_files(self, entry: Any) -> tuple[tuple[Path, str], ...]:
        folder = self.runtime / f"etc-{entry.pw_uid}"
        folder.mkdir(mode=0o755, exist_ok=True)
        passwd, group = users.passwd_lines(entry)
        out = []
        for name, text in (("passwd", passwd), ("group", group)):
            path = folder / name
            path.write_text(text)
            path.chmod(0o644)
            out.append((path, f"/etc/{name}"))
        return tuple(out)

    # -- processes -------------------------------------------------------------------

    def started(self, project_id: UUID) -> None:
        """A process of the project started (the disk watch covers it until it ends)."""
        self._active[project_id] = self._active.get(project_id, 0) + 1

    def ended(self, project_id: UUID) -> None:
        count = self._active.get(project_id, 0) - 1
        if count > 0:
            self._active[project_id] = count
            return
        self._active.pop(project_id, None)
        if self.cgroups.bases:
            self.cgroups.release(str(project_id))

    def oom_kills(self, project_id: UUID) -> int:
        try:
            return self.cgroups.oom_kills(str(project_id))
        except (OSError, ValueError):
            return 0

    async def _watch_disk(self) -> None:
        """A project that writes past its quota has its processes killed: the rlimit stops
        one file at the quota, this stops many small ones."""
        from collab.projects.lifecycle import disk_usage
        from collab.projects.store import project_dir

        quota = self.settings.project_disk_quota_bytes
        while True:
            await asyncio.sleep(DISK_CHECK_SECONDS)
            for project_id in list(self._active):
                try:
                    directory = project_dir(self.settings.projects_dir, project_id)
                    used = await asyncio.to_thread(disk_usage, directory)
                    used += await asyncio.to_thread(self._runtime_usage, project_id)
                    if used > quota:
                        log.warning(
                            "project over its disk quota: stopping its processes",
                            extra={"event": "sandbox.over_quota"},
                        )
                        await asyncio.to_thread(self.cgroups.remove, str(project_id))
                except Exception:
                    log.exception("checking a project's disk use failed")

    def _runtime_usage(self, project_id: UUID) -> int:
        """Bytes in the project's kernels' connection dirs: they are on the host's disk
        (the runtime dir) and writable from the sandbox, so they count to its quota."""
        gid = self._gids.get(project_id)
        if gid is None or self._runtime is None:
            return 0
        from collab.projects.lifecycle import disk_usage

        total = 0
        with contextlib.suppress(OSError), os.scandir(self._runtime) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False) and entry.stat().st_gid == gid:
                        total += disk_usage(Path(entry.path))
        return total

    # -- deleting a project ------------------------------------------------------------

    async def remove_project(self, project_id: UUID, directory: Path) -> None:
        """Kill what the project runs, remove its cgroups, OS user and files."""
        if self.root and not self.cgroups.bases:
            self.cgroups = await asyncio.to_thread(Cgroups.discover)
        if self.cgroups.bases:
            await asyncio.to_thread(self.cgroups.remove, str(project_id))
        if self.root:
            await asyncio.to_thread(users.remove, project_id)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        self._adopted.discard(project_id)


def _probe(root: bool) -> str | None:
    """None if bwrap can make a sandbox here, else why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed (apt-get install bubblewrap)"
    for tool in ("setpriv", "prlimit") if root else ("prlimit",):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    nobody = 65534 if root else None
    jail = Jail(UUID(int=0), Path(tempfile.gettempdir()), True, False, nobody, nobody, "probe")
    argv = jail.command(["true"])
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed to run: {exc}"
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        return f"bwrap cannot create namespaces: {reason[0]} (are user namespaces enabled?)"
    return None


@contextlib.asynccontextmanager
async def sandbox_component(services: Any, api: Any) -> AsyncIterator[None]:
    """Starts after the tables (it hears of deleted projects) and before kernels and
    terminals, which take it from services.extra."""
    from collab.sandbox.admin import on_deleted

    sandbox = Sandbox(services.settings, services.pool)
    sandbox.start()
    sandbox.start_watch()
    services.extra["sandbox"] = sandbox
    tables = services.extra.get("tables")
    if tables is not None:
        tables.on_change("projects", on_deleted(services, sandbox))
    try:
        yield
    finally:
        await sandbox.close()
