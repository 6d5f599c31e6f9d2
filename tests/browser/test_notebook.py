"""The notebook in the browser: two people edit and run one shared notebook; execution is
the server's (outputs land in the document for everyone); Jupyter's keyboard model; outputs
rendered safely (no script from a kernel runs in the app's origin); the file on disk is the
notebook both browsers show."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nbformat
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import eventually, page_for, shoot
from tests.browser.test_editor import shared_project
from tests.browser.test_files import project_file
from tests.conftest import Served, User, make_user


def notebook(*cells: tuple[str, str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in cells:
        make = {
            "code": nbformat.v4.new_code_cell,
            "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell,
        }[kind]
        nb.cells.append(make(source))
    return nbformat.writes(nb)


async def two_people(
    server: Served, browser: Browser, files: dict[str, str]
) -> tuple[User, User, str, Page, Page]:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, files)
    return ada, grace, pid, await page_for(browser, server, ada), await page_for(browser, server, grace)


async def open_notebook(page: Page, pid: str, path: str) -> None:
    await page.goto(f"/projects/{pid}/files/{path}")
    await expect(page.locator(".nb-cells .cell").first).to_be_visible()


def cell(page: Page, n: int) -> Any:
    return page.locator(".nb-cells .cell").nth(n)


SOURCE_JS = """el => [...el.querySelectorAll('.cm-line')].map(line => {
  const copy = line.cloneNode(true);
  copy.querySelectorAll('.cm-ySelectionCaret, .cm-ySelectionInfo').forEach(x => x.remove());
  return copy.textContent.replace(/\u2060/g, '');
}).join('\\n')"""


async def shows_source(page: Page, n: int, text: str) -> None:
    """The n-th cell's editor shows `text` (collaborators' cursor labels aside)."""

    async def check() -> bool:
        return await cell(page, n).locator(".cm-content").evaluate(SOURCE_JS) == text

    await eventually(check, what=f"cell {n} to show {text!r}")


async def shut_kernel(server: Served, pid: str, path: str) -> None:
    from uuid import UUID

    kernels = server.services.extra["kernels"]
    try:
        await kernels.shutdown(UUID(pid), path)
    except Exception:  # noqa: BLE001 - no kernel ran
        pass


async def test_two_people_edit_a_cell_and_both_see_its_output(
    server: Served, browser: Browser
) -> None:
    _, _, pid, a, g = await two_people(server, browser, {"nb.ipynb": notebook(("code", ""))})
    await open_notebook(a, pid, "nb.ipynb")
    await open_notebook(g, pid, "nb.ipynb")
    await cell(a, 0).locator(".cm-content").click()
    await a.keyboard.type("print(6*7)")
    await shows_source(g, 0, "print(6*7)")
    # Grace sees Ada's cursor in the cell, with Ada's name, and Ada among the people here.
    await expect(cell(g, 0).locator(".cm-ySelectionInfo")).to_have_text("Ada Lovelace")
    await expect(g.locator(".presence .avatar")).to_have_attribute("title", "Ada Lovelace")

    await a.keyboard.press("Shift+Enter")
    for page in (a, g):
        await expect(cell(page, 0).locator(".output")).to_have_text("42", timeout=60000)
        await expect(cell(page, 0).locator(".cell-prompt")).to_have_text("[1]")
        await expect(page.get_by_test_id("kernel-status")).to_have_attribute(
            "data-status", "idle"
        )
    # Shift-Enter on the last cell adds one below, in edit mode.
    await expect(a.locator(".nb-cells .cell")).to_have_count(2)
    await expect(g.locator(".nb-cells .cell")).to_have_count(2)
    await shoot(g, "notebook")
    await shut_kernel(server, pid, "nb.ipynb")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]
