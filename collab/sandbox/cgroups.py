"""Per-project cgroups: one memory limit, process count and CPU share for everything a
project runs on this host, on cgroup v2 (unified) or v1 (a hierarchy per controller).

Project cgroups are made under the server's own cgroup in each hierarchy, so whatever
limits the machine puts on the server also bound its projects."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "pids", "cpu")
# The subtree under the server's cgroup, and (v2) the leaf the server moves itself into,
# since a v2 cgroup with processes of its own cannot hand controllers to its children.
SUBTREE = "collab-sandbox"
SERVER_LEAF = "collab-server"


@dataclass(frozen=True)
class Limits:
    memory: int
    pids: int
    cpu_weight: int  # 1..10000, 100 is an even share (v2 cpu.weight; v1 cpu.shares scaled)


@dataclass
class Cgroups:
    # controller -> (version, the directory project cgroups are made in)
    bases: dict[str, tuple[int, Path]] = field(default_factory=dict)
    # controller -> why it is not in force
    missing: dict[str, str] = field(default_factory=dict)
    # the CPU weight of all projects together against the server (100: even)
    # (None: left as it is, or it could not be written)
    projects_cpu_weight: int | None = None

    @classmethod
    def discover(cls, projects_cpu_weight: int | None = None) -> Cgroups:
        """The hierarchies this host lets us use. `projects_cpu_weight` is the CPU weight
        of all projects together (the SUBTREE) against the server's own processes, 100
        being an even share; None leaves it as it is (a command that only removes a
        project must not undo what the running server set)."""
        found = cls()
        v1, v2 = _mounts()
        own = _own_paths()
        for controller in CONTROLLERS:
            try:
                if controller in v1:
                    base = v1[controller] / own.get(controller, "").lstrip("/") / SUBTREE
                    base.mkdir(exist_ok=True)
                    found.bases[controller] = (1, base)
                elif (
                    v2 is not None
                    and controller
                    in _read(v2 / own.get("", "").lstrip("/"), "cgroup.controllers").split()
                ):
                    found.bases[controller] = (2, _v2_base(v2 / own.get("", "").lstrip("/")))
                else:
                    found.missing[controller] = "controller not available"
            except OSError as exc:
                found.missing[controller] = f"cgroup not writable ({exc.strerror or exc})"
        v2_controllers = [c for c, (v, _) in found.bases.items() if v == 2]
        if v2_controllers:
            base = found.bases[v2_controllers[0]][1]
            try:
                _enable(base, v2_controllers)
            except OSError as exc:
                for c in v2_controllers:
                    del found.bases[c]
                    found.missing[c] = f"cgroup v2 delegation failed ({exc.strerror or exc})"
        if "cpu" in found.bases and projects_cpu_weight is not None:
            version, base = found.bases["cpu"]
            try:
                _write_cpu_weight(base, version, projects_cpu_weight)
                found.projects_cpu_weight = projects_cpu_weight
            except OSError as exc:
                # Each project's own weight still holds against the others.
                found.missing["all projects' cpu weight"] = f"not writable ({exc.strerror or exc})"
        return found

    def describe(self, limits: Limits) -> list[str]:
        values = {
            "memory": f"memory {limits.memory} bytes",
            "pids": f"processes {limits.pids}",
            "cpu": f"cpu weight {limits.cpu_weight}"
            + (
                f" (all projects {self.projects_cpu_weight} against the server's 100)"
                if self.projects_cpu_weight is not None
                else ""
            ),
        }
        out = []
        for controller in CONTROLLERS:
            if controller in self.bases:
                out.append(f"{values[controller]} (cgroup v{self.bases[controller][0]})")
        return out

    def create(self, name: str, limits: Limits) -> list[Path]:
        """Make (or reuse) the project's cgroups and set their limits; returns the
        directories a process joins."""
        dirs: dict[Path, int] = {}
        for controller, (version, base) in self.bases.items():
            path = base / name
            path.mkdir(exist_ok=True)
            dirs[path] = version
            if controller == "memory":
                if version == 1:
                    _write(path, "memory.limit_in_bytes", str(limits.memory))
                else:
                    _write(path, "memory.max", str(limits.memory))
                    with contextlib.suppress(OSError):
                        _write(path, "memory.swap.max", "0")
            elif controller == "pids":
                _write(path, "pids.max", str(limits.pids))
            elif controller == "cpu":
                _write_cpu_weight(path, version, limits.cpu_weight)
        return list(dirs)

    def oom_kills(self, name: str) -> int:
        """How many processes the kernel killed for the project's memory limit."""
        entry = self.bases.get("memory")
        if entry is None:
            return 0
        version, base = entry
        text = _read(base / name, "memory.oom_control" if version == 1 else "memory.events")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self, name: str) -> None:
        """Kill whatever the project still runs and remove its cgroups."""
        for _, base in {b for b in self.bases.values()}:
            path = base / name
            if not path.is_dir():
                continue
            for _ in range(50):
                pids = [int(p) for p in _read(path, "cgroup.procs").split()]
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                path.rmdir()

    def release(self, name: str) -> None:
        """Remove the project's cgroups if nothing runs in them any more."""
        for _, base in {b for b in self.bases.values()}:
            with contextlib.suppress(OSError):
                (base / name).rmdir()


