"""The file mirror: write a document to its file atomically (temporary file, fsync,
rename), and read a file back when something else changed it.

The path given is the one `paths.resolve` checked; the project's own code may swap a
directory on it for a symlink (or the file for a FIFO) a moment later. So the file and
its directory are opened without following links, checked to be that very path, and
everything after goes through the open descriptors: a swap makes the read or write
refuse, never reach outside the project (the server may run as root)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import logging
import os
import secrets
import stat as stat_module
import time
from pathlib import Path

log = logging.getLogger(__name__)


class PathMoved(OSError):
    """The checked path now leads somewhere else (a symlink swapped in), or is no
    regular file."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def read(path: Path) -> bytes | None:
    """The file's bytes; None if it is missing, or is not the regular file at the
    checked path (a FIFO would block the reading thread forever)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the file itself is now a symlink
            log.warning("mirror read refused: a symlink", extra={"event": "sync.path_escaped"})
            return None
        raise
    with os.fdopen(fd, "rb") as fh:
        if not stat_module.S_ISREG(os.fstat(fd).st_mode) or _real_path(fd) != str(path):
            log.warning(
                "mirror read refused: not the checked regular file",
                extra={"event": "sync.path_escaped"},
            )
            return None
        os.set_blocking(fd, True)
        return fh.read()


def _real_path(fd: int) -> str:
    """Where an open descriptor really is (the kernel's answer, links resolved)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def _open_dir(folder: Path) -> int:
    """The checked directory, opened; PathMoved if a symlink now leads elsewhere."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if _real_path(fd) != str(folder):
        os.close(fd)
        raise PathMoved(f"{folder} now leads out of its place")
    return fd


def stat_mode(path: Path) -> int | None:
    try:
        return path.lstat().st_mode & 0o777
    except OSError:
        return None


def _make_parents(folder: Path) -> None:
    """mkdir -p; as root, each new directory belongs to the owner of the one above it."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            owner = os.lstat(new.parent)
            os.lchown(new, owner.st_uid, owner.st_gid)


def write_atomic(path: Path, data: bytes) -> tuple[int, int] | None:
    """Replace the file's content in one rename, so a reader (a kernel, git, a crash)
    sees the old file or the new one, never half of one. Returns the new stat.
    PathMoved if the directory is no longer where it was checked."""
    return commit(prepare(path, data), path)


def prepare(path: Path, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path` and fsync it; `commit` renames it
    into place, `discard` removes it. Split so the caller can check the file did not
    change meanwhile just before the rename. Created through the checked directory's
    descriptor, never following a link."""
    _make_parents(path.parent)
    dir_fd = _open_dir(path.parent)
    tmp = f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fh = os.fdopen(os.open(tmp, flags, 0o600, dir_fd=dir_fd), "wb")
        try:
            with fh:
                try:
                    current = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    current = None
                if os.geteuid() == 0:
                    # A server running as root keeps the file the project's own user's
                    # (the sandbox's), so its kernels and shells can still write it.
                    owner = current if current is not None else os.fstat(dir_fd)
                    os.fchown(fh.fileno(), owner.st_uid, owner.st_gid)
                fh.write(data)
                fh.flush()
                mode = 0o644
                if current is not None and stat_module.S_ISREG(current.st_mode):
                    mode = current.st_mode & 0o777
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)
    return path.parent / tmp


def commit(tmp: Path, path: Path) -> tuple[int, int] | None:
    """Rename `tmp` over `path` within the checked directory."""
    dir_fd = _open_dir(path.parent)
    try:
        # Replaces a symlink itself, never its target, so a link made later cannot
        # redirect the write out of the project.
        os.replace(tmp.name, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp.name, dir_fd=dir_fd)
        raise
    finally:
        os.close(dir_fd)
    return stat(path)


def commit_unless_changed(
    tmp: Path, path: Path, expected: tuple[int, int] | None
) -> tuple[bool, tuple[int, int] | None, bytes | None]:
    """`commit`, unless the file's stat is no longer `expected` (something wrote it
    since it was last read). Returns (done, new stat, displaced): where the platform
    can, the new file is swapped in atomically and the one it replaced is checked once
    more, so that a write by another program that raced the swap is returned (for
    merging) rather than lost."""
    if stat(path) != expected:
        return False, None, None
    if expected is None or not _exchange(tmp, path):
        return True, commit(tmp, path), None
    try:
        displaced = None
        if stat(tmp) != expected:
            displaced = read(tmp)
    finally:
        discard(tmp)
    return True, stat(path), displaced


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names of one checked directory in one step (Linux renameat2); False
    where that is not possible."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None or a.parent != b.parent:
        return False
    dir_fd = _open_dir(b.parent)
    try:
        result = renameat2(
            dir_fd, os.fsencode(a.name), dir_fd, os.fsencode(b.name), _RENAME_EXCHANGE
        )
    finally:
        os.close(dir_fd)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOENT, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def settling(st: tuple[int, int] | None, settle_ns: int) -> bool:
    """Whether the file was modified so recently that its writer may not be done (a
    program that truncates and then writes shows an empty file in between)."""
    if st is None:
        return False
    age = time.time_ns() - st[0]
    return 0 <= age < settle_ns


def discard(tmp: Path) -> None:
    """Remove a temporary file left by `prepare`, through its checked directory."""
    try:
        dir_fd = _open_dir(tmp.parent)
    except OSError:
        return  # the directory moved or went: nothing of ours to remove there
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp.name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
