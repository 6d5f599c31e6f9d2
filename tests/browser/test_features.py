"""Browser features, one test each, asserting their effect: restart, removing a
collaborator, new terminal, highlighting per file type, line numbers, search, terminal
resize and scrollback, the reconnecting state, the theme, and switching tabs."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from collab.config import Settings
from tests.browser.conftest import context_for, eventually, page_for, shoot
from tests.browser.test_editor import shared_project
from tests.conftest import Served, make_user


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # dash reads no rc file, so the shell's prompt comes at once (as in test_terminal).
    return settings.replace(terminal_shell="/bin/sh")


async def two(server: Served, files: dict[str, str]) -> tuple[Any, Any, str]:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, files)
    return ada, grace, pid


# Every state the header's badge shows, in order, as the page renders them.
RECORD_STATES = """() => {
  window.seenStates = [];
  const note = () => {
    const el = document.querySelector('.project-head [data-testid="project-state"]');
    const text = el ? el.textContent : null;
    if (text && window.seenStates[window.seenStates.length - 1] !== text) window.seenStates.push(text);
  };
  note();
  new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


async def test_restart_goes_through_stopping_and_starting_in_both_browsers(
    server: Served, browser: Browser
) -> None:
    ada, grace, pid = await two(server, {})
    a = await page_for(browser, server, ada)
    g = await page_for(browser, server, grace)
    for page in (a, g):
        await page.goto(f"/projects/{pid}")
        await expect(page.locator(".project-head").get_by_test_id("project-state")).to_have_text(
            "Stopped"
        )
    await a.get_by_role("button", name="Start Essays", exact=True).click()
    for page in (a, g):
        await expect(page.locator(".project-head").get_by_test_id("project-state")).to_have_text(
            "Running"
        )
        await page.evaluate(RECORD_STATES)
    await g.get_by_role("button", name="Restart Essays", exact=True).click()
    for page in (a, g):

        async def came_back(page: Page = page) -> bool:
            states = await page.evaluate("window.seenStates")
            return "Starting" in states and states[-1] == "Running"

        # Running again only after it went down and came back up.
        await eventually(came_back, timeout=40, what="the restart to come back to running")
        states = await page.evaluate("window.seenStates")
        assert states[0] == "Running" and states[-1] == "Running", states
        assert "Stopping" in states and states.index("Stopping") < states.index("Starting"), states
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]


async def test_removing_a_collaborator_closes_their_document(
    server: Served, browser: Browser
) -> None:
    ada, grace, pid = await two(server, {"notes.md": "# Shared\n"})
    g = await page_for(browser, server, grace)
    await g.goto(f"/projects/{pid}/files/notes.md")
    await expect(g.locator(".cm-content")).to_contain_text("# Shared")
    a = await page_for(browser, server, ada)
    await a.goto(f"/projects/{pid}")
    await a.get_by_role("button", name="Share").click()
    dialog = a.get_by_role("dialog", name="Share Essays")
    row = dialog.locator(f'.person[data-account="{grace.account_id}"]')
    await expect(row).to_contain_text("Grace Hopper")
    await row.get_by_role("button", name="Remove Grace Hopper").click()
    await expect(row).to_have_count(0)
    await expect(dialog.locator(".person")).to_have_count(1)
    # Grace's editor is gone, and she is told why.
    await expect(g.get_by_test_id("refused")).to_contain_text("You do not have access")
    await expect(g.locator(".cm-content")).to_have_count(0)
    # A closed document is no connection trouble.
    await expect(g.get_by_test_id("connection")).to_have_text("Connected")
    await shoot(g, "access-lost")


async def test_new_terminal_button_opens_a_shell(server: Served, browser: Browser) -> None:
    ada, _, pid = await two(server, {})
    a = await page_for(browser, server, ada)
    await a.goto(f"/projects/{pid}")
    files = a.get_by_role("complementary", name="Project files")
    await files.get_by_role("button", name="New terminal").click()
    dialog = a.get_by_role("dialog")
    await expect(dialog.get_by_label("Name")).to_have_value("terminal.term")
    await dialog.get_by_role("button", name="Create").click()
    await expect(a).to_have_url(re.compile(r"/files/terminal\.term$"))
    await expect(a.get_by_role("tab", name="terminal.term")).to_have_attribute(
        "aria-selected", "true"
    )
    await expect(a.get_by_test_id("terminal-status")).to_contain_text("Shared terminal")
    # A prompt: the shell is there and answers.
    await expect(a.locator(".xterm-rows")).to_have_text(re.compile(r"\$"))
    await a.locator(".xterm").click()
    await a.keyboard.type("echo made-$((2+3))\n")
    await expect(a.locator(".xterm-rows")).to_contain_text("made-5")


