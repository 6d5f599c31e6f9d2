"""`collab backup` and `collab restore`: one tar file holding a pg_dump of the database,
the session-signing secret and the project directories, so that a server can be rebuilt
from it elsewhere with every session still valid. The file is secret material (0600)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit

import collab

FORMAT = 1
# Tables whose rows are not carried over: failed sign-ins would keep restored accounts
# locked out (their schema is, so an empty table is restored).
TRANSIENT_TABLES = ("login_failures",)


class BackupError(RuntimeError):
    pass


def _major(binary: str) -> int | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def _tool(name: str, server_major: int) -> str:
    """pg_dump / pg_restore of the server's own major version where one is installed, else the
    newest at hand (a newer pg_dump reads an older server, but its dumps carry settings an
    older server rejects, so matching versions are preferred)."""
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")]
    try:
        from collab.db.embedded import load_package

        candidates.append(Path(load_package()._commands.POSTGRES_BIN_PATH) / name)
    except ImportError:
        pass
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    versions = [(str(c), _major(str(c))) for c in candidates if c.exists()]
    for binary, major in versions:
        if major == server_major:
            return binary
    newer = [
        (major, binary) for binary, major in versions if major is not None and major > server_major
    ]
    if newer:
        return max(newer)[1]
    raise BackupError(f"no {name} for PostgreSQL {server_major} or newer found")


def _without_password(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and an environment that carries the password:
    a password on a command line is visible to every process on the host (`ps`)."""
    parts = urlsplit(database_url)
    env = dict(os.environ)
    if parts.password is None:
        return database_url, env
    env["PGPASSWORD"] = unquote(parts.password)
    userinfo = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host)), env


def _run(args: list[str], database_url: str) -> None:
    """Run a libpq tool with `--dbname` of `database_url`, its password in the environment."""
    url, env = _without_password(database_url)
    done = subprocess.run([*args, f"--dbname={url}"], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-2000:]}")


def _add_tree(tar: tarfile.TarFile, root: Path, arcname: str) -> None:
    """tar.add without following links: walked by directory descriptors, each file
    opened (never through a link) beside the lstat that named it. A project's code may
    swap a directory for a link out of the project during the backup; then the walk
    does not go there, and nothing from outside lands in the archive under the
    project's name. FIFOs and sockets are left out (a restore refuses them)."""
    tar.addfile(tar.gettarinfo(str(root), arcname))
    for dirpath, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        relative = os.path.relpath(dirpath, root)
        base = arcname if relative == "." else f"{arcname}/{relative}"
        for name in sorted(dirs + files):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                _add_entry(tar, dir_fd, name, f"{base}/{name}")


