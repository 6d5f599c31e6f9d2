"""The file mirror: write a document to its file atomically (temporary file, fsync,
rename), and read a file back when something else changed it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import tempfile
import time
from pathlib import Path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


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
    sees the old file or the new one, never half of one. Returns the new stat."""
    return commit(prepare(path, data), path)


def prepare(path: Path, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path` and fsync it; `commit` renames it
    into place, `discard` removes it. Split so the caller can check the file did not
    change meanwhile just before the rename."""
    _make_parents(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if os.geteuid() == 0:
            # A server running as root keeps the file the project's own user's (the
            # sandbox's), so its kernels and shells can still write it.
            owner = os.lstat(path if os.path.lexists(path) else path.parent)
            os.fchown(fd, owner.st_uid, owner.st_gid)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        discard(Path(tmp))
        raise
    return Path(tmp)


def commit(tmp: Path, path: Path) -> tuple[int, int] | None:
    try:
        current = stat_mode(path)
        os.chmod(tmp, current if current is not None else 0o644)
        # Replaces a symlink itself, never its target, so a link made later cannot
        # redirect the write out of the project.
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
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
    current = stat_mode(path)
    os.chmod(tmp, current if current is not None else 0o644)
    if expected is None or not _exchange(tmp, path):
        return True, commit(tmp, path), None
    try:
        displaced = None
        if stat(tmp) != expected:
            displaced = read(tmp)
    finally:
        discard(tmp)
    return True, stat(path), displaced


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where that is not possible."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE)
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
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
