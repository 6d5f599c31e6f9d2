"""Offline: edits made with the network cut are kept in the browser (also across a reload
while still offline) and reach the server exactly once when it returns; a server whose
copy lost what this browser saw there is not merged into."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from collab.config import Settings
from tests.browser.conftest import context_for, eventually, page_for, shoot
from tests.browser.test_editor import shared_project
from tests.browser.test_files import project_file
from tests.conftest import Served, make_user

# The number of updates y-indexeddb holds for a document, once it is at least `min`.
STORED_UPDATES = """([name, min]) => new Promise((resolve) => {
  const open = indexedDB.open(name);
  open.onsuccess = () => {
    const db = open.result;
    const count = db.transaction("updates").objectStore("updates").count();
    count.onsuccess = () => { db.close(); resolve(count.result >= min ? count.result : 0); };
  };
})"""


async def stored_updates(page: Page, pid: str, path: str) -> int:
    return int(await page.evaluate(STORED_UPDATES, [f"collab:{pid}:{path}", 0]))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(sync_unload_delay_ms=100)


async def ada_and_grace(
    server: Served, browser: Browser, name: str
) -> tuple[BrowserContext, Page, Page, str]:
    """Ada's context and page and Grace's page on a shared file `name` ("base\n"), both
    showing it, the app shell held by Ada's service worker; and the project."""
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {name: "base\n"})
    url = f"/projects/{pid}/files/{name}"
    ctx = await context_for(browser, server, ada)
    a = await ctx.new_page()
    g = await page_for(browser, server, grace)
    await a.goto(url)
    await g.goto(url)
    await expect(a.locator(".cm-content")).to_contain_text("base")
    # The service worker holds the app shell once it is active.
    await a.evaluate("navigator.serviceWorker.ready.then(() => true)")
    return ctx, a, g, pid


async def test_offline_edits_survive_a_reload_and_arrive_once(
    server: Served, browser: Browser
) -> None:
    ctx, a, g, pid = await ada_and_grace(server, browser, "log.txt")

    await ctx.set_offline(True)
    await expect(a.get_by_test_id("connection")).to_have_text("Offline")
    stored = await stored_updates(a, pid, "log.txt")
    await a.locator(".cm-content").click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("written offline")
    await shoot(a, "offline")
    # y-indexeddb writes each update asynchronously: reload once all are stored.
    await a.wait_for_function(STORED_UPDATES, arg=[f"collab:{pid}:log.txt", stored + 15])
    await a.reload()
    await expect(a.locator(".cm-content")).to_contain_text("written offline")
    await expect(a.get_by_test_id("connection")).to_have_text("Offline")
    await expect(g.locator(".cm-content")).not_to_contain_text("written offline")

    await ctx.set_offline(False)
    await expect(g.locator(".cm-content")).to_contain_text("written offline")
    await expect(a.get_by_test_id("connection")).to_have_text("Connected")
    target = project_file(server, pid, "log.txt")

    async def on_disk() -> bool:
        return await asyncio.to_thread(target.read_text) == "base\nwritten offline"

    await eventually(on_disk, what="the offline edit on disk, once")
    for page in (a, g):
        text = await page.locator(".cm-content").inner_text()
        assert text.count("written offline") == 1, text


