"""Accessibility on every screen: each button, link, field and other control has an
accessible name as Chromium computes it (its accessibility tree over CDP, the one screen
readers get), and a control focused from the keyboard shows a visible focus style."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import page_for
from tests.browser.test_editor import shared_project
from tests.conftest import Served, make_user

# Roles a person operates: each needs a name.
CONTROLS = {
    "button",
    "link",
    "textbox",
    "searchbox",
    "checkbox",
    "radio",
    "combobox",
    "listbox",
    "slider",
    "spinbutton",
    "switch",
    "tab",
    "menuitem",
    "menuitemcheckbox",
    "treeitem",
}


async def unnamed_controls(page: Page) -> list[str]:
    """Every control in the page's accessibility tree without a name (role and the
    element's outer HTML, for the failure message)."""
    cdp = await page.context.new_cdp_session(page)
    try:
        tree = await cdp.send("Accessibility.getFullAXTree")
        missing: list[str] = []
        for node in tree["nodes"]:
            if node.get("ignored"):
                continue
            role = (node.get("role") or {}).get("value")
            if role not in CONTROLS:
                continue
            name = str((node.get("name") or {}).get("value") or "").strip()
            if name:
                continue
            html = "?"
            if "backendDOMNodeId" in node:
                found = await cdp.send(
                    "DOM.getOuterHTML", {"backendNodeId": node["backendDOMNodeId"]}
                )
                html = found["outerHTML"][:160]
            missing.append(f"{role}: {html}")
        return missing
    finally:
        await cdp.detach()


async def check(page: Page, screen: str, seen: dict[str, int]) -> None:
    missing = await unnamed_controls(page)
    assert missing == [], f"{screen}: controls without an accessible name:\n" + "\n".join(missing)
    seen[screen] = await page.locator(
        "button:visible, a[href]:visible, input:visible, textarea:visible, select:visible"
    ).count()


async def focus_ring(page: Page) -> dict[str, Any]:
    return dict(
        await page.evaluate(
            """() => { const s = getComputedStyle(document.activeElement);
               return { tag: document.activeElement.tagName, outline: s.outlineStyle,
                        width: s.outlineWidth, shadow: s.boxShadow }; }"""
        )
    )


async def test_every_control_on_every_screen_has_a_name_and_focus_shows(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {"notes.md": "# Notes\n"})
    seen: dict[str, int] = {}

    anon = await page_for(browser, server)
    await anon.goto("/signin")
    await expect(anon.get_by_role("button", name="Sign in")).to_be_visible()
    await check(anon, "sign-in", seen)
    await anon.goto("/signup")
    await expect(anon.get_by_role("button", name="Create account")).to_be_visible()
    await check(anon, "sign-up", seen)

    a = await page_for(browser, server, ada)
    await a.goto("/projects")
    await expect(a.get_by_role("row", name=re.compile("^Essays"))).to_be_visible()
    await check(a, "projects", seen)
    await a.get_by_role("button", name="Account menu").click()
    await expect(a.get_by_role("menuitem", name="Sign out")).to_be_visible()
    await check(a, "account menu", seen)
    await a.keyboard.press("Escape")

    await a.goto(f"/projects/{pid}/files/notes.md")
    await expect(a.locator(".cm-content")).to_contain_text("# Notes")
    await check(a, "project with a file open", seen)

    await a.get_by_role("button", name="Share").click()
    dialog = a.get_by_role("dialog", name="Share Essays")
    await expect(dialog.locator(".person")).to_have_count(2)
    await check(a, "share dialog", seen)
    await dialog.get_by_role("button", name="Close").click()

    await a.get_by_test_id("history-button").click()
    await expect(a.get_by_role("region", name="History")).to_be_visible()
    await check(a, "history", seen)

    await a.goto("/account")
    await expect(a.get_by_role("heading", name="API keys")).to_be_visible()
    await check(a, "account", seen)
    # Every screen was looked at with controls on it, and the check does see a control
    # without a name (an icon-only button someone forgot to label).
    assert all(n > 0 for n in seen.values()), seen
    await a.evaluate(
        """() => { const b = document.createElement("button"); b.id = "unlabelled";
           b.innerHTML = '<svg width="10" height="10"></svg>'; document.body.append(b); }"""
    )
    assert any('id="unlabelled"' in m for m in await unnamed_controls(a))
    await a.evaluate("document.getElementById('unlabelled').remove()")

    # Focus from the keyboard is visible, and only then.
    await a.goto("/projects")
    await expect(a.get_by_role("row", name=re.compile("^Essays"))).to_be_visible()
    await a.keyboard.press("Tab")
    ring = await focus_ring(a)
    assert ring["tag"] in ("A", "BUTTON", "INPUT"), ring
    assert ring["outline"] != "none" and ring["width"] != "0px", ring
    await a.evaluate("document.activeElement.blur()")
    after = await focus_ring(a)
    assert after["tag"] == "BODY"
    assert a.errors == [] and anon.errors == []  # type: ignore[attr-defined]
