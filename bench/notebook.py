"""The notebook, measured in Debian's chromium (Playwright): cold load to the first cell
editable for a 50-cell and a 2,000-cell notebook (mixed code, markdown and outputs), the
longest frame while scrolling the 2,000-cell notebook end to end, typing latency in a
cell between two browsers on both sizes, and input latency in one browser while another
runs a cell printing 10,000 lines, each flushed (10,000 stream messages at the kernel's
full speed), and whether both browsers end with the same output. Baselines in the same run:
the bare yjs + y-websocket client of bench/frontend.py for typing, and JupyterLab with
jupyter-collaboration when it is installed (COLLAB_BENCH_JUPYTER=path to its `jupyter`),
on the same files and the same measures (each row beside collab's; a failure is a row
saying what failed). Prints a table with the machine's load.

    .venv/bin/python bench/notebook.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nbformat
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchlib

from collab.client import Client
from frontend import (
    CHROMIUM_ARGS,
    bare_typing,
    context,
    latencies,
    signed_up,
    start_server,
)

# In every page: how long each key press waits for the next frame (keydown's timestamp to
# a task after the next animation frame), and the frames' spacing while scrolling (given
# up after two minutes: JupyterLab's end moves away while it attaches cells).
INPUT_PROBE = """
window.inputLatency = [];
window.inputAt = [];
document.addEventListener("keydown", (e) => {
  const t0 = e.timeStamp;
  requestAnimationFrame(() => setTimeout(() => {
    window.inputLatency.push(performance.now() - t0);
    window.inputAt.push(t0);
  }));
}, true);
"""

# In the typing page: the times (page clock) of the changes to the first cell's output
# element, whose first and last are the stream's start and end as this page saw them.
WATCH_JS = """([cells, outputs]) => {
  window.streamMarks = [];
  const out = document.querySelectorAll(cells)[0].querySelector(outputs);
  new MutationObserver(() => window.streamMarks.push(performance.now()))
    .observe(out, { subtree: true, childList: true, characterData: true });
}"""

SCROLL_JS = """async (selector) => {
  const el = document.querySelector(selector);
  const frames = [];
  const until = performance.now() + 120000;
  let last = performance.now();
  el.scrollTop = 0;
  await new Promise((r) => requestAnimationFrame(r));
  last = performance.now();
  while (el.scrollTop + el.clientHeight < el.scrollHeight - 2 && performance.now() < until) {
    el.scrollTop += 300;
    await new Promise((r) => requestAnimationFrame(r));
    const now = performance.now();
    frames.push(now - last);
    last = now;
  }
  return frames;
}"""

# JupyterLab's counterpart of bench/frontend.py's APP_PROBE: keys going down in one page,
# and each change of the number of typed "q"s in the other page's first cell editor, on
# the wall clock both pages share (performance.timeOrigin + performance.now()). The
# collaborators' name labels (y-codemirror's .cm-ySelectionInfo, inside the lines) are
# not counted.
JL_PROBE = """
const jlMarks = () => {
  const el = document.querySelector(".jp-Notebook .jp-Cell .cm-content");
  if (!el) return 0;
  const count = (t) => (t.match(/q/g) || []).length;
  let n = count(el.textContent);
  for (const info of el.querySelectorAll(".cm-ySelectionInfo")) n -= count(info.textContent);
  return n;
};
window.bench = { sent: [], got: [] };
document.addEventListener("keydown", (e) => {
  if (e.key !== "q") return;
  window.bench.sent.push([jlMarks() + 1, performance.timeOrigin + performance.now()]);
}, true);
new MutationObserver(() => {
  const len = jlMarks();
  const got = window.bench.got;
  if (!got.length || got[got.length - 1][0] !== len) got.push([len, performance.timeOrigin + performance.now()]);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""

EDITABLE = {
    "collab": ".nb-cells .cell .cm-content[contenteditable=true]",
    "jupyterlab": ".jp-Notebook .jp-Cell .cm-content[contenteditable=true]",
}
# JupyterLab 4's notebook scrolls in its windowed panel's outer box (checked in the page:
# the only element there with overflow auto and a scroll height beyond its own).
SCROLLER = {"collab": ".nb-scroll", "jupyterlab": ".jp-Notebook .jp-WindowedPanel-outer"}
JL_CELL = ".jp-Notebook .jp-Cell"


def make_notebook(cells: int) -> str:
    """Mixed: code cells with stream and result outputs, markdown with math, raw now and
    then. No "q" anywhere, so typed q's can be counted."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for i in range(cells):
        kind = i % 4
        if kind in (0, 1):
            c = nbformat.v4.new_code_cell(f"x{i} = {i}\nfor k in range(3):\n    print(k, x{i})")
            c.execution_count = i + 1
            c.outputs = [
                nbformat.v4.new_output("stream", name="stdout", text="".join(
                    f"{k} {i}\n" for k in range(3))),
                nbformat.v4.new_output("execute_result", data={"text/plain": str(i)},
                                       execution_count=i + 1),
            ]  # fmt: skip
        elif kind == 2:
            c = nbformat.v4.new_markdown_cell(
                f"## Part {i}\n\nSome text with math $a_{i} = b^2$ and a list:\n\n- one\n- two"
            )
        else:
            c = nbformat.v4.new_code_cell(f"def f{i}(n):\n    return n * {i}")
        nb.cells.append(c)
    return nbformat.writes(nb)


async def type_in_first_cell(
    writer: Page, reader: Page, n: int, gap_ms: int, cells: str = ".nb-cells .cell"
) -> list[float]:
    """bench/frontend.py's typing measure, in the notebook's first cell (the first editor
    of the page, which its probe, APP_PROBE or JL_PROBE, watches)."""
    await writer.locator(f"{cells} .cm-content").first.click()
    await writer.keyboard.press("Control+End")
    await reader.evaluate("window.bench.got = []")
    await writer.evaluate("window.bench.sent = []")
    for _ in range(n):
        await writer.keyboard.type("q")
        await asyncio.sleep(gap_ms / 1000)
    await asyncio.sleep(1)
    return latencies(
        await writer.evaluate("window.bench.sent"), await reader.evaluate("window.bench.got")
    )


async def cold_load(browser: Browser, url: str, cookie: str | None, base: str, kind: str) -> float:
    if kind == "collab":
        assert cookie is not None
        ctx = await context(browser, base, cookie)
    else:
        ctx = await browser.new_context(base_url=base, viewport={"width": 1280, "height": 800})
    page = await ctx.new_page()
    await page.goto(url)
    await page.wait_for_selector(EDITABLE[kind], timeout=300_000)
    ms = float(await page.evaluate("performance.now()"))
    await ctx.close()
    return ms


async def longest_frame(page: Page, kind: str) -> tuple[float, float]:
    await page.wait_for_selector(EDITABLE[kind], timeout=300_000)
    await page.wait_for_timeout(500)
    frames: list[float] = await page.evaluate(SCROLL_JS, SCROLLER[kind])
    return max(frames), benchlib.pct(frames, 0.99)


AFTER = 300
CONVERGE_S = 120


async def typing_while_streaming(
    a: Page, n: int, cells: str, outputs: str, run: Callable[[], Awaitable[None]]
) -> tuple[list[float], int, float]:
    """Ada types n keys in the second cell (focused already) while `run` (Grace) runs the
    first, which prints 10,000 lines: the typing starts before the run and goes on past
    the output's arrival. Returns the input latencies of the keys pressed while Ada's page
    was receiving the output (and AFTER ms more), how many keys those were, and how long
    it received (ms). Each line is flushed: 10,000 stream messages, as fast as the kernel
    sends them."""
    await a.evaluate(WATCH_JS, [cells, outputs])
    await a.evaluate("window.inputLatency = []; window.inputAt = []")

    async def typing() -> None:
        for _ in range(n):
            await a.keyboard.type("z")
            await asyncio.sleep(0.03)

    keys = asyncio.create_task(typing())
    await asyncio.sleep(0.3)
    await run()
    await keys
    await asyncio.sleep(0.5)
    latency: list[float] = await a.evaluate("window.inputLatency")
    at: list[float] = await a.evaluate("window.inputAt")
    marks: list[float] = await a.evaluate("window.streamMarks")
    if not marks:
        return [], 0, 0.0
    # The keys from the output's first change to AFTER ms past its last (what the page
    # does with an output lands in the frames after it).
    during = [ms for ms, t in zip(latency, at, strict=False) if marks[0] <= t <= marks[-1] + AFTER]
    return during, len(during), marks[-1] - marks[0]


async def converged(
    pages: tuple[Page, Page], output: Callable[[Page], Any]
) -> tuple[bool, float, list[str]]:
    """Both pages end with the same output, which has the last line (waiting at most
    CONVERGE_S); when (s); and each page's last output line at the end."""
    started = time.monotonic()
    texts: list[str] = []
    while time.monotonic() - started < CONVERGE_S:
        texts = [await output(p).text_content() or "" for p in pages]
        if all("9999" in t for t in texts) and texts[0] == texts[1]:
            break
        await asyncio.sleep(0.25)
    tails = [(t.rstrip().rsplit("\n", 1)[-1] or "nothing")[-12:] for t in texts]
    same = bool(texts) and all("9999" in t for t in texts) and texts[0] == texts[1]
    return same, time.monotonic() - started, tails


async def stream_run(
    a: Page, g: Page, n: int
) -> tuple[list[float], int, float, bool, float, list[str]]:
    """Grace runs a cell that prints 10,000 lines while Ada types in the cell below it
    (typing_while_streaming), and whether both end with the same output."""
    cells = ".nb-cells .cell"
    await a.locator(cells).nth(1).locator(".cm-content").click()

    async def run() -> None:
        await g.locator(cells).nth(0).locator(".cell-gutter").click()
        await g.keyboard.press("Control+Enter")

    during, count, ms = await typing_while_streaming(a, n, cells, ".cell-outputs", run)
    same, seconds, tails = await converged(
        (a, g), lambda p: p.locator(cells).nth(0).locator(".cell-outputs")
    )
    return during, count, ms, same, seconds, tails


def _spawn_jupyterlab(jupyter: str, root: Path, folder: Path, port: int) -> subprocess.Popen[bytes]:
    with open(root / "jupyterlab.log", "wb") as log:
        return subprocess.Popen(
            [jupyter, "lab", "--no-browser", f"--port={port}", "--IdentityProvider.token=",
             "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
             f"--ServerApp.root_dir={folder}", "--allow-root"],
            stdout=log, stderr=log, cwd=folder,
        )  # fmt: skip


Row = tuple[str, str, str, str]


def _jupyterlab_versions(jupyter: str) -> str:
    """JupyterLab's and jupyter-collaboration's versions, from the venv of `jupyter`."""
    lab = subprocess.run([jupyter, "lab", "--version"], capture_output=True, text=True)
    python = Path(jupyter).parent / "python"
    rtc = subprocess.run(
        [str(python), "-c",
         "import importlib.metadata as m; print(m.version('jupyter-collaboration'))"],
        capture_output=True, text=True,
    )  # fmt: skip
    return (
        f"JupyterLab {lab.stdout.strip() or '?'} + jupyter-collaboration "
        f"{rtc.stdout.strip() or '?'}"
    )


_workspaces = itertools.count(1)


def jl_url(name: str) -> str:
    """`name` in a JupyterLab workspace of its own: no document opened before in the run
    is restored with it."""
    return f"/lab/workspaces/bench{next(_workspaces)}/tree/{name}"


async def jl_open(page: Page, name: str) -> None:
    """Opens `name` and waits for an editable cell; accepts the kernel dialog if
    JupyterLab asks for a kernel."""
    await page.goto(jl_url(name))
    await page.wait_for_selector(EDITABLE["jupyterlab"], timeout=300_000)
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    with contextlib.suppress(PlaywrightTimeout):
        await dialog.wait_for(timeout=2000)
        await dialog.click()


async def jl_cells(page: Page) -> int:
    return int(await page.evaluate(f"document.querySelectorAll({JL_CELL!r}).length"))


async def jl_all_cells(page: Page, cells: int, seconds: float) -> tuple[int, float]:
    """Waits (up to `seconds`) for JupyterLab to have attached all cells to the page: in
    its default windowing mode they are added in idle time after the first ones show,
    more slowly as the page grows (about 1,100 of 2,000 after a minute here). Returns the
    count reached and the page's time then (ms)."""
    with contextlib.suppress(PlaywrightTimeout):
        await page.wait_for_function(
            f"() => document.querySelectorAll({JL_CELL!r}).length >= {cells}",
            timeout=seconds * 1000, polling=500,
        )  # fmt: skip
    return await jl_cells(page), float(await page.evaluate("performance.now()"))


async def jl_stream(
    a: Page, g: Page, n: int
) -> tuple[list[float], int, float, bool, float, list[str]]:
    """stream_run for JupyterLab: Grace runs the first cell with Ctrl-Enter in its editor
    while Ada types in the cell below."""
    for p in (a, g):
        await p.locator(".jp-Notebook-ExecutionIndicator[data-status=idle]").first.wait_for(
            timeout=120_000
        )
    await a.locator(JL_CELL).nth(1).locator(".cm-content").click()

    async def run() -> None:
        await g.locator(JL_CELL).nth(0).locator(".cm-content").click()
        await g.keyboard.press("Control+Enter")

    during, count, ms = await typing_while_streaming(a, n, JL_CELL, ".jp-OutputArea", run)
    # textContent, not innerText: cells skipped by content-visibility have no layout.
    same, seconds, tails = await converged(
        (a, g), lambda p: p.locator(JL_CELL).nth(0).locator(".jp-OutputArea").first
    )
    return during, count, ms, same, seconds, tails


async def jupyterlab_rows(
    browser: Browser,
    jupyter: str,
    root: Path,
    files: dict[str, str],
    n: int,
    quick: bool,
    streams: int,
    every: bool,
    notes: list[str],
) -> dict[str, list[Row]]:
    """JupyterLab with jupyter-collaboration on the same files and workloads, keyed by
    the collab measure each row goes beside. A failure becomes a row saying what failed."""
    folder = root / "jl"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    port = benchlib.free_port()
    proc = await asyncio.to_thread(_spawn_jupyterlab, jupyter, root, folder, port)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, list[Row]] = {}

    def failed(key: str, what: str, exc: Exception) -> None:
        out.setdefault(key, []).append(
            (f"  JupyterLab: {what}", f"failed: {type(exc).__name__}", "", str(exc)[:60])
        )

    try:
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                if proc.poll() is not None:
                    raise RuntimeError("jupyter lab exited at start")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(base + "/api", timeout=1)).status_code == 200:
                        break
                await asyncio.sleep(0.2)
            tracker = "/lab/api/settings/@jupyterlab/notebook-extension:tracker"
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                s = (await client.get(base + tracker, timeout=10)).json()
                default = s["schema"]["properties"]["windowingMode"]["default"]
                mode = s["settings"].get("windowingMode", default)
                notes.append(f"JupyterLab's notebook windowing mode: {mode} (default {default})")
        notes.append(await asyncio.to_thread(_jupyterlab_versions, jupyter))
    except Exception as exc:
        failed("load", "server", exc)
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)
        return out

    async def pages() -> tuple[BrowserContext, BrowserContext, Page, Page]:
        contexts = []
        for _ in range(2):
            ctx = await browser.new_context(base_url=base, viewport={"width": 1280, "height": 800})
            await ctx.add_init_script(INPUT_PROBE)
            await ctx.add_init_script(JL_PROBE)
            contexts.append(ctx)
        return contexts[0], contexts[1], await contexts[0].new_page(), await contexts[1].new_page()

    try:
        if every:
            for name, label in (("nb50.ipynb", "50"), ("nb2000.ipynb", "2,000")):
                key, what = f"load{label}", f"cold load, {label} cells (ms)"
                try:
                    loads = [
                        await cold_load(browser, jl_url(name), None, base, "jupyterlab")
                        for _ in range(1 if quick else 3)
                    ]
                    out[key] = [(f"  JupyterLab: {what}", f"{sorted(loads)[len(loads) // 2]:.0f} median",
                                 f"{max(loads):.0f} max", "same run")]  # fmt: skip
                except Exception as exc:
                    failed(key, what, exc)

            what = "longest frame scrolling 2,000 cells (ms)"
            try:
                ctx = await browser.new_context(
                    base_url=base, viewport={"width": 1280, "height": 800}
                )
                try:
                    page = await ctx.new_page()
                    await jl_open(page, "nb2000.ipynb")
                    count, at = await jl_all_cells(page, 2000, 60 if quick else 240)
                    frames: list[float] = await page.evaluate(SCROLL_JS, SCROLLER["jupyterlab"])
                    bottom = await page.evaluate(
                        "(s) => { const e = document.querySelector(s);"
                        " return e.scrollTop + e.clientHeight >= e.scrollHeight - 2; }",
                        SCROLLER["jupyterlab"],
                    )
                    notes.append(
                        f"JupyterLab's scroll: {count}/2000 cells in the page when it began "
                        f"({at / 1000:.0f} s after opening), {await jl_cells(page)} at its end; "
                        f"{len(frames)} frames, {'reached' if bottom else 'did not reach'} the "
                        "bottom"
                    )
                    out["scroll"] = [(f"  JupyterLab: {what}", f"{max(frames):.1f} max",
                                      f"{benchlib.pct(frames, 0.99):.1f} p99", "same run")]  # fmt: skip
                finally:
                    await ctx.close()
            except Exception as exc:
                failed("scroll", what, exc)

            for name, label in (("nb50.ipynb", "50"), ("nb2000.ipynb", "2,000")):
                key, what = f"typing{label}", f"typing between two browsers, {label} cells (ms)"
                try:
                    a_ctx, g_ctx, a, g = await pages()
                    try:
                        for p in (a, g):
                            await jl_open(p, name)
                        await g.wait_for_timeout(500)
                        typed = await type_in_first_cell(a, g, n, 30, JL_CELL)
                        out[key] = [(f"  JupyterLab: {what}", f"{benchlib.pct(typed, 0.5):.1f} p50",
                                     f"{benchlib.pct(typed, 0.99):.1f} p99", "same run")]  # fmt: skip
                        notes.append(
                            f"JupyterLab: {len(typed)}/{n} characters measured ({label} cells)"
                        )
                    finally:
                        await a_ctx.close()
                        await g_ctx.close()
                except Exception as exc:
                    failed(key, what, exc)

        what = "input latency while a cell prints 10,000 lines (ms)"
        try:
            keys: list[float] = []
            converged_all, slowest = True, 0.0
            each: list[str] = []
            for k in range(streams):
                a_ctx, g_ctx, a, g = await pages()
                try:
                    for p in (a, g):
                        await jl_open(p, f"stream{k}.ipynb")
                    during, count, ms, same, seconds, tails = await jl_stream(a, g, n)
                finally:
                    await a_ctx.close()
                    await g_ctx.close()
                keys += during
                converged_all &= same
                slowest = max(slowest, seconds)
                each.append(f"{count} keys over {ms:.0f} ms, p99 {_pct(during, 0.99, '')}"
                            f"ended {tails} after {seconds:.0f} s")  # fmt: skip
            notes.append(f"JupyterLab: {streams} streams: " + "; ".join(each))
            out["stream"] = [
                (f"  JupyterLab: {what}", _pct(keys, 0.5, "p50"), _pct(keys, 0.99, "p99"),
                 "same run"),
                ("  JupyterLab: both browsers converge on the 10,000 lines",
                 "yes" if converged_all else "NO", f"{slowest:.1f} s", "same run"),
            ]  # fmt: skip
        except Exception as exc:
            failed("stream", what, exc)
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