async def mismatched(server: Served, browser: Browser) -> tuple[Page, str, Any, Any]:
    """Ada's browser holds a copy with an offline edit ("mine") of a document the server
    rebuilt from its file (a restore from an older backup): the mismatch banner is up.
    Returns (Ada's page, the project, Grace, the file on disk)."""
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {"log.txt": "base\n"})
    url = f"/projects/{pid}/files/log.txt"
    ctx = await context_for(browser, server, ada)
    a = await ctx.new_page()
    await a.goto(url)
    await expect(a.locator(".cm-content")).to_contain_text("base")
    await expect(a.get_by_test_id("connection")).to_have_text("Connected")
    await a.locator(".cm-content").click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("online")
    target = project_file(server, pid, "log.txt")

    async def mirrored() -> bool:
        return await asyncio.to_thread(target.read_text) == "base\nonline"

    await eventually(mirrored, what="the online edit mirrored to the file")
    stored = await stored_updates(a, pid, "log.txt")

    # Leave the document (its room unloads on the server), go offline, come back to it
    # from the tree: it opens from this browser's copy, and takes an edit.
    await a.get_by_role("button", name="Close log.txt").click()
    await expect(a.get_by_text("Open a file")).to_be_visible()
    rooms = server.services.extra["rooms"]
    key = (UUID(pid), "log.txt")

    async def unloaded() -> bool:
        return key not in rooms.rooms

    await eventually(unloaded, what="the document's room to unload")
    await ctx.set_offline(True)
    await a.locator('.tree-row[data-path="log.txt"] a.tree-label').click()
    await expect(a.locator(".cm-content")).to_have_text("baseonline")
    await a.locator(".cm-content").click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("mine")
    await a.wait_for_function(STORED_UPDATES, arg=[f"collab:{pid}:log.txt", stored + 4])

    # The restore: a backup taken after the file was written but before the database
    # kept the edit. The server rebuilds the document from the file, under new ids; a
    # merge of the browser's copy would write "online" twice.
    await server.services.pool.execute(
        "DELETE FROM yjs_documents WHERE project_id = $1 AND path = $2", UUID(pid), "log.txt"
    )
    await ctx.set_offline(False)
    await expect(a.get_by_test_id("mismatch")).to_contain_text("no longer matches the server")
    return a, pid, grace, target


async def test_a_server_that_lost_this_copy_is_not_merged_into(
    server: Served, browser: Browser
) -> None:
    """The server's document was rebuilt (restored from a backup older than this browser's
    copy): the browser offers to save its copy aside and never merges it in, so nothing
    is duplicated (jupyterlab#14031, jupyter-collaboration#594 and #621)."""
    a, pid, grace, target = await mismatched(server, browser)
    url = f"/projects/{pid}/files/log.txt"
    banner = a.get_by_test_id("mismatch")
    await shoot(a, "mismatch")

    g = await page_for(browser, server, grace)
    await g.goto(url)
    await expect(g.locator(".cm-content")).to_have_text("baseonline")
    await banner.get_by_role("button", name="Save my copy aside").click()
    aside = project_file(server, pid, "log (my copy).txt")

    async def saved_aside() -> bool:
        return await asyncio.to_thread(aside.exists)

    await eventually(saved_aside, what="the copy saved aside")
    assert await asyncio.to_thread(aside.read_text) == "base\nonlinemine"
    # After the reload the browser holds the server's copy, once (Grace's cursor label
    # may sit in the text, so the check is on what is and is not contained).
    await expect(a.locator(".cm-content")).to_contain_text("baseonline")
    await expect(a.locator(".cm-content")).not_to_contain_text("onlineonline")
    await expect(a.locator(".cm-content")).not_to_contain_text("mine")
    await expect(a.get_by_test_id("mismatch")).to_have_count(0)
    await a.locator(".cm-content").click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("!")
    await expect(g.locator(".cm-content")).to_contain_text("baseonline!")
    await expect(g.locator(".cm-content")).not_to_contain_text("onlineonline")
    assert await asyncio.to_thread(target.read_text) != "base\nonlineonlinemine"


async def test_sign_out_removes_the_documents_kept_for_offline(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {"diary.txt": "private\n"})
    a = await page_for(browser, server, ada)
    await a.goto(f"/projects/{pid}/files/diary.txt")
    await expect(a.locator(".cm-content")).to_contain_text("private")
    names = "() => indexedDB.databases().then((d) => d.map((x) => x.name))"
    assert f"collab:{pid}:diary.txt" in await a.evaluate(names)
    await a.get_by_role("button", name="Account menu").click()
    await a.get_by_role("menuitem", name="Sign out").click()
    await expect(a.get_by_role("heading", name="Sign in")).to_be_visible()

    async def gone() -> bool:
        return not any(n.startswith("collab:") for n in await a.evaluate(names))

    await eventually(gone, what="the offline copies to be deleted")


