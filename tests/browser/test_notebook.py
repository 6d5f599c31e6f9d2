"""The notebook in the browser: two people edit and run one shared notebook; execution is
the server's (outputs land in the document for everyone); Jupyter's keyboard model; outputs
rendered safely (no script from a kernel runs in the app's origin); the file on disk is the
notebook both browsers show."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from uuid import UUID

import nbformat
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import eventually, page_for, shoot
from tests.browser.test_editor import shared_project
from tests.browser.test_files import project_file
from tests.conftest import Served, User, make_user, ws_connect
from tests.sync.yclient import connect


def notebook(*cells: tuple[str, str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
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
    return (
        ada,
        grace,
        pid,
        await page_for(browser, server, ada),
        await page_for(browser, server, grace),
    )


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
    except Exception:
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
        await expect(page.get_by_test_id("kernel-status")).to_have_attribute("data-status", "idle")
    # Shift-Enter on the last cell adds one below, in edit mode.
    await expect(a.locator(".nb-cells .cell")).to_have_count(2)
    await expect(g.locator(".nb-cells .cell")).to_have_count(2)
    await shoot(g, "notebook")

    # The file on disk is a valid notebook holding what both browsers show.
    target = project_file(server, pid, "nb.ipynb")

    async def saved() -> Any:
        try:
            nb = nbformat.reads(await asyncio.to_thread(target.read_text), as_version=4)
        except (OSError, ValueError):
            return None
        cells = nb.cells
        if len(cells) == 2 and cells[0].get("outputs") and cells[0].execution_count == 1:
            return nb
        return None

    await eventually(saved, timeout=30, what="the executed notebook on disk")
    nb = await saved()
    nbformat.validate(nb)
    assert [c.source for c in nb.cells] == ["print(6*7)", ""]
    assert nb.cells[0].outputs[0]["text"] == "42\n"
    for page in (a, g):
        await shows_source(page, 0, nb.cells[0].source)
        await expect(cell(page, 0).locator(".output")).to_have_text(
            nb.cells[0].outputs[0]["text"].strip()
        )
    await shut_kernel(server, pid, "nb.ipynb")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]


async def doc_cells(server: Served, pid: str, path: str, key: str) -> list[tuple[str, str]]:
    """The notebook as the server's document holds it: (type, source) per cell."""
    from uuid import UUID

    from jupyter_ydoc import YNotebook

    async with connect(server, UUID(pid), path, key) as client:
        await asyncio.wait_for(client.synced.wait(), 15)
        cells = YNotebook(client.doc).get()["cells"]
    return [(c["cell_type"], c["source"]) for c in cells]


async def document_is(
    server: Served, pid: str, path: str, key: str, expected: list[tuple[str, str]]
) -> None:
    last: list[Any] = []

    async def check() -> bool:
        last[:] = await doc_cells(server, pid, path, key)
        return last == expected

    try:
        await eventually(check, timeout=20, what=f"the document to be {expected}")
    except AssertionError as err:
        raise AssertionError(f"{err}; it is {last}") from None


async def test_run_all_stops_at_an_error_interrupt_and_input_from_another_person(
    server: Served, browser: Browser
) -> None:
    nb = notebook(
        ("code", "x = 1"),
        ("code", "print('two')"),
        ("code", "def fail():\n    return 1 / 0\nfail()"),
        ("code", "print('four')"),
        ("code", "print('five')"),
        ("code", "while True:\n    pass"),
        ("code", "name = input('Name? ')\nprint('hello', name)"),
        ("code", "import getpass\nsecret = getpass.getpass('Secret? ')\nprint(len(secret))"),
    )
    _, _, pid, a, g = await two_people(server, browser, {"run.ipynb": nb})
    await open_notebook(a, pid, "run.ipynb")
    await open_notebook(g, pid, "run.ipynb")
    await a.locator(".menu summary", has_text="Run all").click()
    await a.get_by_role("menuitem", name="Run all", exact=True).click()
    await expect(cell(a, 2).locator(".out-error")).to_contain_text(
        "ZeroDivisionError", timeout=60000
    )
    for page in (a, g):
        await expect(cell(page, 1).locator(".output")).to_have_text("two")
        await expect(cell(page, 3)).to_have_attribute("data-state", "not_run")
        await expect(cell(page, 4)).to_have_attribute("data-state", "not_run")
        await expect(cell(page, 3).locator(".cell-status")).to_have_text("not run")
        await expect(cell(page, 3).locator(".output")).to_have_count(0)
    # The traceback keeps the kernel's colours.
    await expect(cell(g, 2).locator(".out-error span[style*='color']").first).to_be_visible()
    await cell(g, 2).scroll_into_view_if_needed()
    await shoot(g, "notebook-traceback")

    # An endless loop, stopped with I, I.
    await cell(a, 5).locator(".cell-gutter").click()
    await a.keyboard.press("Control+Enter")
    await expect(cell(g, 5)).to_have_attribute("data-state", "running")
    await expect(cell(g, 5).locator(".cell-status")).to_contain_text("running")
    await a.keyboard.press("i")
    await a.keyboard.press("i")
    await expect(cell(g, 5).locator(".out-error")).to_contain_text("KeyboardInterrupt")
    await expect(cell(a, 5)).to_have_attribute("data-state", "idle")

    # Ada runs input(); Grace answers it.
    await cell(a, 6).locator(".cell-gutter").click()
    await a.keyboard.press("Control+Enter")
    field = g.get_by_role("textbox", name="Name?")
    await expect(field).to_have_attribute("type", "text")
    await field.fill("Grace")
    await field.press("Enter")
    for page in (a, g):
        await expect(cell(page, 6).locator(".output")).to_contain_text("hello Grace")
        await expect(cell(page, 6).locator(".cell-stdin input")).to_have_count(0)

    # A password prompt is masked, and its answer is never shown.
    await cell(a, 7).locator(".cell-gutter").click()
    await a.keyboard.press("Control+Enter")
    secret = g.get_by_label("Secret?")
    await expect(secret).to_have_attribute("type", "password")
    await secret.fill("hunter22")
    await secret.press("Enter")
    await expect(cell(a, 7).locator(".output")).to_contain_text("8")
    await expect(a.locator(".nb-cells")).not_to_contain_text("hunter22")
    await shut_kernel(server, pid, "run.ipynb")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]


