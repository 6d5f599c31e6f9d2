"""The shared terminal in the browser: what one collaborator types, every viewer sees,
and files it makes appear in the tree live."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from collab.config import Settings
from tests.browser.conftest import page_for, shoot
from tests.browser.test_editor import shared_project
from tests.conftest import Served, make_user


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # dash reads no rc file: the machine's ~/.bashrc (pyenv rehash locks and all) must not
    # decide whether the test's shell answers (as in tests/terminals).
    return settings.replace(terminal_shell="/bin/sh")


async def test_echo_in_one_browser_shows_in_the_other(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {})
    url = f"/projects/{pid}/files/shell.term"
    a = await page_for(browser, server, ada)
    g = await page_for(browser, server, grace)
    await a.goto(url)
    await expect(a.get_by_test_id("terminal-status")).to_contain_text("Shared terminal")
    await g.goto(url)
    await expect(g.get_by_test_id("terminal-status")).to_contain_text("Shared terminal")

    # The shell's prompt first: input typed before the shell reads its terminal may be
    # discarded by the shell as it starts.
    await expect(a.locator(".xterm-rows")).to_have_text(re.compile(r"\S"))
    await a.locator(".xterm").click()
    await a.keyboard.type("echo hello from $((6*7))\n")
    await expect(g.locator(".xterm-rows")).to_contain_text("hello from 42")
    await expect(a.locator(".xterm-rows")).to_contain_text("hello from 42")

    # A file the shell makes shows up in both trees without a reload.
    await g.locator(".xterm").click()
    await g.keyboard.type("printf 'abc' > made-by-shell.txt\n")
    for page in (a, g):
        await expect(page.locator('.tree-row[data-path="made-by-shell.txt"]')).to_contain_text(
            "3 B"
        )
    await shoot(a, "terminal")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]