async def test_use_the_servers_copy_drops_the_local_one(server: Served, browser: Browser) -> None:
    a, _, _, target = await mismatched(server, browser)
    await a.get_by_test_id("mismatch").get_by_role("button", name="Use the server's copy").click()
    # The page reloads on the server's copy alone: the offline edit is gone for good.
    await expect(a.get_by_test_id("mismatch")).to_have_count(0)
    await expect(a.locator(".cm-content")).to_have_text("baseonline")
    await expect(a.get_by_test_id("connection")).to_have_text("Connected")
    await a.locator(".cm-content").click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("!")

    async def on_disk() -> bool:
        return await asyncio.to_thread(target.read_text) == "base\nonline!"

    await eventually(on_disk, what="the file to hold the server's copy plus the new edit")
    await a.reload()
    await expect(a.locator(".cm-content")).to_have_text("baseonline!")
    await expect(a.get_by_test_id("mismatch")).to_have_count(0)


async def test_save_my_copy_aside_never_overwrites_an_earlier_copy(
    server: Served, browser: Browser
) -> None:
    a, pid, _, _ = await mismatched(server, browser)
    earlier = project_file(server, pid, "log (my copy).txt")
    await asyncio.to_thread(earlier.write_text, "saved aside before\n")
    await expect(a.locator('.tree-row[data-path="log (my copy).txt"]')).to_be_visible()
    await a.get_by_test_id("mismatch").get_by_role("button", name="Save my copy aside").click()
    second = project_file(server, pid, "log (my copy 2).txt")

    async def saved() -> bool:
        return await asyncio.to_thread(second.exists)

    await eventually(saved, what="the copy saved under a new name")
    assert await asyncio.to_thread(second.read_text) == "base\nonlinemine"
    assert await asyncio.to_thread(earlier.read_text) == "saved aside before\n"


async def test_the_servers_updates_are_kept_merged_and_whole(
    server: Served, browser: Browser
) -> None:
    """A collaborator's edits reach this browser as the server's updates (one per key
    here): its copy stores them merged, about once a second, instead of one IndexedDB
    transaction each (a cell printing at full speed sends twenty a second); and every
    one of them is in the copy, the last one too when the network goes before its second
    is up: a reload offline shows them all."""
    ctx, a, g, pid = await ada_and_grace(server, browser, "notes.txt")
    await a.wait_for_timeout(1500)
    before = await stored_updates(a, pid, "notes.txt")

    await g.locator(".cm-content").click()
    await g.keyboard.press("Control+End")
    await g.keyboard.type("x" * 60, delay=25)
    await expect(a.locator(".cm-content")).to_contain_text("x" * 60)
    await a.wait_for_timeout(1500)
    stored = await stored_updates(a, pid, "notes.txt") - before
    assert 1 <= stored <= 6, f"{stored} IndexedDB entries for 60 updates from the server"

    # Two more: the first stored at once, the second waiting for its second when the
    # network goes, which stores it.
    before = await stored_updates(a, pid, "notes.txt")
    await g.keyboard.type("yz", delay=100)
    await expect(a.locator(".cm-content")).to_contain_text("x" * 60 + "yz")
    await ctx.set_offline(True)
    await expect(a.get_by_test_id("connection")).to_have_text("Offline")
    await a.wait_for_function(STORED_UPDATES, arg=[f"collab:{pid}:notes.txt", before + 2])
    await a.reload()
    await expect(a.get_by_test_id("connection")).to_have_text("Offline")
    await expect(a.locator(".cm-content")).to_contain_text("x" * 60 + "yz")
