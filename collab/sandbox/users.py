"""Per-project OS users (when the server runs as root): `collab-p-<16 hex of the project
id>`, a uid in the configured range, no home and no password, made with useradd and
removed with userdel."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

PREFIX = "collab-p-"
# useradd and userdel lock /etc/passwd and fail at once ("try again later") when another
# holds it: serialised within the process, retried across processes.
_ACCOUNTS = threading.Lock()
_ATTEMPTS = 20
# The users this process made (the test suite removes its own at the end, and only them:
# another suite or server on the machine keeps its users).
made: set[str] = set()


class UserError(RuntimeError):
    pass


def username(project_id: UUID) -> str:
    return PREFIX + project_id.hex[:16]


def ensure(project_id: UUID, uid_min: int, uid_max: int) -> pwd.struct_passwd:
    """The project's user, created if needed (two processes racing agree on one)."""
    name = username(project_id)
    with contextlib.suppress(KeyError):
        return _checked(pwd.getpwnam(name), uid_min, uid_max)
    command = [
        "useradd",
        "--no-create-home",
        "--home-dir",
        "/home/user",
        "--shell",
        "/bin/bash",
        "--comment",
        "collab project",
        "--user-group",
        "--key",
        f"UID_MIN={uid_min}",
        "--key",
        f"UID_MAX={uid_max}",
        "--key",
        f"GID_MIN={uid_min}",
        "--key",
        f"GID_MAX={uid_max}",
        name,
    ]
    stderr = _until(command, lambda: _exists(name))
    made.add(name)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UserError(f"useradd {name} failed: {stderr}") from None
    return _checked(entry, uid_min, uid_max)


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _until(command: list[str], done: Callable[[], bool]) -> str:
    """Run `command` until `done()` holds (another process holding the password file's
    lock makes it fail at once); the last error text if it never did."""
    stderr = ""
    delay = 0.02
    for _ in range(_ATTEMPTS):
        with _ACCOUNTS:
            if done():
                return ""
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if done():
                return ""
        stderr = result.stderr.strip()
        if "try again" not in stderr and "lock" not in stderr:
            break  # not another process's lock: retrying will not help
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    return stderr


def remove(project_id: UUID) -> bool:
    name = username(project_id)
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    stderr = _until(["userdel", name], lambda: not _exists(name))
    if _exists(name):
        raise UserError(f"userdel {name} failed: {stderr}")
    return True


def passwd_lines(own: pwd.struct_passwd) -> tuple[str, str]:
    """/etc/passwd and /etc/group as the sandbox sees them: the host's, without the
    other projects' users (whose names carry their project ids)."""

    def keep(line: str) -> bool:
        return not line.startswith(PREFIX) or line.startswith(own.pw_name + ":")

    passwd = "".join(line for line in _lines("/etc/passwd") if keep(line))
    group = "".join(line for line in _lines("/etc/group") if keep(line))
    return passwd, group


def adopt(directory: Path, uid: int, gid: int) -> int:
    """Give the project user everything in its directory that it does not own (files
    restored from a backup, written before sandboxes, made by the server as root).
    Walked by directory descriptors, links changed themselves and never followed, so
    a link swapped in by the project's code cannot point the walk elsewhere."""
    changed = 0
    with contextlib.suppress(OSError):
        st = os.lstat(directory)
        if not os.path.islink(directory) and (st.st_uid, st.st_gid) != (uid, gid):
            os.lchown(directory, uid, gid)
            changed += 1
    for _, dirs, files, dirfd in os.fwalk(directory, follow_symlinks=False):
        for name in dirs + files:
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
                    changed += 1
            except OSError:
                continue
    return changed


def _checked(entry: pwd.struct_passwd, uid_min: int, uid_max: int) -> pwd.struct_passwd:
    if not uid_min <= entry.pw_uid <= uid_max or entry.pw_uid == 0:
        raise UserError(f"user {entry.pw_name} has uid {entry.pw_uid}, outside {uid_min}-{uid_max}")
    return entry


def _lines(path: str) -> list[str]:
    with open(path) as fh:
        return [line if line.endswith("\n") else line + "\n" for line in fh]
