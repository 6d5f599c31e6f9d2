"""Jail: how one project's processes start. The bubblewrap command line shows them only
the project directory (read-write, at /home/user), the system read-only, a private /tmp
and their own process tree; the command line itself joins the project's cgroups and
takes its rlimits before bwrap starts. As root, bwrap sets up the namespaces and
`setpriv` drops to the project's user; otherwise bwrap makes a user namespace and the
code runs as the server's user."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

HOME = "/home/user"
# Host files a sandbox never reads even though /etc is shown: password hashes, host keys,
# sudo rules, and the usual places of the server's own configuration.
ETC_HIDDEN = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/security/opasswd",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/collab",
    "/etc/postgresql",
    "/etc/postgresql-common",
)
SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# System data outside /usr that programs need, shown read-only when present: TeX's
# formats (pdflatex.fmt) live in /var/lib/texmf on Debian.
SYSTEM_DATA = ("/var/lib/texmf",)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The first steps of every sandboxed command, run by the command line itself rather than
# in a preexec_fn: with one, Python forks the whole server (about 15 ms at 200 MB, on
# every kernel, build and SyncTeX query); without, it vforks. A shell joins the cgroups
# (its arguments up to `--` are cgroup.procs files; everything it execs is born inside),
# then prlimit (util-linux) sets the rlimits and execs bwrap.
ENTER_CGROUPS = (
    'for f; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 126; shift; done; shift; exec "$@"'
)


@dataclass(frozen=True)
class Jail:
    project_id: UUID
    directory: Path  # the project directory on the host
    isolated: bool  # False only for sandbox = "none"
    network: bool
    uid: int | None  # the project's own user, when the server runs as root
    gid: int | None
    user: str
    cgroups: tuple[Path, ...] = ()
    open_files: int = 1024
    file_size: int = -1  # RLIMIT_FSIZE; -1: unlimited
    tmp_bytes: int = 256 * 1024 * 1024
    ro_paths: tuple[str, ...] = ()
    runtime: Path = Path(tempfile.gettempdir())
    # (host file, path inside): the project's own /etc/passwd and /etc/group
    etc_files: tuple[tuple[Path, str], ...] = ()
    # The server's Python and virtualenv, shown read-only: kernels start with them.
    python_paths: tuple[str, ...] = field(default_factory=lambda: tuple(_python_paths()))

    @property
    def home(self) -> str:
        return HOME if self.isolated else str(self.directory)

    def command(
        self, argv: Sequence[str], *, binds: Sequence[Path] = (), address_space: int = 0
    ) -> list[str]:
        """argv run in the sandbox, in its cgroups and under its rlimits (`address_space`
        > 0 adds RLIMIT_AS, in bytes); `binds` are host directories shown read-write at
        their own path (a kernel's connection directory). Started with no preexec_fn."""
        return self.enter(address_space) + self._bwrap(argv, binds)

    def enter(self, address_space: int = 0) -> list[str]:
        """The command-line prefix that joins the cgroups and takes the rlimits."""
        limits = []
        if self.open_files > 0:
            limits.append(f"--nofile={self.open_files}:{self.open_files}")
        if self.file_size >= 0:
            limits.append(f"--fsize={self.file_size}:{self.file_size}")
        if address_space > 0:
            limits.append(f"--as={address_space}:{address_space}")
        prefix = ["prlimit", *limits, "--"] if limits else []
        if self.cgroups:
            procs = [str(path / "cgroup.procs") for path in self.cgroups]
            prefix = ["/bin/sh", "-c", ENTER_CGROUPS, "sh", *procs, "--", *prefix]
        return prefix

    def _bwrap(self, argv: Sequence[str], binds: Sequence[Path]) -> list[str]:
        """argv under bwrap (as it is when not isolated), without the cgroups and limits."""
        if not self.isolated:
            return list(argv)
        args = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args += ["--unshare-cgroup-try", "--die-with-parent", "--hostname", "project"]
        if not self.network:
            args.append("--unshare-net")
        if self.uid is None:
            # Not root: a user namespace, with no nested ones for the code inside.
            args += ["--unshare-user", "--disable-userns"]
        args += ["--ro-bind", "/usr", "/usr"]
        for name in SYSTEM_DIRS:
            path = Path("/", name)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--ro-bind", "/etc", "/etc"]
        for hidden in ETC_HIDDEN:
            if os.path.isdir(hidden) and not os.path.islink(hidden):
                args += ["--tmpfs", hidden]
            elif os.path.lexists(hidden):
                args += ["--ro-bind", "/dev/null", hidden]
        for host, inside in self.etc_files:
            args += ["--ro-bind", str(host), inside]
        # The private /tmp first: the server's Python may live under /tmp (a checkout
        # there), and a tmpfs mounted after its bind would hide it.
        args += ["--proc", "/proc", "--dev", "/dev"]
        # Shared memory (multiprocessing's semaphores), private and as bounded as /tmp.
        args += ["--perms", "1777", "--size", str(self.tmp_bytes), "--tmpfs", "/dev/shm"]
        args += ["--perms", "1777", "--size", str(self.tmp_bytes), "--tmpfs", "/tmp"]
        args += ["--dir", "/var", "--symlink", "../tmp", "/var/tmp"]
        made: set[str] = set()
        for folder in [*self.python_paths, *SYSTEM_DATA, *self.ro_paths]:
            if os.path.exists(folder) and not _under(folder, "/usr"):
                args += [*_parents(folder, made), "--ro-bind", folder, folder]
        args += [*_parents(HOME, made), "--bind", str(self.directory), HOME, "--chdir", HOME]
        for path in binds:
            args += [*_parents(str(path), made), "--bind", str(path), str(path)]
        # ipykernel exits when its parent pid changes; inside the pid namespace the
        # parent is bwrap's init, never the server's pid that jupyter-client sets.
        args += ["--unsetenv", "JPY_PARENT_PID"]
        if self.uid is not None:
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            args += ["--cap-add", "CAP_SETPCAP", "--", "setpriv"]
            args += [f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
            args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
        args.append("--")
        return args + list(argv)

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A fresh environment: nothing of the server's own."""
        if not self.isolated:
            env = _server_environment()
        else:
            venv_bin = str(Path(sys.executable).parent)
            env = {
                "PATH": f"{venv_bin}:{PATH}",
                "HOME": HOME,
                "USER": self.user,
                "LOGNAME": self.user,
                "SHELL": "/bin/bash",
                "LANG": os.environ.get("LANG", "C.UTF-8"),
            }
        env.update(extra or {})
        return env

    def make_dirs(self, relative: str) -> None:
        """Directories in the project that the sandbox's user owns (made before two
        kernels race to make them themselves, as IPython does with ~/.ipython). Walked
        by directory descriptors that never follow a link, since the project's code may
        swap one in meanwhile."""
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return
        try:
            for part in Path(relative).parts:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    made = True
                except FileExistsError:
                    made = False
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                inner = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = inner
                if made and self.uid is not None:
                    os.fchown(fd, self.uid, self.gid if self.gid is not None else -1)
        except OSError:
            return
        finally:
            os.close(fd)

    def private_dir(self, prefix: str) -> Path:
        """A directory of the server's runtime dir that only this sandbox's user (and the
        server) can enter: a kernel's connection file and sockets. The server's, with
        the project's group let in to make its sockets, and sticky: the project's code
        cannot replace what the server writes there (the connection file, rewritten as
        root on a restart) with a link to a host file."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.runtime))
        if self.uid is not None and self.isolated and self.gid is not None:
            os.chown(path, -1, self.gid)
            os.chmod(path, 0o1770)
        return path


def _server_environment() -> dict[str, str]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("COLLAB_", "PG", "JPY_")):
            del env[key]
    return env


def _python_paths() -> list[str]:
    """The server's Python and its virtualenv, for kernels started with sys.executable."""
    paths = []
    for path in (sys.prefix, sys.base_prefix, sys.exec_prefix):
        if path not in paths:
            paths.append(path)
    return paths


def _parents(path: str, made: set[str]) -> list[str]:
    """Directories above a mount point, made traversable (bwrap would make them 0700,
    which the project's user could not pass)."""
    args: list[str] = []
    parent = Path(path).parent
    for folder in reversed([parent, *parent.parents]):
        name = str(folder)
        if name in ("/", "/tmp") or name in made:
            continue
        made.add(name)
        args += ["--perms", "0755", "--dir", name]
    return args


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
