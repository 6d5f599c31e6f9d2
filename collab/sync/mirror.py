"""The file mirror: write a document to its file atomically (temporary file, fsync,
rename), and read a file back when something else changed it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
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
        current = stat_mode(path)
        os.chmod(tmp, current if current is not None else 0o644)
        # Replaces a symlink itself, never its target, so a link made later cannot
        # redirect the write out of the project.
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return stat(path)