def _add_entry(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    info = tarfile.TarInfo(arcname)
    info.mode, info.uid, info.gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        try:
            info.linkname = os.readlink(name, dir_fd=dir_fd)
        except OSError as err:
            if err.errno == errno.EINVAL:
                return  # no longer a link (swapped back meanwhile): the next backup takes it
            raise
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        with os.fdopen(os.open(name, flags, dir_fd=dir_fd), "rb") as fh:
            opened = os.fstat(fh.fileno())
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                return  # replaced meanwhile: the next backup takes it
            info.size = opened.st_size
            tar.addfile(info, _Exactly(fh, info.size))


class _Exactly(io.RawIOBase):
    """A file read as exactly `size` bytes: zeros after an early end, since a project's
    code may truncate it while the backup reads (tar would abort the whole backup)."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.left = fh, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.fh.read(n)
        data += bytes(n - len(data))
        self.left -= n
        return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def backup(
    database_url: str,
    server_major: int,
    projects_dir: Path,
    out: Path,
    secret: str | None = None,
) -> dict[str, object]:
    """Write the backup to `out` (a .tar file, mode 0600) atomically; return its manifest.
    `secret` is the session-signing secret, carried so that sessions survive a restore."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="collab-backup-") as tmp:
        dump = Path(tmp) / "database.dump"
        _run(
            [
                _tool("pg_dump", server_major),
                "--format=custom",
                "--no-owner",
                *(f"--exclude-table-data={table}" for table in TRANSIENT_TABLES),
                f"--file={dump}",
            ],
            database_url,
        )
        manifest = {
            "format": FORMAT,
            "collab": collab.__version__,
            "created": time.time(),
            "secret": secret is not None,
        }
        partial = out.with_name(out.name + ".partial")
        # Created 0600: the file holds password hashes, API key hashes and the secret.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
            _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
            if secret is not None:
                _add_bytes(tar, "secret", secret.encode(), 0o600)
            tar.add(dump, arcname="database.dump")
            if projects_dir.exists():
                _add_tree(tar, projects_dir, "projects")
        os.replace(partial, out)
    return manifest


def read_manifest(archive: Path) -> dict[str, object]:
    """The backup's manifest; raises BackupError for anything that is not one of ours."""
    try:
        with tarfile.open(archive) as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
            tar.getmember("database.dump")
    except (KeyError, AttributeError, ValueError, tarfile.TarError):
        raise BackupError(f"{archive} is not a collab backup") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: unsupported backup format")
    return manifest


def restore(
    database_url: str,
    server_major: int,
    projects_dir: Path,
    archive: Path,
    secret_file: Path | None = None,
) -> dict[str, object]:
    """Restore into `database_url`, which must be empty, `projects_dir` and (when the
    backup carries one) the signing secret into `secret_file`. Migrations run afterwards
    bring an older backup up to date."""
    manifest = read_manifest(archive)
    with tempfile.TemporaryDirectory(prefix="collab-restore-") as tmp, tarfile.open(archive) as tar:
        # The "data" filter refuses absolute paths, links out and device files; a
        # project's symlinks are set aside and made after, so nothing is extracted
        # through one, and a link to /usr/share/dict does not fail the whole restore.
        links: list[tuple[str, str]] = []
        tar.extractall(tmp, filter=_links_aside(links))
        _run(
            [_tool("pg_restore", server_major), "--no-owner", "--single-transaction", "--exit-on-error",
             str(Path(tmp) / "database.dump")],
            database_url,
        )  # fmt: skip
        secret = Path(tmp) / "secret"
        if secret_file is not None and secret.is_file():
            _write_secret(secret_file, secret.read_text().strip())
        restored = Path(tmp) / "projects"
        if restored.exists():
            projects_dir.mkdir(parents=True, exist_ok=True)
            _make_links(Path(tmp), links)
            # Links stay links: followed, `x -> ../../secret` in a project (which a
            # project's code can make) would copy this scratch dir's secret into it.
            shutil.copytree(restored, projects_dir, dirs_exist_ok=True, symlinks=True)
    return manifest


def _links_aside(
    links: list[tuple[str, str]],
) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """An extraction filter: symlinks under projects/ are listed (made later by
    _make_links), other symlinks and special files dropped, everything else through the
    "data" filter."""

    def keep(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if member.issym():
            parts = PurePosixPath(member.name).parts
            if len(parts) > 2 and parts[0] == "projects" and ".." not in parts:
                links.append((member.name, member.linkname))
            return None
        if not (member.isreg() or member.isdir() or member.islnk()):
            return None  # a FIFO in an older backup: no reason to fail the restore
        return tarfile.data_filter(member, dest)

    return keep


def _make_links(root: Path, links: list[tuple[str, str]]) -> None:
    """The projects' symlinks, as they were (their targets are never followed: the
    server checks every path it opens in a project). Their directories are real ones,
    since no link was extracted."""
    for name, target in links:
        path = root / name
        if path.parent.is_dir() and not path.parent.is_symlink() and not os.path.lexists(path):
            os.symlink(target, path)


def _write_secret(path: Path, secret: str) -> None:
    """Replace the secret file atomically, 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    os.replace(partial, path)


async def forget_transient(database_url: str) -> None:
    """Empty TRANSIENT_TABLES (a backup made before they were left out carries rows)."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        for table in TRANSIENT_TABLES:
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                # Identifiers cannot be parameters; TRANSIENT_TABLES is ours.
                await conn.execute(f'TRUNCATE "{table}"')
    finally:
        await conn.close()