async def test_everyone_sees_the_queue_in_the_order_runs_were_asked_for(
    server: Served, browser: Browser
) -> None:
    """Ada asks for the last cell, then the first: Grace sees the last one "queued · 1st"
    and the first "queued · 2nd" (the kernel's order, not the page's), each moving up as
    the runs ahead of it start."""
    nb = notebook(
        ("code", "print('one')"),
        ("code", "import time\ntime.sleep(3)"),
        ("code", "print('three')"),
    )
    _, _, pid, a, g = await two_people(server, browser, {"queue.ipynb": nb})
    await open_notebook(a, pid, "queue.ipynb")
    await open_notebook(g, pid, "queue.ipynb")
    for n in (1, 2, 0):
        await cell(a, n).locator(".cell-gutter").click()
        await a.keyboard.press("Control+Enter")
    await expect(cell(g, 1)).to_have_attribute("data-state", "running")
    await expect(cell(g, 2).locator(".cell-status")).to_have_text("queued · 1st")
    await expect(cell(g, 0).locator(".cell-status")).to_have_text("queued · 2nd")
    await expect(cell(a, 0).locator(".cell-status")).to_have_text("queued · 2nd")
    for page in (a, g):
        await expect(cell(page, 0).locator(".output")).to_have_text("one", timeout=30000)
        await expect(cell(page, 2).locator(".output")).to_have_text("three")
        await expect(cell(page, 0)).to_have_attribute("data-state", "idle")
    counts = [await cell(g, n).locator(".cell-prompt").inner_text() for n in range(3)]
    assert counts == ["[3]", "[1]", "[2]"], counts
    await shut_kernel(server, pid, "queue.ipynb")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]


