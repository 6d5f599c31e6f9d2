"""Reading a build's outputs (log, PDF) from a project directory as the server. The
project's own code writes that directory, so every step is opened without following a
symlink: a `doc.log` made a link to /etc/shadow is refused, not read as root."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

OUTPUT_DIR = ".build"  # beside the main file; docs/protocol.md "LaTeX"


def outputs(path: str, suffix: str) -> str:
    """The project-relative path of a build output of the main file `path`
    (`sub/doc.tex`, ".pdf" → `sub/.build/doc.pdf`)."""
    source = PurePosixPath(path)
    return str(source.parent / OUTPUT_DIR / (source.stem + suffix))


@contextlib.contextmanager
def open_inside(root: Path, relative: str) -> Iterator[int | None]:
    """A read-only descriptor of a regular file under `root`, reached without following
    any symlink; None when it is missing, a link, or not a regular file."""
    parts = PurePosixPath(relative).parts
    fd = -1
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        inner = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        os.close(fd)
        fd = inner
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
    except OSError:
        if fd >= 0:
            os.close(fd)
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def read_inside(root: Path, relative: str, limit: int) -> bytes | None:
    """Up to `limit` bytes of a file under `root` (the last ones, where a log's
    messages end), or None."""
    with open_inside(root, relative) as fd:
        if fd is None:
            return None
        size = os.fstat(fd).st_size
        if size > limit:
            os.lseek(fd, size - limit, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1024 * 1024):
            chunks.append(chunk)
            if sum(map(len, chunks)) >= limit:
                break
        return b"".join(chunks)[:limit]


def file_head(root: Path, relative: str, size: int = 4096) -> str:
    with open_inside(root, relative) as fd:
        if fd is None:
            return ""
        return os.read(fd, size).decode("utf-8", "replace")


def exists(root: Path, relative: str) -> bool:
    with open_inside(root, relative) as fd:
        return fd is not None


# What a project may hold that no build reads: folders (besides the outputs) skipped by
# `sources`, and the cap past which it gives up (None: "unknown, assume changed").
_SKIPPED = frozenset({".git", "node_modules", "__pycache__", ".ipynb_checkpoints", ".venv"})
_MAX_SOURCES = 20000  # files and folders
_MAX_DEPTH = 64


def sources(root: Path) -> frozenset[tuple[str, int, int, int]] | None:
    """What a build reads, as (path, inode, size, mtime) of every file of the project
    outside build outputs: equal before and after means nothing a build could see has
    changed (a file rewritten in place changes its mtime; a replaced one its inode).
    Links are not followed. None ("unknown") for a project too large or too deep to tell
    quickly: then a request restarts the build, as it would without this check."""
    found: list[tuple[str, int, int, int]] = []
    entries = 0
    folders = [("", 0)]
    while folders:
        folder, depth = folders.pop()
        try:
            listing = os.scandir(os.path.join(root, folder))
        except OSError:
            continue
        with listing:
            for entry in listing:
                entries += 1
                if entries > _MAX_SOURCES:
                    return None
                rel = f"{folder}/{entry.name}" if folder else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name != OUTPUT_DIR and entry.name not in _SKIPPED:
                            if depth >= _MAX_DEPTH:
                                return None
                            folders.append((rel, depth + 1))
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                found.append((rel, st.st_ino, st.st_size, st.st_mtime_ns))
    return frozenset(found)
