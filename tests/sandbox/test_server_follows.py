"""Files a project's code lays for the server: the document mirror reads and writes a
path that `paths.resolve` checked, and the project's code can swap a directory on it
for a symlink out of the project a moment later, or make the file a FIFO. The mirror
must then refuse, never read or write outside the project (the server may be root) and
never block its thread. A restore must bring a project's links back as links, never as
copies of what they point at."""

from __future__ import annotations

import asyncio
import os
import tarfile
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from collab.sync import mirror


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(project directory, a server directory outside it holding `a.md`)."""
    project = tmp_path / "project"
    (project / "d").mkdir(parents=True)
    (project / "d" / "a.md").write_text("student\n")
    server = tmp_path / "server"
    server.mkdir()
    (server / "a.md").write_text("server secret\n")
    return project.resolve(), server.resolve()


def _swap_for_link(folder: Path, target: Path) -> None:
    """What the project's code does between the server's check and its use."""
    (folder / "a.md").unlink()
    folder.rmdir()
    folder.symlink_to(target)


def test_mirror_write_after_its_directory_became_a_symlink_stays_inside(
    layout: tuple[Path, Path],
) -> None:
    project, server = layout
    checked = project / "d" / "a.md"  # as paths.resolve answered before the swap
    _swap_for_link(project / "d", server)
    with pytest.raises(OSError):
        mirror.write_atomic(checked, b"written by the server for the student\n")
    assert (server / "a.md").read_text() == "server secret\n"
    assert sorted(p.name for p in server.iterdir()) == ["a.md"]


def test_mirror_read_after_its_directory_became_a_symlink_reads_nothing(
    layout: tuple[Path, Path],
) -> None:
    project, server = layout
    checked = project / "d" / "a.md"
    _swap_for_link(project / "d", server)
    assert mirror.read(checked) is None


def test_mirror_read_of_a_file_become_a_symlink_reads_nothing(
    layout: tuple[Path, Path],
) -> None:
    project, server = layout
    checked = project / "d" / "a.md"
    checked.unlink()
    checked.symlink_to(server / "a.md")
    assert mirror.read(checked) is None


def test_mirror_read_of_a_fifo_returns_instead_of_blocking(layout: tuple[Path, Path]) -> None:
    project, _ = layout
    checked = project / "d" / "a.md"
    checked.unlink()
    os.mkfifo(checked)
    answer: list[object] = []
    reader = threading.Thread(target=lambda: answer.append(mirror.read(checked)), daemon=True)
    reader.start()
    reader.join(20)
    if reader.is_alive():
        # Unblock the stuck thread before failing (a writer opening the FIFO frees it).
        fd = os.open(checked, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        reader.join(5)
    assert answer == [None]


def test_mirror_write_replaces_a_fifo_with_the_document(layout: tuple[Path, Path]) -> None:
    project, _ = layout
    checked = project / "d" / "a.md"
    checked.unlink()
    os.mkfifo(checked)
    mirror.write_atomic(checked, b"doc\n")
    assert checked.read_text() == "doc\n"


# A project's links, restored. In the restore's scratch directory the archive's
# `secret` and `database.dump` sit two levels above a project's files, so a link the
# project's code made, `x -> ../../secret`, pointed at the server's signing secret there;
# and one absolute link anywhere made the whole restore fail.
LINKS = {
    "steal-secret": "../../secret",
    "steal-dump": "../../database.dump",
    "words": "/usr/share/dict/words",
    "notes-link": "notes.txt",
}


async def test_restore_keeps_a_projects_links_as_links_and_copies_nothing_they_point_at(
    server: Any, settings: Any, pg_url: str, tmp_path: Path
) -> None:
    from collab import backup
    from collab.cli import _server_major
    from collab.db import embedded
    from collab.projects.store import create_project
    from tests.conftest import make_user

    user = await make_user(server)
    project = await create_project(
        server.services.pool, settings.projects_dir, UUID(user.account_id), "P"
    )
    folder = settings.projects_dir / str(project)
    (folder / "notes.txt").write_text("homework")
    for name, target in LINKS.items():
        (folder / name).symlink_to(target)
    archive = tmp_path / "backup.tar"
    major = await _server_major(settings.database_url)
    secret = "signing-secret-" + os.urandom(8).hex()
    await asyncio.to_thread(
        backup.backup, settings.database_url, major, settings.projects_dir, archive, secret
    )

    target_db = f"restore_links_{os.getpid()}_{id(tmp_path)}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{target_db}"')
    try:
        target_dir = tmp_path / "restored"
        await asyncio.to_thread(
            backup.restore,
            embedded.with_database(pg_url, target_db),
            major,
            target_dir,
            archive,
            tmp_path / "restored-secret",
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
        await admin.close()
    restored = target_dir / str(project)
    assert (restored / "notes.txt").read_text() == "homework"
    for name, target in LINKS.items():
        assert (restored / name).is_symlink(), name
        assert os.readlink(restored / name) == target
    texts = [p.read_bytes() for p in target_dir.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not any(secret.encode() in text for text in texts)


def _exchange(a: Path, b: Path) -> None:
    """renameat2(RENAME_EXCHANGE): the two names swap in one step."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")


