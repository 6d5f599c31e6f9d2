"""The file calls and routes against a project's code that swaps a folder on the path for
a symlink out of the project between the server's check and its act (the server may be
root): every call refuses, nothing outside the project is moved, removed, written or
sent. And what the server makes in a project belongs to the project's user."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collab.errors import ApiError
from collab.files import calls, fsops, paths, routes
from tests.conftest import Served, make_user, ws_connect

SECRET = b"server secret\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A server folder outside every project, holding `a.md` and a folder `keep`."""
    folder = tmp_path / "server-side"
    (folder / "keep").mkdir(parents=True)
    (folder / "a.md").write_bytes(SECRET)
    (folder / "keep" / "b.md").write_bytes(SECRET)
    return folder.resolve()


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def swap_after_check(monkeypatch: pytest.MonkeyPatch, outside: Path) -> Iterator[list[int]]:
    """`inside` answers as before the swap, then `d` becomes a link to `outside`: what
    the project's code can do in that moment. Yields a count of swaps made."""
    real = paths.inside
    swaps: list[int] = []

    def racing(root: Path, path: str, *, follow: bool = True) -> Path:
        checked = real(root, path, follow=follow)
        d = root / "d"
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d)
            d.symlink_to(outside)
            swaps.append(1)
        return checked

    monkeypatch.setattr(calls, "inside", racing)
    monkeypatch.setattr(routes, "inside", racing)
    yield swaps


def _lay_out(root: Path) -> Callable[[], None]:
    def lay() -> None:
        d = root / "d"
        if d.is_symlink():
            d.unlink()
        (d / "keep").mkdir(parents=True, exist_ok=True)
        (d / "a.md").write_text("student\n")
        (d / "keep" / "b.md").write_text("student\n")

    return lay