def _mounts() -> tuple[dict[str, Path], Path | None]:
    v1: dict[str, Path] = {}
    v2: Path | None = None
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fstype, _, options = ([*right.split(), "", "", ""])[:3]
            mountpoint = Path(left.split()[4])
            if fstype == "cgroup2" and v2 is None:
                v2 = mountpoint
            elif fstype == "cgroup":
                for option in options.split(","):
                    if option in CONTROLLERS:
                        v1.setdefault(option, mountpoint)
    return v1, v2


def _own_paths() -> dict[str, str]:
    """controller -> this process's cgroup path; "" for the v2 hierarchy."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if not controllers:
                own[""] = path
            for controller in controllers.split(","):
                own[controller] = path
    return own


def _v2_base(own: Path) -> Path:
    """The v2 cgroup project cgroups are made in: SUBTREE under the server's own cgroup,
    after moving the server's processes into a leaf of their own (the no-internal-
    processes rule)."""
    base = own / SUBTREE
    if own != own.parent and _read(own, "cgroup.procs").split():
        leaf = own / SERVER_LEAF
        leaf.mkdir(exist_ok=True)
        for pid in _read(own, "cgroup.procs").split():
            with contextlib.suppress(OSError):
                _write(leaf, "cgroup.procs", pid)
    base.mkdir(exist_ok=True)
    return base


def _enable(base: Path, controllers: list[str]) -> None:
    wanted = " ".join(f"+{c}" for c in controllers)
    for path in (base.parent, base):
        enabled = _read(path, "cgroup.subtree_control").split()
        if not all(c in enabled for c in controllers):
            _write(path, "cgroup.subtree_control", wanted)


def _write_cpu_weight(path: Path, version: int, weight: int) -> None:
    """`weight` as v2 writes it (1..10000, 100 even); v1's cpu.shares is 1024 for even."""
    if version == 1:
        _write(path, "cpu.shares", str(max(2, weight * 1024 // 100)))
    else:
        _write(path, "cpu.weight", str(min(10000, max(1, weight))))


def _read(path: Path, name: str) -> str:
    """The file's text; "" when the cgroup is gone, including one removed between the
    open and the read (ENODEV: another process released it meanwhile)."""
    try:
        return (path / name).read_text()
    except FileNotFoundError:
        return ""
    except OSError as error:
        if error.errno == errno.ENODEV:
            return ""
        raise


def _write(path: Path, name: str, value: str) -> None:
    (path / name).write_text(value)
