"""A document open in the browser follows its file when someone else renames it, and its
tab closes with a message when someone deletes it; the old name never comes back."""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, expect

from tests.browser.conftest import page_for
from tests.browser.test_editor import shared_project
from tests.browser.test_files import project_file
from tests.conftest import Served, make_user, ws_connect


async def test_open_document_follows_a_rename_and_closes_on_delete(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {"notes.md": "# Notes\n"})
    page = await page_for(browser, server, grace)
    await page.goto(f"/projects/{pid}/files/notes.md")
    editor = page.locator(".cm-content")
    await expect(editor).to_contain_text("# Notes")

    async with ws_connect(server, ada.key) as ws:
        moved = await ws.call(
            "files.move", {"project_id": pid, "path": "notes.md", "to": "archive/old.md"}
        )
        assert moved["result"] == {"path": "archive/old.md"}
    await expect(page).to_have_url(f"{server.http}/projects/{pid}/files/archive/old.md")
    moved_note = page.locator(".toast", has_text="notes.md was moved to archive/old.md")
    await expect(moved_note).to_have_count(1)
    await expect(page.locator('.tab a[title="archive/old.md"]')).to_have_count(1)
    await expect(page.locator('.tab a[title="notes.md"]')).to_have_count(0)
    # The reopened editor is the same document: typing reaches the new file only.
    await editor.click()
    await page.keyboard.press("Control+End")
    await page.keyboard.type("moved and edited")
    new = project_file(server, pid, "archive/old.md")
    old = project_file(server, pid, "notes.md")
    for _ in range(200):
        if "moved and edited" in await asyncio.to_thread(new.read_text):
            break
        await asyncio.sleep(0.1)
    assert "moved and edited" in await asyncio.to_thread(new.read_text)

    async with ws_connect(server, ada.key) as ws:
        gone = await ws.call("files.delete", {"project_id": pid, "path": "archive"})
        assert gone["result"] == {"deleted": "archive"}
    await expect(page.locator(".toast", has_text="archive/old.md was deleted")).to_have_count(1)
    await expect(page.locator('.tab a[title="archive/old.md"]')).to_have_count(0)
    await asyncio.sleep(2.5)  # past the mirror debounce and a watcher pass
    assert not await asyncio.to_thread(new.exists)
    assert not await asyncio.to_thread(old.exists)
    assert page.errors == []  # type: ignore[attr-defined]