async def test_command_mode_shortcuts_change_the_document(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    path = "keys.ipynb"
    pid = await shared_project(
        server,
        ada.key,
        grace.account_id,
        {path: notebook(("code", "a = 1"), ("code", "b = 2"), ("code", "c = 3"))},
    )
    page = await page_for(browser, server, ada)
    await open_notebook(page, pid, path)
    keys = page.keyboard

    async def doc(expected: list[tuple[str, str]]) -> None:
        await document_is(server, pid, path, ada.key, expected)

    await expect(cell(page, 0)).to_have_class("cell active")
    await keys.press("b")  # insert below
    await doc([("code", "a = 1"), ("code", ""), ("code", "b = 2"), ("code", "c = 3")])
    await keys.press("a")  # insert above
    await doc([("code", "a = 1"), ("code", ""), ("code", ""), ("code", "b = 2"), ("code", "c = 3")])
    await keys.press("d")
    await keys.press("d")  # delete
    await keys.press("d")
    await keys.press("d")
    await doc([("code", "a = 1"), ("code", "b = 2"), ("code", "c = 3")])
    await keys.press("z")  # undo the last deletion
    await doc([("code", "a = 1"), ("code", ""), ("code", "b = 2"), ("code", "c = 3")])
    await keys.press("d")
    await keys.press("d")
    await doc([("code", "a = 1"), ("code", "b = 2"), ("code", "c = 3")])

    # Moving: arrows and J / K; the type keys act on the active cell.
    await keys.press("k")
    await keys.press("k")  # at the top: stays
    await keys.press("m")
    await doc([("markdown", "a = 1"), ("code", "b = 2"), ("code", "c = 3")])
    await keys.press("j")
    await keys.press("r")
    await doc([("markdown", "a = 1"), ("raw", "b = 2"), ("code", "c = 3")])
    await keys.press("ArrowUp")
    await keys.press("y")
    await doc([("code", "a = 1"), ("raw", "b = 2"), ("code", "c = 3")])
    await keys.press("ArrowDown")
    await keys.press("y")
    await doc([("code", "a = 1"), ("code", "b = 2"), ("code", "c = 3")])

    # Shift-arrows extend the selection; copy, paste below; cut.
    await keys.press("ArrowUp")
    await keys.press("Shift+ArrowDown")
    await expect(page.locator(".cell.selected")).to_have_count(2)
    await keys.press("m")
    await doc([("markdown", "a = 1"), ("markdown", "b = 2"), ("code", "c = 3")])
    await keys.press("y")
    await keys.press("c")
    await keys.press("ArrowDown")
    await keys.press("ArrowDown")
    await keys.press("v")
    await doc(
        [
            ("code", "a = 1"),
            ("code", "b = 2"),
            ("code", "c = 3"),
            ("code", "a = 1"),
            ("code", "b = 2"),
        ]
    )
    await keys.press("Shift+ArrowUp")
    await keys.press("x")
    await doc([("code", "a = 1"), ("code", "b = 2"), ("code", "c = 3")])
    await keys.press("Shift+v")  # paste above
    await doc(
        [
            ("code", "a = 1"),
            ("code", "b = 2"),
            ("code", "a = 1"),
            ("code", "b = 2"),
            ("code", "c = 3"),
        ]
    )
    await keys.press("d")
    await keys.press("d")
    await keys.press("k")
    await keys.press("d")
    await keys.press("d")
    await doc([("code", "a = 1"), ("code", "b = 2"), ("code", "c = 3")])

    # Enter edits the active cell; Esc goes back to command mode, where keys are commands.
    await keys.press("Enter")
    await expect(page.locator(".nb-cells")).to_have_attribute("data-mode", "edit")
    await keys.press("End")
    await keys.type("0")
    await keys.press("Escape")
    await expect(page.locator(".nb-cells")).to_have_attribute("data-mode", "command")
    await keys.press("b")
    await doc([("code", "a = 1"), ("code", "b = 2"), ("code", "c = 30"), ("code", "")])
    await keys.press("d")
    await keys.press("d")

    # Shift-Enter runs and selects the next; Ctrl-Enter runs in place; Alt-Enter inserts.
    await keys.press("k")
    await keys.press("k")
    await keys.press("Shift+Enter")
    await expect(cell(page, 0).locator(".cell-prompt")).to_have_text("[1]", timeout=60000)
    await expect(cell(page, 1)).to_have_class("cell active")
    await keys.press("Control+Enter")
    await expect(cell(page, 1).locator(".cell-prompt")).to_have_text("[2]")
    await expect(cell(page, 1)).to_have_class("cell active")
    await keys.press("Alt+Enter")
    await expect(cell(page, 1).locator(".cell-prompt")).to_have_text("[3]")
    await expect(page.locator(".nb-cells")).to_have_attribute("data-mode", "edit")
    await keys.type("print(a + b)")
    await keys.press("Shift+Enter")
    await expect(cell(page, 2).locator(".output")).to_have_text("3")
    await doc([("code", "a = 1"), ("code", "b = 2"), ("code", "print(a + b)"), ("code", "c = 30")])

    # 0, 0 restarts (after a confirmation): the namespace is gone.
    await keys.press("Escape")
    await keys.press("0")
    await keys.press("0")
    await page.get_by_role("button", name="Restart", exact=True).click()
    await expect(page.get_by_test_id("kernel-status")).to_have_attribute("data-status", "idle")
    await cell(page, 2).locator(".cell-gutter").click()
    await keys.press("Control+Enter")
    await expect(cell(page, 2).locator(".out-error")).to_contain_text("NameError")
    await shut_kernel(server, pid, path)
    assert page.errors == []  # type: ignore[attr-defined]


def png(width: int = 96, height: int = 48) -> bytes:
    """A small gradient PNG, made here (no image library needed)."""
    import struct
    import zlib

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, 90, y * 255 // height)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_outputs_render_safely_with_images_math_and_colours(
    server: Served, browser: Browser
) -> None:
    import base64

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    md = nbformat.v4.new_markdown_cell(
        "## Kepler's third law\n\nThe period and the axis: $T^2 \\propto a^3$, and\n\n"
        "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n\n![gradient](attachment:gradient.png)"
    )
    md.attachments = {"gradient.png": {"image/png": base64.b64encode(png(64, 24)).decode()}}
    nb.cells = [
        md,
        nbformat.v4.new_code_cell(
            "from IPython.display import Image, display\ndisplay(Image(filename='plot.png'))"
        ),
        nbformat.v4.new_code_cell(
            "from IPython.display import HTML\n"
            "HTML(\"<b id='bold'>bold <i>html</i></b>"
            "<script>window.pwned = 'script'</script>"
            '<img src=x onerror=\\"window.pwned = \'onerror\'\\">")'
        ),
        nbformat.v4.new_code_cell(
            "from IPython.display import Latex, JSON, display\n"
            "display(Latex(r'$e^{i\\pi} + 1 = 0$'))\n"
            "display(JSON({'planets': ['Mercury', 'Venus'], 'moons': 1}))"
        ),
        nbformat.v4.new_code_cell(
            "print('\\x1b[31mred\\x1b[0m and \\x1b[1;32mbold green\\x1b[0m')"
        ),
        nbformat.v4.new_code_cell("for i in range(500):\n    print('line', i)"),
    ]
    _, _, pid, a, g = await two_people(server, browser, {"out.ipynb": nbformat.writes(nb)})
    await asyncio.to_thread(project_file(server, pid, "plot.png").write_bytes, png())
    await open_notebook(a, pid, "out.ipynb")
    await open_notebook(g, pid, "out.ipynb")
    await a.locator(".menu summary", has_text="Run all").click()
    await a.get_by_role("menuitem", name="Run all", exact=True).click()
    await expect(cell(g, 5).locator(".out-show-all")).to_contain_text(
        "Show all 500 lines", timeout=60000
    )

    async def image_loaded(page: Page, selector: str) -> bool:
        return await page.locator(selector).first.evaluate("img => img.naturalWidth > 0")

    # The markdown: math typeset by KaTeX, the attachment shown.
    await expect(cell(g, 0).locator(".katex").first).to_be_visible()
    await expect(cell(g, 0).locator(".math-display .katex-display")).to_have_count(1)
    await eventually(lambda: image_loaded(g, ".cell-rendered img"), what="the attachment")
    # The image output.
    await eventually(lambda: image_loaded(g, ".out-image"), what="the PNG output")
    # HTML: shown, its script and handlers gone, never run.
    # (ids are prefixed, so content cannot shadow the app's own elements)
    await expect(cell(g, 2).locator("#user-content-bold")).to_have_text("bold html")
    await expect(cell(g, 2).locator("script")).to_have_count(0)
    for page in (a, g):
        assert await page.evaluate("() => window.pwned") is None
    # LaTeX and JSON.
    await expect(cell(g, 3).locator(".out-latex .katex")).to_be_visible()
    await expect(cell(g, 3).locator(".out-json")).to_contain_text("Mercury")
    # ANSI colours as colours, not escape codes.
    red = cell(g, 4).locator(".out-stream span").first
    await expect(red).to_have_text("red")
    assert "ansi-red" in (await red.get_attribute("style") or "")
    await expect(cell(g, 4).locator(".output")).not_to_contain_text("[31m")
    # A long output shows its tail until asked for all of it.
    await expect(cell(g, 5).locator(".output")).not_to_contain_text("line 0\n")
    await expect(cell(g, 5).locator(".output")).to_contain_text("line 499")
    await cell(g, 5).locator(".out-show-all").click()
    await expect(cell(g, 5).locator(".output pre")).to_contain_text("line 0\nline 1\n")
    await g.locator(".nb-scroll").evaluate("el => el.scrollTop = 0")
    await shoot(g, "notebook-outputs")
    await shut_kernel(server, pid, "out.ipynb")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]


