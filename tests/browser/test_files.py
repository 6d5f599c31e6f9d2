"""Files in the browser: upload, rename, download, delete, folders; the tree follows the
disk live (a file made by a terminal appears); raw files are sandboxed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import page_for, shoot
from tests.browser.test_projects import create_project
from tests.conftest import Served, make_user, ws_connect


def project_file(server: Served, project_id: str, path: str) -> Path:
    return server.services.settings.projects_dir / project_id / path


async def answer_prompt(page: Page, label: str, value: str, button: str) -> None:
    dialog = page.get_by_role("dialog")
    await dialog.get_by_role("textbox", name=label, exact=True).fill(value)
    await dialog.get_by_role("button", name=button, exact=True).click()


async def test_upload_rename_download_delete(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    page = await page_for(browser, server, ada)
    project_id = await create_project(page, "Data")
    payload = bytes(range(256)) * 64

    await page.set_input_files(
        'input[type="file"]',
        files=[{"name": "data.bin", "mimeType": "application/octet-stream", "buffer": payload}],
    )
    row = page.locator('.tree-row[data-path="data.bin"]')
    await expect(row).to_be_visible()
    assert (
        await asyncio.to_thread(project_file(server, project_id, "data.bin").read_bytes) == payload
    )

    await page.get_by_role("button", name="New folder").click()
    await answer_prompt(page, "Name", "results", "Create")
    await expect(page.locator('.tree-row[data-path="results"]')).to_be_visible()

    await row.hover()
    await page.get_by_role("button", name="Rename data.bin").click()
    await answer_prompt(page, "New path", "results/moved.bin", "Rename")
    moved = page.locator('.tree-row[data-path="results/moved.bin"]')
    await expect(moved).to_be_visible()
    await expect(row).to_have_count(0)

    await moved.hover()
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download results/moved.bin").click()
    download = await info.value
    assert download.suggested_filename == "moved.bin"
    saved = await download.path()
    assert await asyncio.to_thread(Path(saved).read_bytes) == payload
    await shoot(page, "project-files")

    await moved.hover()
    await page.get_by_role("button", name="Delete results/moved.bin").click()
    await page.get_by_role("button", name="Delete", exact=True).click()
    await expect(moved).to_have_count(0)
    assert not await asyncio.to_thread(project_file(server, project_id, "results/moved.bin").exists)
    assert page.errors == []  # type: ignore[attr-defined]


async def test_file_made_on_disk_appears_in_the_tree_live(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    page = await page_for(browser, server, ada)
    project_id = await create_project(page, "Watch")
    await expect(page.get_by_text("No files yet")).to_be_visible()
    # Written by something other than the app (a kernel, a terminal, git).
    target = project_file(server, project_id, "notes/from-disk.txt")
    await asyncio.to_thread(target.parent.mkdir, parents=True)
    await asyncio.to_thread(target.write_text, "hello")
    await expect(page.locator('.tree-row[data-path="notes"]')).to_be_visible()
    await page.get_by_role("button", name="notes").click()
    await expect(page.locator('.tree-row[data-path="notes/from-disk.txt"]')).to_contain_text("5 B")
    await asyncio.to_thread(target.unlink)
    await expect(page.locator('.tree-row[data-path="notes/from-disk.txt"]')).to_have_count(0)


async def test_file_calls_check_paths_and_members(server: Served) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    eve = await make_user(server, "eve@example.com", "Eve")
    async with ws_connect(server, ada.key) as ws:
        made = await ws.request({"query": {"projects": {"title": "P"}}})
        pid = made["result"]["projects"]["project_id"]
        for bad in ("../x", "/etc/passwd", "a//b", "a/./b", ""):
            r = await ws.call("files.create", {"project_id": pid, "path": bad})
            assert r["error"]["code"] == "bad_path", bad
        r = await ws.call("files.create", {"project_id": pid, "path": "a.txt"})
        assert r["result"] == {"path": "a.txt"}
        r = await ws.call("files.create", {"project_id": pid, "path": "a.txt"})
        assert r["error"]["code"] == "exists"
        r = await ws.call("files.move", {"project_id": pid, "path": "a.txt", "to": "../a.txt"})
        assert r["error"]["code"] == "bad_path"
        r = await ws.call("files.delete", {"project_id": pid, "path": "nope.txt"})
        assert r["error"]["code"] == "not_found"
        r = await ws.call("files.create", {"project_id": pid, "path": "b.txt", "mode": 1})
        assert r["error"]["code"] == "bad_args"
        listing = await ws.request(
            {"query": {"files": [{"project_id": pid, "path": None, "kind": None, "size": None}]}}
        )
        assert listing["result"]["files"] == [
            {"project_id": pid, "path": "a.txt", "kind": "file", "size": 0}
        ]
        r = await ws.request({"query": {"files": {"project_id": pid, "path": "z", "kind": "file"}}})
        assert r["error"]["code"] in ("read_only", "forbidden_field")
    async with ws_connect(server, eve.key) as ws:
        for call in ("files.scan", "files.create", "files.delete"):
            r = await ws.call(
                call,
                {"project_id": pid, "path": "a.txt"}
                if call != "files.scan"
                else {"project_id": pid},
            )
            assert r["error"]["code"] == "forbidden", call
        listing = await ws.request({"query": {"files": [{"project_id": pid, "path": None}]}})
        assert listing["result"]["files"] == []


async def test_upload_limits_and_raw_files_are_sandboxed(server: Served) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    server.services.settings = server.services.settings.replace(files_max_upload_bytes=1000)
    auth = {"Authorization": f"Bearer {ada.key}"}
    async with ws_connect(server, ada.key) as ws:
        made = await ws.request({"query": {"projects": {"title": "P"}}})
        pid = made["result"]["projects"]["project_id"]
    async with server.client() as http:
        r = await http.put(f"/api/projects/{pid}/upload/big.bin", content=b"x" * 1001, headers=auth)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert not project_file(server, pid, "big.bin").exists()
        assert [p.name for p in project_file(server, pid, "").iterdir()] == []
        page = b"<script>alert(document.cookie)</script>"
        r = await http.put(f"/api/projects/{pid}/upload/page.html", content=page, headers=auth)
        assert r.status_code == 201
        r = await http.get(f"/raw/{pid}/page.html", headers=auth)
        assert r.status_code == 200 and r.content == page
        assert r.headers["content-security-policy"].startswith("sandbox;")
        assert "allow-scripts" not in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        r = await http.get(f"/api/projects/{pid}/download/page.html", headers=auth)
        assert r.headers["content-disposition"].startswith('attachment; filename="page.html"')
        assert r.headers["content-type"].startswith("text/html")
        r = await http.get(f"/api/projects/{pid}/download/..%2F..%2Fsecret", headers=auth)
        assert r.status_code in (400, 404)
        r = await http.put(f"/api/projects/{pid}/upload/a/../../x", content=b"x", headers=auth)
        assert r.status_code in (400, 404)


async def test_drop_files_on_the_tree_uploads_them(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    page = await page_for(browser, server, ada)
    project_id = await create_project(page, "Drop")
    await page.evaluate(
        """() => {
          const dt = new DataTransfer();
          dt.items.add(new File(["dropped bytes"], "dropped.txt", { type: "text/plain" }));
          const sidebar = document.querySelector(".sidebar");
          sidebar.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true }));
          sidebar.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true }));
        }"""
    )
    await expect(page.locator('.tree-row[data-path="dropped.txt"]')).to_contain_text("13 B")
    target = project_file(server, project_id, "dropped.txt")
    assert await asyncio.to_thread(target.read_text) == "dropped bytes"


async def test_new_notebook_is_a_valid_notebook_and_never_replaces_a_file(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    page = await page_for(browser, server, ada)
    project_id = await create_project(page, "Notebooks")
    await page.get_by_role("button", name="New notebook").click()
    await answer_prompt(page, "Name", "analysis", "Create")
    await expect(page.locator('.tree-row[data-path="analysis.ipynb"]')).to_be_visible()
    target = project_file(server, project_id, "analysis.ipynb")
    # The row appears when files.create makes the name; the content follows in an upload.
    for _ in range(200):
        text = await asyncio.to_thread(target.read_text)
        if text:
            break
        await asyncio.sleep(0.1)
    notebook = json.loads(text)
    assert notebook["nbformat"] == 4 and notebook["cells"] == []
    await asyncio.to_thread(target.write_text, '{"keep": "me"}')
    await page.get_by_role("button", name="New notebook").click()
    await answer_prompt(page, "Name", "analysis.ipynb", "Create")
    await expect(page.get_by_text("exists")).to_be_visible()
    assert await asyncio.to_thread(target.read_text) == '{"keep": "me"}'