STREAM_CODE = "for i in range(10000):\n    print(i, flush=True)"


def stream_notebook() -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(STREAM_CODE), nbformat.v4.new_code_cell("")]
    return nbformat.writes(nb)


async def collab_streams(
    browser: Browser, base: str, cookies: tuple[str, str], pid: str, n: int, streams: int,
    label: str, notes: list[str],
) -> list[Row]:  # fmt: skip
    """stream_run `streams` times, each on a notebook of its own (stream{k}.ipynb, a new
    kernel each), Ada's keys of every stream together: p99 of one stream's 40-90 keys is
    its slowest key."""
    a_ctx = await context(browser, base, cookies[0])
    g_ctx = await context(browser, base, cookies[1])
    for ctx in (a_ctx, g_ctx):
        await ctx.add_init_script(INPUT_PROBE)
    a, g = await a_ctx.new_page(), await g_ctx.new_page()
    keys: list[float] = []
    converged_all, slowest = True, 0.0
    each: list[str] = []
    try:
        for k in range(streams):
            for p in (a, g):
                await p.goto(f"/projects/{pid}/files/stream{k}.ipynb")
                await p.wait_for_selector(EDITABLE["collab"], timeout=300_000)
            await asyncio.sleep(1)
            during, count, ms, same, seconds, tails = await stream_run(a, g, n)
            keys += during
            converged_all &= same
            slowest = max(slowest, seconds)
            each.append(f"{count} keys over {ms:.0f} ms, p99 {_pct(during, 0.99, '')}"
                        f"ended {tails} after {seconds:.0f} s")  # fmt: skip
    finally:
        await a_ctx.close()
        await g_ctx.close()
    notes.append(f"collab{label}: {streams} streams: " + "; ".join(each))
    return [
        (f"input latency while a cell prints 10,000 lines{label} (ms)",
         _pct(keys, 0.5, "p50"), _pct(keys, 0.99, "p99"), "p99 < 100"),
        (f"  both browsers converge on the 10,000 lines{label}",
         "yes" if converged_all else "NO", f"{slowest:.1f} s", "yes"),
    ]  # fmt: skip


