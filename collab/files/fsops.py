"""File operations on a project's tree that a swapped-in symlink cannot redirect.

The project's own code (a kernel, a shell) owns its directories and may replace one with
a link to `/` between the server's path check and its act; the server may run as root.
So a path is checked once (`paths.inside`, which resolves links that stay inside the
project), and then every directory on the way is opened from the project root one
component at a time with O_NOFOLLOW, and the act goes through that descriptor
(`openat`, `mkdirat`, `renameat2`, `unlinkat`): a swap makes the call fail, never reach
outside the project. As root, what the server makes belongs to the owner of the folder
it is made in (the project's user), so the sandbox can still write it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import stat as stat_module
from collections.abc import Iterator
from pathlib import Path

from collab.errors import ApiError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


def _moved() -> ApiError:
    return ApiError("bad_path", "a file or a link is in the way of that path")


def _adopt(name: str, dir_fd: int) -> None:
    """As root, a new entry belongs to the owner of the folder it is in."""
    if os.geteuid() == 0:
        owner = os.fstat(dir_fd)
        os.chown(name, owner.st_uid, owner.st_gid, dir_fd=dir_fd, follow_symlinks=False)


def _step(dir_fd: int, part: str, create: bool) -> int:
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):
        os.mkdir(part, 0o755, dir_fd=dir_fd)
        _adopt(part, dir_fd)
    return os.open(part, _DIR_FLAGS, dir_fd=dir_fd)


def open_folder(root: Path, checked: Path, *, create: bool = False) -> int:
    """A descriptor of the checked folder `checked` (under `root`, links already
    resolved), reached from the root without following any link; with `create`,
    missing folders are made on the way (mkdir -p)."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in checked.relative_to(root).parts:
            try:
                nxt = _step(fd, part, create)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _moved() from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def folder(root: Path, checked: Path, *, create: bool = False) -> Iterator[int]:
    fd = open_folder(root, checked, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def create(root: Path, target: Path) -> None:
    """An empty new file (EEXIST if the name is taken, by anything)."""
    with folder(root, target.parent, create=True) as dir_fd:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(target.name, flags, 0o644, dir_fd=dir_fd))
        _adopt(target.name, dir_fd)


def mkdir(root: Path, target: Path) -> None:
    with folder(root, target.parent, create=True) as dir_fd:
        os.mkdir(target.name, 0o755, dir_fd=dir_fd)
        _adopt(target.name, dir_fd)


def move(root: Path, source: Path, target: Path) -> None:
    """rename(2) that never replaces what is at the target (a symlink moves as itself)."""
    with folder(root, source.parent) as src_fd:
        if _lstat(source.name, src_fd) is None:
            raise FileNotFoundError(errno.ENOENT, "no such file")
        with folder(root, target.parent, create=True) as dst_fd:
            _rename_noreplace(src_fd, source.name, dst_fd, target.name)


def delete(root: Path, target: Path) -> None:
    """Remove a file, a link (itself) or a folder with everything in it."""
    with folder(root, target.parent) as dir_fd:
        st = _lstat(target.name, dir_fd)
        if st is None:
            raise FileNotFoundError(errno.ENOENT, "no such file")
        if stat_module.S_ISDIR(st.st_mode):
            _remove_tree(dir_fd, target.name)
        else:
            os.unlink(target.name, dir_fd=dir_fd)


MAX_DEPTH = 256


def _open_child_dir(dir_fd: int, name: str) -> int:
    # O_NONBLOCK: a FIFO swapped in for the folder must fail the open, not block it
    # (shutil.rmtree's plain open waited forever for a writer).
    return os.open(name, _DIR_FLAGS | os.O_NONBLOCK, dir_fd=dir_fd)


def _remove_tree(parent_fd: int, name: str) -> None:
    """rm -r through descriptors, without recursion: a link or FIFO swapped in for a
    folder fails the call (ELOOP, ENOTDIR), never leads elsewhere or blocks."""
    stack = [(parent_fd, name, _open_child_dir(parent_fd, name))]
    try:
        while stack:
            above, folder_name, fd = stack[-1]
            inner = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        inner = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if inner is not None:
                if len(stack) >= MAX_DEPTH:
                    raise ApiError(
                        "bad_path", "the folder is nested too deeply: delete it from a terminal"
                    )
                stack.append((fd, inner, _open_child_dir(fd, inner)))
                continue
            stack.pop()
            os.close(fd)
            os.rmdir(folder_name, dir_fd=above)
    finally:
        for _, _, fd in stack:
            os.close(fd)


def open_regular(root: Path, target: Path) -> int:
    """A read descriptor of the regular file at the checked path; not_found when it is
    missing, a folder, a FIFO or anything but a regular file (a link at the end is not
    followed: `inside` resolved it already)."""
    with folder(root, target.parent) as dir_fd:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(target.name, flags, dir_fd=dir_fd)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise ApiError("not_found", "no such file", status=404) from None
            raise
    if not stat_module.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ApiError("not_found", "no such file", status=404)
    os.set_blocking(fd, True)
    return fd


class Upload:
    """A file written beside its target and renamed over it in one step: readers see
    the old file or the whole new one; `close` without `commit` leaves nothing behind."""

    def __init__(self, root: Path, target: Path, temp_name: str) -> None:
        self.name = target.name
        self.temp_name = temp_name
        self.dir_fd = open_folder(root, target.parent, create=True)
        try:
            current = _lstat(self.name, self.dir_fd)
            if current is not None and stat_module.S_ISDIR(current.st_mode):
                raise ApiError("bad_path", "the path is a folder")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            self.fd = os.open(temp_name, flags, 0o644, dir_fd=self.dir_fd)
            if os.geteuid() == 0:
                # The project's user keeps the file it had, and owns a new one.
                owner = current
                if owner is None or not stat_module.S_ISREG(owner.st_mode):
                    owner = os.fstat(self.dir_fd)
                os.fchown(self.fd, owner.st_uid, owner.st_gid)
            if current is not None and stat_module.S_ISREG(current.st_mode):
                os.fchmod(self.fd, current.st_mode & 0o777)
        except BaseException:
            os.close(self.dir_fd)
            raise

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def commit(self) -> None:
        os.fsync(self.fd)
        os.replace(self.temp_name, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)

    def close(self) -> None:
        """Close, removing the temporary file if it was not committed."""
        os.close(self.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_name, dir_fd=self.dir_fd)
        os.close(self.dir_fd)


def _rename_noreplace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is not None:
        result = renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE)
        if result == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), dst)
    # No renameat2 here (or not on this filesystem): check, then rename.
    if _lstat(dst, dst_fd) is not None:
        raise FileExistsError(errno.EEXIST, "exists", dst)
    os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