async def test_a_directory_swapped_for_a_link_during_a_backup_brings_nothing_from_outside(
    server: Any, settings: Any, tmp_path: Path
) -> None:
    """The project's code swaps its directory `d` with a link to a server directory
    whose files have the same names, over and over, while the admin takes a backup."""
    from collab import backup
    from collab.cli import _server_major
    from collab.projects.store import create_project
    from tests.conftest import make_user

    user = await make_user(server)
    project = await create_project(
        server.services.pool, settings.projects_dir, UUID(user.account_id), "P"
    )
    folder = settings.projects_dir / str(project)
    outside = tmp_path / "server-only"
    (folder / "d").mkdir()
    outside.mkdir()
    marker = "server-only-" + os.urandom(8).hex()
    for i in range(300):
        (folder / "d" / f"f{i}").write_text("student\n")
        (outside / f"f{i}").write_text(marker)
    (folder / "link").symlink_to(outside)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            _exchange(folder / "d", folder / "link")

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    major = await _server_major(settings.database_url)
    leaked = []
    try:
        for attempt in range(4):
            archive = tmp_path / f"backup-{attempt}.tar"
            await asyncio.to_thread(
                backup.backup, settings.database_url, major, settings.projects_dir, archive
            )
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    data = tar.extractfile(member) if member.isreg() else None
                    if data is not None and marker.encode() in data.read():
                        leaked.append(member.name)
    finally:
        stop.set()
        swapper.join(10)
    assert leaked == []


async def test_a_fifo_in_a_project_neither_blocks_a_backup_nor_fails_its_restore(
    server: Any, settings: Any, pg_url: str, tmp_path: Path
) -> None:
    from collab import backup
    from collab.cli import _server_major
    from collab.db import embedded
    from collab.projects.store import create_project
    from tests.conftest import make_user

    user = await make_user(server)
    project = await create_project(
        server.services.pool, settings.projects_dir, UUID(user.account_id), "P"
    )
    folder = settings.projects_dir / str(project)
    (folder / "notes.txt").write_text("homework")
    os.mkfifo(folder / "pipe")
    archive = tmp_path / "backup.tar"
    major = await _server_major(settings.database_url)
    await asyncio.wait_for(
        asyncio.to_thread(
            backup.backup, settings.database_url, major, settings.projects_dir, archive
        ),
        60,
    )
    target_db = f"restore_fifo_{os.getpid()}_{id(tmp_path)}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{target_db}"')
    try:
        target_dir = tmp_path / "restored"
        await asyncio.to_thread(
            backup.restore, embedded.with_database(pg_url, target_db), major, target_dir, archive
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
        await admin.close()
    assert (target_dir / str(project) / "notes.txt").read_text() == "homework"