async def test_every_file_call_refuses_a_folder_swapped_for_a_link_out(
    server: Served, outside: Path, swap_after_check: list[int]
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    async with ws_connect(server, ada.key) as ws:
        made = await ws.request({"query": {"projects": {"title": "P"}}})
        pid = made["result"]["projects"]["project_id"]
        root = (server.services.settings.projects_dir / pid).resolve()
        lay = _lay_out(root)
        before = _snapshot(outside)
        auth = {"Authorization": f"Bearer {ada.key}"}
        attempts: list[tuple[str, Any]] = [
            ("files.create", {"path": "d/new.md"}),
            ("files.mkdir", {"path": "d/newdir"}),
            ("files.move", {"path": "d/a.md", "to": "stolen.md"}),
            ("files.move", {"path": "top.md", "to": "d/planted.md"}),
            ("files.delete", {"path": "d/keep"}),
            ("files.delete", {"path": "d/a.md"}),
        ]
        for call, args in attempts:
            lay()
            (root / "top.md").write_text("top\n")
            r = await ws.call(call, {"project_id": pid, **args})
            assert r.get("error", {}).get("code") in ("bad_path", "not_found"), (call, args, r)
            assert _snapshot(outside) == before, (call, args)
            assert not (root / "stolen.md").exists()
    async with server.client() as http:
        for method, url in [
            ("PUT", f"/api/projects/{pid}/upload/d/a.md"),
            ("PUT", f"/api/projects/{pid}/upload/d/planted.md"),
            ("GET", f"/api/projects/{pid}/download/d/a.md"),
            ("GET", f"/raw/{pid}/d/a.md"),
            ("GET", f"/api/projects/{pid}/download/d/keep/b.md"),
        ]:
            lay()
            r = await http.request(method, url, content=b"planted\n", headers=auth)
            assert r.status_code in (400, 404), (method, url, r.status_code)
            assert r.json()["error"]["code"] in ("bad_path", "not_found")
            assert SECRET not in r.content
            assert _snapshot(outside) == before, (method, url)
    assert len(swap_after_check) == len(attempts) + 5


async def test_file_calls_still_work_through_a_link_inside_the_project(server: Served) -> None:
    """A link that stays inside the project is followed as before (only a swap between
    the check and the act is refused)."""
    ada = await make_user(server, "ada@example.com", "Ada")
    auth = {"Authorization": f"Bearer {ada.key}"}
    async with ws_connect(server, ada.key) as ws:
        made = await ws.request({"query": {"projects": {"title": "P"}}})
        pid = made["result"]["projects"]["project_id"]
        root = (server.services.settings.projects_dir / pid).resolve()
        (root / "real").mkdir()
        (root / "alias").symlink_to("real")
        r = await ws.call("files.create", {"project_id": pid, "path": "alias/n.md"})
        assert r["result"] == {"path": "alias/n.md"}
        assert (root / "real" / "n.md").is_file()
        r = await ws.call("files.move", {"project_id": pid, "path": "alias/n.md", "to": "m.md"})
        assert r["result"] == {"path": "m.md"} and (root / "m.md").is_file()
        r = await ws.call("files.move", {"project_id": pid, "path": "m.md", "to": "alias/m.md"})
        assert r["result"] == {"path": "alias/m.md"}
        (root / "taken.md").write_text("mine\n")
        r = await ws.call("files.move", {"project_id": pid, "path": "alias/m.md", "to": "taken.md"})
        assert r["error"]["code"] == "exists" and (root / "taken.md").read_text() == "mine\n"
        r = await ws.call("files.delete", {"project_id": pid, "path": "alias"})
        assert r["result"] == {"deleted": "alias"}
        assert not (root / "alias").is_symlink() and (root / "real" / "m.md").is_file()
    async with server.client() as http:
        r = await http.put(
            f"/api/projects/{pid}/upload/real/up.csv", content=b"1,2\n", headers=auth
        )
        assert r.status_code == 201
        r = await http.get(f"/api/projects/{pid}/download/real/up.csv", headers=auth)
        assert r.status_code == 200 and r.content == b"1,2\n"
        r = await http.get(
            f"/api/projects/{pid}/download/real/up.csv", headers={**auth, "Range": "bytes=2-"}
        )
        assert r.status_code == 206 and r.content == b"2\n"
        os.mkfifo(root / "pipe")
        r = await http.get(f"/raw/{pid}/pipe", headers=auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await http.put(f"/api/projects/{pid}/upload/real", content=b"x", headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_path"
        (root / "loop1").symlink_to("loop2")
        (root / "loop2").symlink_to("loop1")
        for url in (f"/raw/{pid}/loop1", f"/raw/{pid}/loop1/x.png"):
            r = await http.get(url, headers=auth)
            assert r.status_code in (400, 404) and r.json()["error"]["code"] in (
                "bad_path",
                "not_found",
            ), (url, r.text)


@pytest.mark.timeout(60)
def test_deleting_a_folder_whose_subfolder_becomes_a_fifo_fails_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = (tmp_path / "project").resolve()
    (root / "victim" / "d0" / "deeper").mkdir(parents=True)
    (root / "victim" / "keep.txt").write_text("x")
    real = fsops._open_child_dir

    def swapped(dir_fd: int, name: str) -> int:
        if name == "d0":  # listed as a folder, a FIFO by the time it is opened
            shutil.rmtree(root / "victim" / "d0")
            os.mkfifo(root / "victim" / "d0")
        return real(dir_fd, name)

    monkeypatch.setattr(fsops, "_open_child_dir", swapped)
    with pytest.raises(OSError) as err:
        fsops.delete(root, root / "victim")
    assert err.value.errno == errno.ENOTDIR


def test_deep_folders_are_deleted_without_recursion_and_too_deep_ones_refused(
    tmp_path: Path,
) -> None:
    root = (tmp_path / "project").resolve()
    for name, depth in (("ok", fsops.MAX_DEPTH - 1), ("deep", fsops.MAX_DEPTH + 5)):
        (root / name / "/".join(["d"] * depth)).mkdir(parents=True)
        (root / name / "/".join(["d"] * depth) / "leaf.txt").write_text("x")
    fsops.delete(root, root / "ok")
    assert not (root / "ok").exists()
    with pytest.raises(ApiError) as refused:
        fsops.delete(root, root / "deep")
    assert refused.value.code == "bad_path"


async def test_raw_files_that_a_browser_could_run_are_served_as_text(server: Served) -> None:
    """A script or style sheet in a project, loaded by `<script src=/raw/…>` from the
    app's origin, would run there; /raw names them text/plain (nosniff then refuses to
    run them) and keeps images, PDFs and text as they are."""
    ada = await make_user(server, "ada@example.com", "Ada")
    auth = {"Authorization": f"Bearer {ada.key}"}
    async with ws_connect(server, ada.key) as ws:
        made = await ws.request({"query": {"projects": {"title": "P"}}})
        pid = made["result"]["projects"]["project_id"]
    root = server.services.settings.projects_dir / pid
    expected = {
        "evil.js": "text/plain; charset=utf-8",
        "evil.mjs": "text/plain; charset=utf-8",
        "evil.css": "text/plain; charset=utf-8",
        "page.xhtml": "application/octet-stream",
        "mod.wasm": "application/octet-stream",
        "plot.png": "image/png",
        "fig.svg": "image/svg+xml",
        "paper.pdf": "application/pdf",
        "notes.txt": "text/plain; charset=utf-8",
    }
    async with server.client() as http:
        for name, kind in expected.items():
            (root / name).write_bytes(b"x")
            r = await http.get(f"/raw/{pid}/{name}", headers=auth)
            assert r.status_code == 200, name
            assert r.headers["content-type"] == kind, name
            assert r.headers["x-content-type-options"] == "nosniff"
        r = await http.get(f"/api/projects/{pid}/download/evil.js", headers=auth)
        assert r.headers["content-disposition"].startswith("attachment")
