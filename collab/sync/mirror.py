"""The file mirror: write a document to its file atomically (temporary file, fsync,
rename), and read a file back when something else changed it.

The path given is the one `paths.resolve` checked; the project's own code may swap a
directory on it for a symlink (or the file for a FIFO) a moment later. So the file and
its directory are opened without following links, checked to be that very path, and
everything after goes through the open descriptors: a swap makes the read or write
refuse, never reach outside the project (the server may run as root)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import stat as stat_module
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
    _make_parents(path.parent)
    dir_fd = _open_dir(path.parent)
    try:
        _write_in(dir_fd, path.name, data)
    finally:
        os.close(dir_fd)
    return stat(path)


def _write_in(dir_fd: int, name: str, data: bytes) -> None:
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fh = os.fdopen(os.open(tmp, flags, 0o600, dir_fd=dir_fd), "wb")
    try:
        with fh:
            try:
                current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            if os.geteuid() == 0:
                # A server running as root keeps the file the project's own user's (the
                # sandbox's), so its kernels and shells can still write it.
                owner = current if current is not None else os.fstat(dir_fd)
                os.fchown(fh.fileno(), owner.st_uid, owner.st_gid)
            fh.write(data)
            fh.flush()
            mode = 0o644
            if current is not None and stat_module.S_ISREG(current.st_mode):
                mode = current.st_mode & 0o777
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        # Replaces a symlink itself, never its target, so a link made later cannot
        # redirect the write out of the project.
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