async def test_hostile_outputs_stay_inside_their_box(server: Served, browser: Browser) -> None:
    """Outputs anyone in the project can write (a student's notebook, their kernel's
    messages): a full-page fixed overlay, an SVG style sheet hiding the app's bar, an id
    shadowing the app's toast host, an SVG link, and a malformed error output. The app
    stays usable and every other output still renders."""
    nb = nbformat.v4.new_notebook()
    cover = (
        '<div id="toasts" style="position:fixed;inset:0;z-index:99999;background:#c00">'
        "Session expired: sign in again</div>"
    )
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
        "<style>.topbar{display:none !important}</style>"
        '<a href="https://example.com/x"><rect width="40" height="20" fill="#08f"/></a></svg>'
    )
    first = nbformat.v4.new_code_cell("cover()", execution_count=1)
    first.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": cover}),
        nbformat.v4.new_output("display_data", data={"image/svg+xml": svg}),
    ]
    bad = nbformat.v4.new_code_cell("broken()", execution_count=2)
    after = nbformat.v4.new_code_cell("print('still here')", execution_count=3)
    after.outputs = [nbformat.v4.new_output("stream", name="stdout", text="still here\n")]
    nb.cells = [first, bad, after]
    raw = json.loads(nbformat.writes(nb))
    # An error output nbformat would not write (the document takes what a kernel sends).
    raw["cells"][1]["outputs"] = [
        {"output_type": "error", "ename": 5, "evalue": None, "traceback": "not a list"}
    ]
    _, _, pid, a, _g = await two_people(server, browser, {"bad.ipynb": json.dumps(raw)})
    await open_notebook(a, pid, "bad.ipynb")
    await expect(cell(a, 2).locator(".output")).to_contain_text("still here")
    await expect(cell(a, 0).locator(".out-html")).to_contain_text("Session expired")
    # The app's bar is shown and on top: the overlay covers its own box only.
    await expect(a.locator(".topbar")).to_be_visible()
    for target in (a.locator(".topbar"), a.locator(".nb-toolbar")):
        box = await target.bounding_box()
        assert box is not None
        on_top = await a.evaluate(
            "([x, y]) => document.elementFromPoint(x, y)?.closest('.topbar, .nb-toolbar') !== null",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
        )
        assert on_top, "an output covers the app"
    # The app's toast host is still the app's own.
    assert await a.evaluate("() => document.getElementById('toasts')?.closest('.nb-cells')") is None
    link = cell(a, 0).locator(".out-svg a")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(cell(a, 1).locator(".output")).to_have_count(1)
    assert a.errors == []  # type: ignore[attr-defined]