# The text of every span in the editor drawn in another colour than plain text.
COLOURED = """() => {
  const base = getComputedStyle(document.querySelector(".cm-content")).color;
  return [...document.querySelectorAll(".cm-line span")]
    .filter((s) => getComputedStyle(s).color !== base)
    .map((s) => s.textContent);
}"""


@pytest.mark.parametrize(
    ("name", "text", "token"),
    [
        ("prog.py", "def f(x):\n    return 'hi'\n", "def"),
        ("data.json", '{"key": true, "n": 1}\n', '"key"'),
        ("conf.yaml", "key: value\nlist:\n  - 1\n", "key"),
        ("run.sh", 'if true; then\n  echo "hi"\nfi\n', "if"),
    ],
)
async def test_syntax_highlighting_by_file_type(
    server: Served, browser: Browser, name: str, text: str, token: str
) -> None:
    ada, _, pid = await two(server, {name: text})
    a = await page_for(browser, server, ada)
    await a.goto(f"/projects/{pid}/files/{name}")
    await expect(a.locator(".cm-content")).to_contain_text(text.splitlines()[0])

    async def coloured() -> bool:
        return token in await a.evaluate(COLOURED)

    await eventually(coloured, what=f"{token} highlighted in {name}")


async def test_line_numbers_and_search(server: Served, browser: Browser) -> None:
    text = "a needle\nno match here\nneedle and needle\n"
    ada, _, pid = await two(server, {"hay.txt": text})
    a = await page_for(browser, server, ada)
    await a.goto(f"/projects/{pid}/files/hay.txt")
    await expect(a.locator(".cm-content")).to_contain_text("needle and needle")
    numbers = a.locator(".cm-lineNumbers .cm-gutterElement:visible")
    await expect(numbers.filter(has_text=re.compile(r"^[1-4]$"))).to_have_text(["1", "2", "3", "4"])
    await a.locator(".cm-content").click()
    await a.keyboard.press("Control+f")
    panel = a.locator(".cm-search")
    await expect(panel).to_be_visible()
    field = panel.locator("input[name=search]")
    await expect(field).to_be_focused()
    await a.keyboard.type("needle")
    await expect(a.locator(".cm-searchMatch")).to_have_count(3)
    await a.keyboard.press("Enter")
    await expect(a.locator(".cm-searchMatch-selected")).to_have_count(1)
    await shoot(a, "search")


SIZE = re.compile(r"(?m)^(\d+) (\d+)\s*$")


async def stty_sizes(page: Page) -> list[tuple[int, int]]:
    text = await page.locator(".xterm-rows").inner_text()
    return [(int(r), int(c)) for r, c in SIZE.findall(text.replace("\xa0", " "))]


async def test_terminal_follows_the_window_size_and_late_joiners_get_the_scrollback(
    server: Served, browser: Browser
) -> None:
    ada, grace, pid = await two(server, {})
    a = await page_for(browser, server, ada)
    await a.goto(f"/projects/{pid}/files/shell.term")
    await expect(a.get_by_test_id("terminal-status")).to_contain_text("Shared terminal")
    await expect(a.locator(".xterm-rows")).to_have_text(re.compile(r"\$"))
    await a.locator(".xterm").click()
    await a.keyboard.type("echo early-$((20+22)); stty size\n")
    await expect(a.locator(".xterm-rows")).to_contain_text("early-42")

    async def sized() -> bool:
        return len(await stty_sizes(a)) == 1

    await eventually(sized, what="stty's answer")
    (rows1, cols1) = (await stty_sizes(a))[0]
    await a.set_viewport_size({"width": 900, "height": 560})
    # The pty takes the new size (the fit runs after the resize settles): ask again until
    # the shell reports a smaller one.
    await a.keyboard.type("clear\n")

    async def smaller() -> bool:
        await a.keyboard.type("stty size\n")
        await asyncio.sleep(0.5)
        got = await stty_sizes(a)
        return bool(got) and got[-1][0] < rows1 and got[-1][1] < cols1

    await eventually(smaller, timeout=40, what="the shell to see a smaller terminal")

    # Grace opens the terminal later: she gets what was printed before she came.
    await a.keyboard.type("echo late-$((50+8))\n")
    await expect(a.locator(".xterm-rows")).to_contain_text("late-58")
    g = await page_for(browser, server, grace)
    await g.goto(f"/projects/{pid}/files/shell.term")
    await expect(g.locator(".xterm-rows")).to_contain_text("late-58")


