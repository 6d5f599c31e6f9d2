"""Files a project's code lays for the server: the document mirror reads and writes a
path that `paths.resolve` checked, and the project's code can swap a directory on it
for a symlink out of the project a moment later, or make the file a FIFO. The mirror
must then refuse, never read or write outside the project (the server may be root) and
never block its thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

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