async def test_a_notebook_of_two_thousand_cells_opens_and_scrolls(
    server: Served, browser: Browser
) -> None:
    cells: list[tuple[str, str]] = []
    for i in range(2000):
        if i % 4 == 0:
            cells.append(("markdown", f"### Section {i}\n\nSome *notes* on part {i}."))
        else:
            cells.append(("code", f"x_{i} = {i}\nprint(x_{i} * 2)"))
    _, _, pid, a, _g = await two_people(server, browser, {"big.ipynb": notebook(*cells)})
    await open_notebook(a, pid, "big.ipynb")
    await expect(a.locator(".nb-cells .cell")).to_have_count(2000)
    # Only cells near the viewport have editors.
    mounted = await a.locator(".nb-cells .cm-editor").count()
    assert 0 < mounted < 200, mounted
    await a.locator(".nb-scroll").evaluate("el => el.scrollTop = el.scrollHeight")
    await expect(cell(a, 1999).locator(".cm-content")).to_contain_text("x_1999 = 1999")
    await expect(cell(a, 1).locator(".cm-editor")).to_have_count(0)
    assert await a.locator(".nb-cells .cm-editor").count() < 200
    # The keyboard reaches the end too: the last cell becomes active, with its editor.
    await a.locator(".nb-scroll").evaluate("el => el.scrollTop = 0")
    await expect(cell(a, 1).locator(".cm-editor")).to_have_count(1)
    assert a.errors == []  # type: ignore[attr-defined]


VISIBLE_CELLS_JS = """() => {
  const port = document.querySelector('.nb-scroll').getBoundingClientRect();
  return [...document.querySelectorAll('.nb-cells .cell')].filter((c) => {
    const r = c.getBoundingClientRect();
    return r.bottom > port.top && r.top < port.bottom;
  }).map((c) => {
    const token = [...c.querySelectorAll('.cell-input span')].find((s) => s.textContent === 'def');
    return {
      id: c.dataset.cellId, height: c.getBoundingClientRect().height,
      plain: !!c.querySelector('.cell-static'), editor: !!c.querySelector('.cm-editor'),
      keyword: token ? getComputedStyle(token).color : null,
    };
  });
}"""