class Proxy:
    """A TCP relay between the browser and the server that can drop every connection and
    refuse new ones while the browser itself stays online."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await self.server.wait_closed()

    async def stop(self) -> None:
        if self.server is not None:
            await self.cut()


async def test_dropped_connections_show_reconnecting_and_edits_arrive_after(
    server: Served, browser: Browser
) -> None:
    ada, grace, pid = await two(server, {"live.md": "start\n"})
    proxy = Proxy(server.port)
    await proxy.start()
    try:
        via = Served(server.app, "127.0.0.1", proxy.port)
        a = await (await context_for(browser, via, ada)).new_page()
        await a.goto(f"/projects/{pid}/files/live.md")
        await expect(a.locator(".cm-content")).to_contain_text("start")
        status = a.get_by_test_id("connection")
        await expect(status).to_have_text("Connected")
        await proxy.cut()
        await expect(status).to_have_text("Reconnecting…")
        assert await a.evaluate("navigator.onLine") is True
        await shoot(a, "reconnecting")
        await a.locator(".cm-content").click()
        await a.keyboard.press("Control+End")
        await a.keyboard.type("typed while cut")
        await proxy.start()  # the same port again
        await expect(status).to_have_text("Connected", timeout=40000)
        g = await page_for(browser, server, grace)
        await g.goto(f"/projects/{pid}/files/live.md")
        await expect(g.locator(".cm-content")).to_contain_text("typed while cut")
    finally:
        await proxy.stop()


async def test_theme_toggle_flips_and_survives_a_reload(server: Served, browser: Browser) -> None:
    ada, _, _ = await two(server, {})
    a = await page_for(browser, server, ada)
    await a.goto("/projects")
    root = a.locator("html")
    before = await a.evaluate(
        "() => document.documentElement.dataset.theme || "
        "(matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light')"
    )
    after = "light" if before == "dark" else "dark"
    await a.get_by_role("button", name="Toggle dark mode").click()
    await expect(root).to_have_attribute("data-theme", after)
    background = await a.evaluate("getComputedStyle(document.body).backgroundColor")
    await a.reload()
    await expect(a.get_by_role("button", name="Toggle dark mode")).to_be_visible()
    await expect(root).to_have_attribute("data-theme", after)
    assert await a.evaluate("getComputedStyle(document.body).backgroundColor") == background
    await a.get_by_role("button", name="Toggle dark mode").click()
    await expect(root).to_have_attribute("data-theme", before)


async def test_switching_tabs_keeps_each_documents_state(server: Served, browser: Browser) -> None:
    ada, _, pid = await two(server, {"one.md": "first file\n", "two.py": "x = 2\n"})
    a = await page_for(browser, server, ada)
    await a.goto(f"/projects/{pid}/files/one.md")
    editor = a.locator(".cm-content")
    await expect(editor).to_contain_text("first file")
    await editor.click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("edited one")
    await a.locator('.tree-row[data-path="two.py"] a.tree-label').click()
    await expect(editor).to_contain_text("x = 2")
    await editor.click()
    await a.keyboard.press("Control+End")
    await a.keyboard.type("y = 3")
    tabs = a.get_by_role("tablist", name="Open documents")
    await tabs.get_by_role("tab", name="one.md").click()
    await expect(editor).to_contain_text("first fileedited one")
    await expect(editor).not_to_contain_text("y = 3")
    await expect(a).to_have_url(re.compile(r"/files/one\.md$"))
    await tabs.get_by_role("tab", name="two.py").click()
    await expect(editor).to_contain_text("x = 2y = 3")
    await expect(editor).not_to_contain_text("edited one")
    await expect(tabs.get_by_role("tab")).to_have_count(2)
    await expect(tabs.get_by_role("tab", name="two.py")).to_have_attribute("aria-selected", "true")