async def setup(base: str, root: Path, files: dict[str, str]) -> tuple[tuple[str, str], str]:
    """Ada and Grace in one project holding `files`: their cookies and the project."""
    ada_cookie, _, ada_key = await signed_up(base, "ada")
    grace_cookie, grace_id, _ = await signed_up(base, "grace")
    async with Client(base.replace("http", "ws"), ada_key) as c:
        pid = str((await c.set("projects", {"title": "Bench"}))["project_id"])
        await c.set("project_users", {"project_id": pid, "account_id": grace_id})
    folder = root / "data" / "projects" / pid
    for name, text in files.items():
        await asyncio.to_thread((folder / name).write_text, text)
    return (ada_cookie, grace_cookie), pid


def _pct(values: list[float], q: float, label: str) -> str:
    return f"{benchlib.pct(values, q):.1f} {label}" if values else "no keys"


async def run(args: argparse.Namespace) -> None:
    load_before = benchlib.load()
    root = Path(tempfile.mkdtemp(prefix="collab-bench-nb-"))
    proc, base, _ = await start_server(root)
    rows: list[Row] = []
    # Which of collab's rows each JupyterLab row goes beside (the row's index).
    beside: dict[str, int] = {}
    jl: dict[str, list[Row]] = {}
    notes: list[str] = []
    n = 40 if args.quick else 120
    streams = args.streams or (2 if args.quick else 3)
    every = args.only == "all"
    try:
        files = {"nb50.ipynb": make_notebook(50), "nb2000.ipynb": make_notebook(2000)}
        for k in range(streams):
            files[f"stream{k}.ipynb"] = stream_notebook()
        cookies, pid = await setup(base, root, files)
        ada_cookie, grace_cookie = cookies

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
            )
            for name, label, target in (("nb50.ipynb", "50", "< 1000"),
                                        ("nb2000.ipynb", "2,000", "< 2000")) if every else ():  # fmt: skip
                url = f"/projects/{pid}/files/{name}"
                # The first open of a notebook loads its document from the file.
                await cold_load(browser, url, ada_cookie, base, "collab")
                loads = [
                    await cold_load(browser, url, ada_cookie, base, "collab")
                    for _ in range(3 if args.quick else 5)
                ]
                beside[f"load{label}"] = len(rows)
                rows.append((f"cold load to first cell editable, {label} cells (ms)",
                             f"{sorted(loads)[len(loads) // 2]:.0f} median",
                             f"{max(loads):.0f} max", target))  # fmt: skip

            if every:
                a_ctx = await context(browser, base, ada_cookie)
                g_ctx = await context(browser, base, grace_cookie)
                for ctx in (a_ctx, g_ctx):
                    await ctx.add_init_script(INPUT_PROBE)
                a, g = await a_ctx.new_page(), await g_ctx.new_page()

                await a.goto(f"/projects/{pid}/files/nb2000.ipynb")
                worst, p99 = await longest_frame(a, "collab")
                beside["scroll"] = len(rows)
                rows.append(("longest frame scrolling 2,000 cells end to end (ms)",
                             f"{worst:.1f} max", f"{p99:.1f} p99", "< 50"))  # fmt: skip

                for name, label in (("nb50.ipynb", "50"), ("nb2000.ipynb", "2,000")):
                    for p in (a, g):
                        await p.goto(f"/projects/{pid}/files/{name}")
                        await p.wait_for_selector(EDITABLE["collab"], timeout=300_000)
                    await g.wait_for_timeout(500)
                    typed = await type_in_first_cell(a, g, n, 30)
                    beside[f"typing{label}"] = len(rows)
                    rows.append((f"typing latency between two browsers, {label} cells (ms)",
                                 f"{benchlib.pct(typed, 0.5):.1f} p50",
                                 f"{benchlib.pct(typed, 0.99):.1f} p99",
                                 "p50 < 30; same as 50 cells"))  # fmt: skip
                    notes.append(f"{len(typed)}/{n} characters measured ({label} cells)")
                await a_ctx.close()
                await g_ctx.close()

            stream_rows = await collab_streams(browser, base, cookies, pid, n, streams, "", notes)
            rows.append(stream_rows[0])
            beside["stream"] = len(rows)
            rows.append(stream_rows[1])

            if every:
                # Baseline: the bare yjs + y-websocket client, two pages, same server.
                a_ctx = await context(browser, base, ada_cookie)
                g_ctx = await context(browser, base, grace_cookie)
                a, g = await a_ctx.new_page(), await g_ctx.new_page()
                bare = await bare_typing(a, g, root, pid, n)
                rows.append(("  baseline: typing, bare yjs + y-websocket (ms)",
                             f"{benchlib.pct(bare, 0.5):.1f} p50",
                             f"{benchlib.pct(bare, 0.99):.1f} p99", "same run"))  # fmt: skip
                await a_ctx.close()
                await g_ctx.close()

            proc.terminate()
            await asyncio.to_thread(proc.wait, 10)
            if not args.no_even_weight:
                # The same streams on a server whose projects weigh as much as the server
                # (sandbox_projects_cpu_weight 100, before its default became 10): how much
                # of the stream row is the kernel's lower CPU weight on these shared cores.
                even = root / "even"
                even.mkdir()
                proc, base, _ = await start_server(
                    even, {"COLLAB_SANDBOX_PROJECTS_CPU_WEIGHT": "100"}
                )
                cookies, pid = await setup(base, even, files)
                rows.extend(await collab_streams(
                    browser, base, cookies, pid, n, streams, ", projects at even CPU weight",
                    notes,
                ))  # fmt: skip
                proc.terminate()
                await asyncio.to_thread(proc.wait, 10)

            jupyter = os.environ.get("COLLAB_BENCH_JUPYTER") or shutil.which("jupyter")
            if jupyter:
                try:
                    jl = await jupyterlab_rows(
                        browser, jupyter, root, files, n, args.quick, streams, every, notes
                    )
                except Exception as exc:  # the comparison is optional
                    jl = {"": [("  JupyterLab", f"failed: {type(exc).__name__}", "",
                                str(exc)[:60])]}  # fmt: skip
            else:
                notes.append(
                    "JupyterLab not compared: no `jupyter` (set COLLAB_BENCH_JUPYTER to a "
                    "jupyter with jupyterlab + jupyter-collaboration installed)"
                )
            await browser.close()
    finally:
        if proc.poll() is None:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 10)
        shutil.rmtree(root, ignore_errors=True)

    table: list[Row] = []
    for i, row in enumerate(rows):
        table.append(row)
        for key, at in beside.items():
            if at == i:
                table.extend(jl.pop(key, []))
    for rest in jl.values():
        table.extend(rest)
    width = max(len(r[0]) for r in table)
    print(f"{'measure':<{width}}  {'value':>14}  {'':>12}  target")
    for name, v1, v2, target in table:
        print(f"{name:<{width}}  {v1:>14}  {v2:>12}  {target}")
    print(f"machine: {load_before} before, {benchlib.load()} after")
    for note in notes:
        print(f"({note})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only", choices=["all", "stream"], default="all", help="stream: only the stream rows"
    )
    parser.add_argument(
        "--streams", type=int, default=0, help="streams per side (default 3; --quick 2)"
    )
    parser.add_argument(
        "--no-even-weight",
        action="store_true",
        help="skip the stream rows on a server whose projects weigh as much as it does",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