async def test_code_scrolled_into_view_shows_at_once_and_becomes_its_editor_in_place(
    server: Served, browser: Browser
) -> None:
    # While the notebook scrolls, cells coming into view show their code highlighted
    # without an editor (making one costs layouts of the page); once it stops, each gets
    # its editor where it is, at the same height, with the same colours.
    wide = "total = " + " + ".join(f"value_{i}" for i in range(60))
    cells = [
        ("code", wide if i % 3 == 0 else f"def f_{i}(n):\n\n    return n * {i}  # note\n")
        for i in range(400)
    ]
    _, _, pid, a, _g = await two_people(server, browser, {"s.ipynb": notebook(*cells)})
    await open_notebook(a, pid, "s.ipynb")
    await expect(cell(a, 0).locator(".cm-editor")).to_have_count(1)
    # Scrolled to the middle and kept scrolling (a pixel back and forth every 30 ms).
    await a.locator(".nb-scroll").evaluate(
        "el => { el.scrollTop = 15000; window.jiggle = setInterval(() => "
        "{ el.scrollTop += el.scrollTop % 2 ? -1 : 1; }, 30); }"
    )
    await a.wait_for_timeout(400)
    during = await a.evaluate(VISIBLE_CELLS_JS)
    assert len(during) >= 5, during
    assert all(c["plain"] and not c["editor"] for c in during), during
    assert any(c["keyword"] for c in during), "no highlighted keyword shown"
    # A click in code shown without an editor edits it there: the cursor where it landed.
    target = next(i for i, c in enumerate(during) if c["keyword"])
    index = await a.evaluate(
        "id => [...document.querySelectorAll('.nb-cells .cell')]"
        ".findIndex((c) => c.dataset.cellId === id)",
        during[target]["id"],
    )
    line = cell(a, index).locator(".cell-static > div").nth(2)
    await line.click(position={"x": 13, "y": 5})
    await a.keyboard.type("Z")
    await shows_source(a, index, f"def f_{index}(n):\n\nZ    return n * {index}  # note\n")
    await expect(a.locator(".nb-cells")).to_have_attribute("data-mode", "edit")
    # Scrolling stops: every cell shown gets its editor, and nothing moved.
    await a.evaluate("clearInterval(window.jiggle)")

    async def upgraded() -> bool:
        now = await a.evaluate(VISIBLE_CELLS_JS)
        return all(c["editor"] and not c["plain"] for c in now)

    await eventually(upgraded, what="editors for the cells shown")
    after = {c["id"]: c for c in await a.evaluate(VISIBLE_CELLS_JS)}
    for c in during:
        if c["id"] in after:
            assert abs(after[c["id"]]["height"] - c["height"]) < 0.5, (c, after[c["id"]])
            if c["keyword"]:
                assert after[c["id"]]["keyword"] == c["keyword"]
    assert a.errors == []  # type: ignore[attr-defined]


async def test_undo_in_a_cell_takes_back_only_ones_own_typing(
    server: Served, browser: Browser
) -> None:
    ada, _, pid, a, g = await two_people(server, browser, {"u.ipynb": notebook(("code", ""))})
    await open_notebook(a, pid, "u.ipynb")
    await open_notebook(g, pid, "u.ipynb")
    await cell(a, 0).locator(".cm-content").click()
    await a.keyboard.type("ada = 1")
    await shows_source(g, 0, "ada = 1")
    await cell(g, 0).locator(".cm-content").click()
    await g.keyboard.press("Control+End")
    await g.keyboard.type("\ngrace = 2")
    await shows_source(a, 0, "ada = 1\ngrace = 2")
    await a.keyboard.press("Control+z")
    await shows_source(g, 0, "\ngrace = 2")
    await document_is(server, pid, "u.ipynb", ada.key, [("code", "\ngrace = 2")])
    await a.keyboard.press("Control+y")
    await document_is(server, pid, "u.ipynb", ada.key, [("code", "ada = 1\ngrace = 2")])
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]


async def test_the_other_person_sees_who_ran_a_cell_and_the_runs_panel(
    server: Served, browser: Browser
) -> None:
    cells = [("code", "print(6*7)"), *[("markdown", f"# part {i}") for i in range(30)]]
    cells.append(("code", "1/0"))
    _, _, pid, a, g = await two_people(server, browser, {"nb.ipynb": notebook(*cells)})
    await open_notebook(a, pid, "nb.ipynb")
    await open_notebook(g, pid, "nb.ipynb")
    # Nobody has run anything yet.
    await expect(cell(g, 0).get_by_test_id("run-by")).to_be_hidden()
    await cell(a, 0).locator(".cell-gutter").click()
    await a.keyboard.press("Control+Enter")
    await expect(cell(g, 0).locator(".output")).to_have_text("42", timeout=60000)
    await expect(cell(g, 0).get_by_test_id("run-by")).to_have_text(
        "run by Ada Lovelace · just now", timeout=30000
    )
    await expect(cell(a, 0).get_by_test_id("run-by")).to_contain_text("run by Ada Lovelace")
    # Ada runs the last cell, which raises.
    last = cell(a, 31)
    await last.scroll_into_view_if_needed()
    await last.locator(".cell-gutter").click()
    await a.keyboard.press("Control+Enter")
    await cell(g, 31).scroll_into_view_if_needed()
    await expect(cell(g, 31).get_by_test_id("run-by")).to_contain_text(
        "run by Ada Lovelace", timeout=60000
    )
    await expect(cell(g, 31).get_by_test_id("run-by")).to_contain_text("error")

    # Grace's panel lists both runs, newest first, with who, which cell and the outcome.
    await g.get_by_test_id("runs-toggle").click()
    entries = g.get_by_test_id("runs-panel").get_by_test_id("run-entry")
    await expect(entries).to_have_count(2, timeout=30000)
    await expect(entries.nth(0)).to_contain_text("Ada Lovelace")
    await expect(entries.nth(0)).to_contain_text("cell 32")
    await expect(entries.nth(0)).to_contain_text("error")
    await expect(entries.nth(0)).to_contain_text("1/0")
    await expect(entries.nth(1)).to_contain_text("cell 1 [1]")
    await expect(entries.nth(1)).to_contain_text("ok")
    await shoot(g, "notebook-runs")
    # Clicking a run brings its cell into view and selects it.
    await g.locator(".nb-scroll").evaluate("el => { el.scrollTop = 0; }")
    await expect(cell(g, 31)).not_to_be_in_viewport()
    await entries.nth(0).click()
    await expect(cell(g, 31)).to_be_in_viewport()
    await expect(cell(g, 31)).to_have_class(re.compile(r"\bactive\b"))
    await shut_kernel(server, pid, "nb.ipynb")


