"""The text editor: typing in one browser shows in another with the typist's cursor and
name; the file on disk follows; markdown preview; deep links survive a reload."""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, expect

from tests.browser.conftest import eventually, page_for, shoot
from tests.browser.test_files import project_file
from tests.browser.test_projects import create_project
from tests.conftest import Served, make_user, ws_connect


async def shared_project(
    server: Served, owner_key: str, member_id: str, files: dict[str, str]
) -> str:
    async with ws_connect(server, owner_key) as ws:
        made = await ws.request({"query": {"projects": {"title": "Essays"}}})
        pid = made["result"]["projects"]["project_id"]
        added = await ws.request(
            {"query": {"project_users": {"project_id": pid, "account_id": member_id}}}
        )
        assert "result" in added, added
    for path, text in files.items():
        target = project_file(server, pid, path)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(target.write_text, text)
    return pid


async def test_typing_shows_in_the_other_browser_with_cursor_and_name(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(
        server, ada.key, grace.account_id, {"notes.py": "def f(x):\n    return x\n"}
    )
    url = f"/projects/{pid}/files/notes.py"
    a = await page_for(browser, server, ada)
    g = await page_for(browser, server, grace)
    await a.goto(url)
    await g.goto(url)
    a_editor = a.locator(".cm-content")
    g_editor = g.locator(".cm-content")
    await expect(a_editor).to_contain_text("return x")
    await expect(g_editor).to_contain_text("return x")

    await a_editor.click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("print(f(42))  # from Ada")
    await expect(g_editor).to_contain_text("print(f(42))  # from Ada")
    # Grace sees where Ada is, with Ada's name (stamped by the server).
    await expect(g.locator(".cm-ySelectionCaret")).to_have_count(1)
    await expect(g.locator(".cm-ySelectionInfo")).to_have_text("Ada Lovelace")
    await expect(g.locator(".presence .avatar")).to_have_attribute("title", "Ada Lovelace")

    await g_editor.click()
    await g.keyboard.press("Control+Home")
    await g.keyboard.type("# Grace was here\n")
    await expect(a_editor).to_contain_text("# Grace was here")
    expected = "# Grace was here\ndef f(x):\n    return x\nprint(f(42))  # from Ada"
    target = project_file(server, pid, "notes.py")

    async def on_disk() -> bool:
        return await asyncio.to_thread(target.read_text) == expected

    await eventually(on_disk, what="the file on disk to equal the shared text")
    await shoot(g, "editor")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]


async def test_markdown_preview_and_deep_link_reload(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    page = await page_for(browser, server, ada)
    pid = await create_project(page, "Docs")
    readme = "# Analytical engine\n\nNotes on *Bernoulli* numbers.\n\n```python\nprint(1)\n```\n"
    await asyncio.to_thread(project_file(server, pid, "docs/README.md").parent.mkdir)
    await asyncio.to_thread(project_file(server, pid, "docs/README.md").write_text, readme)
    await page.goto(f"/projects/{pid}/files/docs/README.md")
    preview = page.get_by_role("article", name="Preview")
    await expect(preview.get_by_role("heading", name="Analytical engine")).to_be_visible()
    await page.locator(".cm-content").click()
    await page.keyboard.press("Control+End")
    await page.keyboard.type("\n## Added live\n")
    await expect(preview.get_by_role("heading", name="Added live")).to_be_visible()
    await shoot(page, "markdown")
    await page.reload()
    await expect(page.locator(".cm-content")).to_contain_text("## Added live")
    await expect(page.get_by_role("tab", name="README.md")).to_have_attribute(
        "aria-selected", "true"
    )
    await expect(page.locator('.tree-row[data-path="docs/README.md"]')).to_have_class(
        "tree-row active"
    )
