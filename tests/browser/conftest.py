"""Browser test fixtures: Debian's chromium driven by Playwright (never a downloaded
browser), the real app served by uvicorn, users signed in by their session cookie, and
screenshots of every screen in light and dark for docs/screenshots/."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.conftest import Served, User

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("COLLAB_TEST_CHROMIUM", "/usr/bin/chromium")
# A loaded machine: wait generously for conditions, never assert on time.
expect.set_options(timeout=20000)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session", autouse=True)
def built_app() -> None:
    """The app must be built (make install does it); build it here if it is not."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    if (FRONTEND / "dist" / "index.html").exists():
        return
    npm = shutil.which("npm")
    assert npm, "frontend/dist is missing and npm is not installed to build it"
    if not (FRONTEND / "node_modules").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
    subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def context_for(
    browser: Browser, served: Served, user: User | None = None, **options: Any
) -> BrowserContext:
    ctx = await browser.new_context(
        base_url=served.http, viewport={"width": 1280, "height": 800}, **options
    )
    ctx.set_default_timeout(20000)
    if user is not None:
        await ctx.add_cookies(
            [{"name": "collab_session", "value": user.cookie, "url": served.http}]
        )
    return ctx


async def page_for(browser: Browser, served: Served, user: User | None = None) -> Page:
    ctx = await context_for(browser, served, user)
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def shoot(page: Page, name: str) -> None:
    """Screenshots of the page as it is, in light and in dark."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        await page.evaluate("() => document.documentElement.dataset.theme !== undefined")
        await page.wait_for_timeout(150)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}-{scheme}.png"))
    await page.emulate_media(color_scheme="light")


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 20, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.1)