async def test_a_viewer_sees_the_notebook_live_but_cannot_type_or_run(
    server: Served, browser: Browser
) -> None:
    ada, grace, pid, a, g = await two_people(
        server, browser, {"nb.ipynb": notebook(("code", "x = 1"), ("markdown", "# Notes"))}
    )
    async with ws_connect(server, ada.key) as ws:
        answer = await ws.call(
            "project.set_role",
            {"project_id": pid, "account_id": grace.account_id, "role": "viewer"},
        )
        assert answer["result"]["role"] == "viewer", answer
    await open_notebook(a, pid, "nb.ipynb")
    await open_notebook(g, pid, "nb.ipynb")
    await expect(g.get_by_test_id("view-only")).to_be_visible()
    await expect(g.get_by_test_id("run")).to_be_hidden()
    await expect(g.get_by_test_id("restart")).to_be_hidden()
    await expect(a.get_by_test_id("view-only")).to_be_hidden()
    await expect(a.get_by_test_id("run")).to_be_visible()
    # Typing in a cell changes nothing, there or anywhere.
    await cell(g, 0).locator(".cm-content").click()
    await g.keyboard.type("GRACE")
    await g.keyboard.press("Shift+Enter")
    await g.keyboard.press("Escape")
    # Command-mode keys that change the notebook do nothing either.
    for key in ("b", "a", "m", "d", "d", "Shift+Enter", "x", "v"):
        await g.keyboard.press(key)
    await shows_source(g, 0, "x = 1")
    await expect(g.locator(".nb-cells .cell")).to_have_count(2)
    # The owner's typing shows up live for the viewer.
    await cell(a, 0).locator(".cm-content").click()
    await a.keyboard.press("End")
    await a.keyboard.type(" + 1")
    await shows_source(g, 0, "x = 1 + 1")
    await shows_source(a, 0, "x = 1 + 1")
    await expect(a.locator(".nb-cells .cell")).to_have_count(2)
    await expect(cell(g, 0).locator(".cell-prompt")).to_have_text("[ ]")
    assert server.services.extra["kernels"].get(UUID(pid), "nb.ipynb") is None
    # The project around the notebook offers a viewer nothing to change either.
    changes = ("Rename project", "New file", "New notebook", "Upload files")
    row_actions = ("Rename nb.ipynb", "Delete nb.ipynb")  # shown on hover
    await expect(g.get_by_test_id("viewer")).to_be_visible()
    await expect(g.get_by_role("button", name=re.compile(r"^(Start|Stop|Restart) "))).to_have_count(
        0
    )
    for label in changes:
        await expect(g.get_by_label(label, exact=True)).to_be_hidden()
        await expect(a.get_by_label(label, exact=True)).to_be_visible()
    for label in row_actions:
        await expect(g.get_by_label(label, exact=True)).to_have_count(0)
        await expect(a.get_by_label(label, exact=True)).to_have_count(1)
    await expect(g.get_by_label("Download nb.ipynb", exact=True)).to_have_count(1)
    await expect(g.get_by_role("button", name="People")).to_be_visible()
    await expect(a.get_by_test_id("viewer")).to_have_count(0)
    await shoot(g, "notebook-viewer")
    await g.goto("/projects")
    row = g.locator("tr[data-project]")
    await expect(row.get_by_test_id("viewer")).to_be_visible()
    await expect(row.get_by_role("button")).to_have_count(0)

    # Made a collaborator while the page is open: everything is offered at once.
    await open_notebook(g, pid, "nb.ipynb")
    async with ws_connect(server, ada.key) as ws:
        answer = await ws.call(
            "project.set_role",
            {"project_id": pid, "account_id": grace.account_id, "role": "collaborator"},
        )
        assert answer["result"]["role"] == "collaborator", answer
    await expect(g.get_by_test_id("run")).to_be_visible()
    await expect(g.get_by_test_id("viewer")).to_have_count(0)
    for label in changes:
        await expect(g.get_by_label(label, exact=True)).to_be_visible()
    for label in row_actions:
        await expect(g.get_by_label(label, exact=True)).to_have_count(1)
    await cell(g, 0).locator(".cm-content").click()
    await g.keyboard.press("End")
    await g.keyboard.type("  # Grace")
    await shows_source(a, 0, "x = 1 + 1  # Grace")


