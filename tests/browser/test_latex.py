"""The LaTeX screen: a .tex file beside its PDF. Typing a document and building it shows a
rendered page; an error shows in the log with its line and jumps there; SyncTeX works both
ways from the browser; the preview keeps its place across rebuilds and refetches only a
changed PDF; a collaborator sees the build and the new PDF live. Real TeX throughout."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page, Response, expect

from tests.browser.conftest import eventually, page_for, shoot
from tests.browser.test_editor import shared_project
from tests.conftest import Served, make_user

# Builds run real latexmk on a machine that may be busy.
BUILD_TIMEOUT = 180

ARTICLE = r"""\documentclass{article}
\usepackage{amsmath}
\title{Notes on the Analytical Engine}
\author{Ada Lovelace}
\begin{document}
\maketitle
\section{The engine}
The engine weaves algebraic patterns just as the Jacquard loom weaves flowers and leaves.
\begin{equation}
  B_n = -\frac{1}{n+1}\sum_{k=0}^{n-1}\binom{n+1}{k} B_k
\end{equation}
\section{Notes}
It might act upon other things besides number.
\end{document}
"""
NOTES_LINE = 13  # "It might act upon …"


def long_article() -> tuple[str, int]:
    """A document of three pages (short enough for the editor to show every line), and
    the line of a sentence halfway down its last page."""
    filler = "The engine can arrange and combine its numerical quantities."
    lines = [r"\documentclass{article}", r"\begin{document}"]
    for n, title in enumerate(("Sketch", "Operations", "Notes"), 1):
        lines += [rf"\section{{{title}}}", f"{filler} ({n}a)", "", f"{filler} ({n}b)"]
        if n < 3:
            lines.append(r"\newpage")
    lines += [r"\vspace{8cm}", "", "Target sentence, far down the document, for SyncTeX."]
    target = len(lines)
    lines += ["", f"{filler} (end)", r"\end{document}"]
    return "\n".join(lines) + "\n", target


def watch(page: Page) -> dict[str, list[Any]]:
    """The PDF responses and the CSP complaints a page sees."""
    seen: dict[str, list[Any]] = {"pdf": [], "csp": []}

    def response(r: Response) -> None:
        if "/latex/pdf" in r.url:
            seen["pdf"].append(r.status)

    page.on("response", response)
    page.on(
        "console",
        lambda m: seen["csp"].append(m.text) if "Content Security Policy" in m.text else None,
    )
    return seen


async def build_number(page: Page) -> int:
    raw = await page.get_by_test_id("build-status").get_attribute("data-build")
    return int(raw) if raw else 0


async def finished_build(page: Page, after: int) -> str:
    """Waits for a build numbered above `after` to end; its status."""
    seen: list[str] = []

    async def done() -> bool:
        number, state = await page.get_by_test_id("build-status").evaluate(
            "(el) => [Number(el.dataset.build || 0), el.dataset.status]"
        )
        seen.append(state)
        return bool(number > after and state in ("succeeded", "failed"))

    await eventually(done, timeout=BUILD_TIMEOUT, what=f"build {after + 1} to end")
    return seen[-1]


async def shown(page: Page) -> int:
    raw = await page.get_by_test_id("pdf-view").get_attribute("data-shown")
    return int(raw) if raw else 0


async def current_line(page: Page) -> int:
    return int(await page.locator(".cm-lineNumbers .cm-activeLineGutter").inner_text())


async def cursor_on(page: Page, line: int) -> None:
    await expect(page.locator(".cm-lineNumbers .cm-activeLineGutter")).to_have_text(str(line))


async def ink(page: Page) -> int:
    """Dark pixels on the first page's canvas: the PDF was drawn, not just sized."""
    return int(
        await page.locator(".pdf-page canvas").first.evaluate(
            """(c) => {
                const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200 && d[i] < 128) n++;
                return n;
            }"""
        )
    )


async def test_typed_document_builds_and_its_error_jumps_to_the_line(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {"paper.tex": ""})
    page = await page_for(browser, server, ada)
    seen = watch(page)
    await page.goto(f"/projects/{pid}/files/paper.tex")
    await expect(page.get_by_test_id("build-status")).to_have_attribute("data-status", "none")
    await expect(page.get_by_text("No PDF yet")).to_be_visible()
    # Builds on request only, here: the Build button.
    await page.get_by_test_id("auto-build").uncheck()

    await page.locator(".cm-content").click()
    await page.keyboard.insert_text(ARTICLE)
    await expect(page.locator(".cm-content")).to_contain_text("besides number.")
    await page.get_by_test_id("build").click()
    assert await finished_build(page, 0) == "succeeded"
    first = page.locator(".pdf-page").first
    await expect(first.locator("canvas")).to_be_visible()
    box = await first.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    await eventually(lambda: ink(page), what="the page to be drawn")
    assert 200 in seen["pdf"]
    await expect(page.get_by_test_id("build-status")).to_contain_text("Built in")
    await expect(page.get_by_test_id("build-status")).to_contain_text("by you")

    # An undefined control sequence on the last paragraph's line.
    await page.locator(".cm-line", has_text="It might act upon").click()
    await page.keyboard.press("End")
    await page.keyboard.type(r" \foo")
    await page.get_by_test_id("build").click()
    assert await finished_build(page, 1) == "failed"
    problem = page.locator(".problem-error", has_text="Undefined control sequence")
    await expect(problem).to_be_visible()
    await expect(problem).to_have_attribute("data-line", str(NOTES_LINE))
    await expect(problem).to_contain_text(f"paper.tex:{NOTES_LINE}")
    await expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    await page.locator(".cm-line", has_text="documentclass").click()
    await cursor_on(page, 1)
    await shoot(page, "latex")

    await problem.click()
    await cursor_on(page, NOTES_LINE)
    await expect(page.locator(".cm-activeLine")).to_contain_text("It might act upon")

    # Fixed: the error is gone from the log and the gutter.
    await page.keyboard.press("End")
    for _ in range(len(r" \foo")):
        await page.keyboard.press("Backspace")
    await expect(page.locator(".cm-activeLine")).to_have_text(
        "It might act upon other things besides number."
    )
    await page.get_by_test_id("build").click()
    assert await finished_build(page, 2) == "succeeded"
    await expect(page.locator(".problem-error")).to_have_count(0)
    await expect(page.locator(".cm-lint-marker-error")).to_have_count(0)
    assert seen["csp"] == [] and page.errors == []  # type: ignore[attr-defined]


