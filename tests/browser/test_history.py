"""History in the browser: a slider over the versions, the text as of one, a diff against
now, and restore, which every viewer receives like an edit."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect

from collab.config import Settings
from tests.browser.conftest import eventually, page_for, shoot
from tests.browser.test_editor import shared_project
from tests.conftest import Served, make_user, ws_connect


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # One version per second of edits, so a test makes two versions quickly.
    return settings.replace(sync_history_seconds=1)


async def test_restore_an_older_version_reaches_both_browsers(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {"essay.md": "First draft.\n"})
    url = f"/projects/{pid}/files/essay.md"
    a = await page_for(browser, server, ada)
    g = await page_for(browser, server, grace)
    await a.goto(url)
    await g.goto(url)
    await expect(a.locator(".cm-content")).to_contain_text("First draft.")
    await expect(g.locator(".cm-content")).to_contain_text("First draft.")

    async def versions() -> list[Any]:
        async with ws_connect(server, ada.key) as ws:
            r = await ws.call("doc.history", {"project_id": pid, "path": "essay.md"})
            return list(r["result"]["versions"])

    async def has_versions(n: int) -> bool:
        return len(await versions()) >= n

    await eventually(lambda: has_versions(1), what="the first version")
    first = len(await versions())
    await a.locator(".cm-content").click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("A second paragraph that we regret.")
    await expect(g.locator(".cm-content")).to_contain_text("that we regret")
    await eventually(lambda: has_versions(first + 1), what="a second version")

    await g.get_by_test_id("history-button").click()
    slider = g.get_by_test_id("history-slider")
    content = g.get_by_test_id("history-content")
    await expect(content).to_contain_text("that we regret")
    await slider.focus()
    await g.keyboard.press("Home")
    await expect(content).to_have_text("First draft.\n")
    await g.get_by_label("Diff against now").check()
    await expect(g.locator(".diff-add")).to_contain_text("that we regret")
    await shoot(g, "history")
    await g.get_by_test_id("history-restore").click()

    for page in (a, g):
        await expect(page.locator(".cm-content")).not_to_contain_text("that we regret")
        await expect(page.locator(".cm-content")).to_contain_text("First draft.")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]


async def test_diff_shows_only_what_changed_around_a_final_newline(
    server: Served, browser: Browser
) -> None:
    """A document that ends with a newline gains a last line without one: the diff adds
    that line and removes nothing (a final newline ends a line; it does not start an
    empty one), and notes the missing newline."""
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {"list.md": "one\ntwo\n"})
    a = await page_for(browser, server, ada)
    await a.goto(f"/projects/{pid}/files/list.md")
    await expect(a.locator(".cm-content")).to_contain_text("two")

    async def versions() -> int:
        async with ws_connect(server, ada.key) as ws:
            r = await ws.call("doc.history", {"project_id": pid, "path": "list.md"})
            return len(r["result"]["versions"])

    async def has_one() -> bool:
        return await versions() >= 1

    await eventually(has_one, what="the first version")
    first = await versions()
    await a.locator(".cm-content").click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("three")

    async def has_two() -> bool:
        return await versions() > first

    await eventually(has_two, what="a second version")
    await a.get_by_test_id("history-button").click()
    await a.get_by_test_id("history-slider").focus()
    await a.keyboard.press("Home")
    await expect(a.get_by_test_id("history-content")).to_have_text("one\ntwo\n")
    await a.get_by_label("Diff against now").check()
    await expect(a.locator(".diff-add")).to_have_text(["+ three\n"])
    await expect(a.locator(".diff-del")).to_have_count(0)
    await expect(a.locator(".diff-same")).to_have_text(["  one\n", "  two\n"])
    await expect(a.locator(".diff-note")).to_have_text("(no newline at the end now)\n")