async def test_the_kernel_picker_changes_the_kernelspec_and_restarts(
    server: Served, browser: Browser, tmp_path: Any, monkeypatch: Any
) -> None:
    import json

    from jupyter_client.kernelspec import KernelSpecManager

    python3 = KernelSpecManager().get_kernel_spec("python3")
    folder = tmp_path / "jupyter" / "kernels" / "alt"
    folder.mkdir(parents=True)
    spec = {"argv": python3.argv, "display_name": "Python (alt)", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

    _, _, pid, a, g = await two_people(server, browser, {"nb.ipynb": notebook(("code", "x = 5"))})
    await open_notebook(a, pid, "nb.ipynb")
    await open_notebook(g, pid, "nb.ipynb")
    picker = a.get_by_test_id("kernel-picker")
    await expect(picker).to_have_value("python3")
    await expect(picker.locator("option")).to_contain_text(["Python (alt)", "Python 3"])
    await cell(a, 0).locator(".cell-gutter").click()
    await a.keyboard.press("Control+Enter")
    await expect(cell(g, 0).locator(".cell-prompt")).to_have_text("[1]", timeout=60000)

    await picker.select_option("alt")
    await a.get_by_role("button", name="Change kernel").click()
    # Both see the notebook's kernel change, and the kernel restarted as it.
    await expect(g.get_by_test_id("kernel-picker")).to_have_value("alt", timeout=60000)
    await expect(picker).to_have_value("alt")
    await expect(g.get_by_test_id("kernel-status")).to_have_attribute(
        "data-status", "idle", timeout=60000
    )
    session = server.services.extra["kernels"].get(UUID(pid), "nb.ipynb")

    async def restarted() -> bool:
        return session.kernel_name == "alt"

    await eventually(restarted, what="the kernel to run as alt")
    await shoot(a, "notebook-kernel-picker")
    await shut_kernel(server, pid, "nb.ipynb")
    target = project_file(server, pid, "nb.ipynb")

    async def saved() -> bool:
        try:
            nb = nbformat.reads(await asyncio.to_thread(target.read_text), as_version=4)
        except (OSError, ValueError):
            return False
        return bool(nb.metadata.get("kernelspec", {}).get("name") == "alt")

    await eventually(saved, what="the file to name the alt kernelspec")


async def test_clicking_an_avatar_follows_that_persons_cell_until_one_scrolls(
    server: Served, browser: Browser
) -> None:
    cells = [("code", f"x{i} = {i}\n" * 3) for i in range(60)]
    _, _, pid, a, g = await two_people(server, browser, {"nb.ipynb": notebook(*cells)})
    await open_notebook(a, pid, "nb.ipynb")
    await open_notebook(g, pid, "nb.ipynb")
    ada = g.locator(".presence .avatar-follow")
    await expect(ada).to_have_count(1)

    async def ada_goes_to(n: int) -> None:
        target = cell(a, n)
        await target.scroll_into_view_if_needed()
        await target.locator(".cell-gutter").click()
        # Grace's page knows where Ada is (her avatar says so).
        await expect(ada).to_have_attribute("title", re.compile(rf"in cell {n + 1} "))

    await ada_goes_to(3)
    await ada.click()
    await expect(g.get_by_test_id("following")).to_have_text(re.compile("Following Ada Lovelace"))
    await expect(ada).to_have_attribute("aria-pressed", "true")
    await ada_goes_to(50)
    await expect(cell(g, 50)).to_be_in_viewport()
    await shoot(g, "notebook-follow")
    await ada_goes_to(20)
    await expect(cell(g, 20)).to_be_in_viewport()
    await expect(cell(g, 50)).not_to_be_in_viewport()
    # Clicking again stops following.
    await ada.click()
    await expect(g.get_by_test_id("following")).to_be_hidden()
    await ada_goes_to(55)
    await expect(cell(g, 20)).to_be_in_viewport()
    await expect(cell(g, 55)).not_to_be_in_viewport()
    # Following again, then scrolling with the wheel stops it too.
    await ada.click()
    await expect(cell(g, 55)).to_be_in_viewport()
    await g.locator(".nb-scroll").hover()
    await g.mouse.wheel(0, -2500)
    await expect(g.get_by_test_id("following")).to_be_hidden()
    await expect(ada).to_have_attribute("aria-pressed", "false")
    await ada_goes_to(5)
    await ada_goes_to(58)
    await expect(cell(g, 58)).not_to_be_in_viewport()