async def test_synctex_both_ways_and_the_preview_keeps_its_place(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    text, target = long_article()
    pid = await shared_project(server, ada.key, grace.account_id, {"sketch.tex": text})
    page = await page_for(browser, server, ada)
    seen = watch(page)
    await page.goto(f"/projects/{pid}/files/sketch.tex")
    await page.get_by_test_id("auto-build").uncheck()
    editor = page.locator(".cm-content")
    await expect(editor).to_contain_text("Target sentence")
    await editor.click()
    await page.keyboard.press("Control+Enter")
    assert await finished_build(page, 0) == "succeeded"
    view = page.get_by_test_id("pdf-view")
    await expect(view).to_have_attribute("data-pages", "3")
    assert await view.evaluate("(v) => v.scrollTop") == 0

    # Forward: the target line's place in the PDF comes into view, marked.
    await page.locator(".cm-line", has_text="Target sentence").click()
    await cursor_on(page, target)
    await page.get_by_test_id("forward-search").click()
    mark = page.get_by_test_id("pdf-mark")
    await expect(mark).to_have_count(1)
    assert await view.evaluate("(v) => v.scrollTop") > 0
    m = await mark.bounding_box()
    v = await view.bounding_box()
    assert m is not None and v is not None
    assert v["y"] <= m["y"] and m["y"] + m["height"] <= v["y"] + v["height"]

    # Inverse: a double-click there puts the cursor back on the line.
    await page.locator(".cm-line", has_text="documentclass").click()
    await cursor_on(page, 1)
    await page.mouse.dblclick(m["x"] + min(20, m["width"] / 2), m["y"] + m["height"] / 2)

    async def back_on_target() -> bool:
        return abs(await current_line(page) - target) <= 1

    await eventually(back_on_target, what="inverse search to move the cursor to the line")

    # A rebuild with a changed PDF: fetched, drawn, at the same scroll position.
    top = await view.evaluate("(v) => v.scrollTop")
    before = await shown(page)
    await page.keyboard.press("Control+End")
    await page.keyboard.type("% revised")
    await page.keyboard.press("Control+s")
    assert await finished_build(page, 1) == "succeeded"

    async def redrawn() -> bool:
        return await shown(page) > before

    await eventually(redrawn, what="the rebuilt PDF to be shown")
    assert abs(await view.evaluate("(v) => v.scrollTop") - top) <= 2

    # A build that leaves the PDF as it was: revalidated (304), not fetched or drawn again.
    fetched = list(seen["pdf"])
    again = await shown(page)
    await page.get_by_test_id("build").click()
    assert await finished_build(page, 2) == "succeeded"

    async def revalidated() -> bool:
        return 304 in seen["pdf"][len(fetched) :]

    await eventually(revalidated, what="the PDF to be revalidated")
    assert await shown(page) == again
    assert seen["csp"] == [] and page.errors == []  # type: ignore[attr-defined]


async def test_a_collaborator_sees_the_build_and_the_new_pdf_live(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {"paper.tex": ARTICLE})
    url = f"/projects/{pid}/files/paper.tex"
    a = await page_for(browser, server, ada)
    g = await page_for(browser, server, grace)
    await a.goto(url)
    await g.goto(url)
    await expect(a.locator(".cm-content")).to_contain_text("besides number.")
    g_status = g.get_by_test_id("build-status")
    await expect(g_status).to_have_attribute("data-status", "none")
    # Every state Grace's screen shows, in order.
    await g_status.evaluate(
        """(el) => {
            window.statuses = [];
            new MutationObserver(() => window.statuses.push(el.dataset.status))
                .observe(el, { attributes: true, attributeFilter: ["data-status"] });
        }"""
    )

    # Ada types; auto-build (on by default) builds once she stops.
    await expect(a.get_by_test_id("auto-build")).to_be_checked()
    await a.locator(".cm-line", has_text="It might act upon").click()
    await a.keyboard.press("End")
    await a.keyboard.type(" And compose music.")
    assert await finished_build(g, 0) == "succeeded"
    await expect(g_status).to_contain_text("by Ada Lovelace")
    states = await g.evaluate("window.statuses")
    assert "running" in states and states[-1] == "succeeded", states

    async def grace_has_pdf() -> bool:
        return await shown(g) >= 1

    await eventually(grace_has_pdf, what="Grace to see the PDF")
    await eventually(lambda: ink(g), what="Grace's page to be drawn")

    # Ada's next edit: Grace gets the new PDF without doing anything.
    before = await shown(g)
    number = await build_number(g)
    await a.keyboard.type(" Elaborate pieces of any extent.")
    assert await finished_build(g, number) == "succeeded"

    async def grace_has_new_pdf() -> bool:
        return await shown(g) > before

    await eventually(grace_has_new_pdf, what="Grace to see the rebuilt PDF")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]
