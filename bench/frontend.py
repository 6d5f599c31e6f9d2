"""The browser app, measured in Debian's chromium (Playwright): cold load of a project
page to an editable document, typing latency between two browsers (app vs a bare
yjs + y-websocket page on the same server, in the same run), and the bundle's size.
Prints a table.

    .venv/bin/python bench/frontend.py [--quick]

Needs frontend/dist (make install builds it) and /usr/bin/chromium. The server runs as
`collab serve` with an embedded PostgreSQL in a temporary directory, or on
COLLAB_BENCH_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from collab.client import Client

ROOT = Path(__file__).resolve().parents[1]
FRONTEND = ROOT / "frontend"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # The bare page is fulfilled by Playwright (no server address): let it reach localhost.
    "--disable-features=LocalNetworkAccessChecks",
]  # fmt: skip

# A bare client: yjs + y-websocket, no app, no editor. It types by inserting into the
# shared Text; the other side notes when each character arrives.
BARE_ENTRY = """
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
const doc = new Y.Doc();
const p = new URLSearchParams(location.search);
const provider = new WebsocketProvider(`ws://${location.host}/yjs/${p.get("project")}`, p.get("path"), doc);
const text = doc.getText("source");
window.bench = { sent: [], got: [] };
text.observe(() => window.bench.got.push([text.length, performance.timeOrigin + performance.now()]));
provider.on("sync", (s) => { if (s) window.benchReady = true; });
window.benchType = async (n, gap) => {
  for (let i = 0; i < n; i++) {
    window.bench.sent.push([text.length + 1, performance.timeOrigin + performance.now()]);
    text.insert(text.length, "x");
    await new Promise((r) => setTimeout(r, gap));
  }
};
"""

# Installed in every app page: when keys go down in one page and when the editor shows
# one more typed "q" in another, on the wall clock both pages share. Marks are counted
# rather than characters, since collaborators' name labels sit inside the editor's text.
APP_PROBE = """
const marks = (el) => (el ? (el.textContent.match(/q/g) || []).length : 0);
window.bench = { sent: [], got: [] };
document.addEventListener("keydown", (e) => {
  if (e.key !== "q") return;
  const len = marks(document.querySelector(".cm-content"));
  window.bench.sent.push([len + 1, performance.timeOrigin + performance.now()]);
}, true);
new MutationObserver(() => {
  const el = document.querySelector(".cm-content");
  if (!el) return;
  if (window.benchLoaded === undefined && el.textContent.includes("bench")) window.benchLoaded = performance.now();
  const len = marks(el);
  const got = window.bench.got;
  if (!got.length || got[got.length - 1][0] !== len) got.push([len, performance.timeOrigin + performance.now()]);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


# Every request of the page (documents, scripts, styles, sockets are not resource
# entries, so the app's own marks of when /ws and /yjs opened are added).
WATERFALL = """
[...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
  .map((e) => [e.name.replace(location.origin, ""), e.startTime, e.responseEnd, e.transferSize || 0])
  .concat(performance.getEntriesByType("mark").map((m) => [m.name, m.startTime, m.startTime, 0]))
  .sort((a, b) => a[1] - b[1])
"""


def print_waterfall(entries: list[list[Any]], loaded: float) -> None:
    print(f"-- load: {loaded:.0f} ms")
    for name, start, end, size in entries:
        bar = f"{start:7.0f} → {end:7.0f} ms" if end != start else f"{start:7.0f}   (mark)  "
        print(f"   {bar}  {size / 1024:7.1f} KiB  {str(name)[:90]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def latencies(sent: list[list[float]], got: list[list[float]]) -> list[float]:
    """Per typed character: first time the reader's text reached that length, minus
    the time the writer typed it."""
    out = []
    for length, t0 in sent:
        arrived = [t for n, t in got if n >= length]
        if arrived:
            out.append(min(arrived) - t0)
    return out


def _spawn(
    root: Path, url: str, port: int, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "COLLAB_SECRET": "bench", "COLLAB_LOG_LEVEL": "warning", **(extra or {})}
    with open(root / "collab.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "collab.cli", "serve", "--data-dir", str(root / "data"),
             "--database-url", url, "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip


async def start_server(
    root: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    """A server of its own on `root` (settings in `env`, COLLAB_* variables)."""
    url = os.environ.get("COLLAB_BENCH_DATABASE_URL")
    if url is None:
        from collab.db import embedded

        maintenance = embedded.start(root / "pgdata", delete_on_exit=True)
        url = await embedded.ensure_database(maintenance, "bench_frontend")
    port = free_port()
    proc = await asyncio.to_thread(_spawn, root, url, port, env)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError("collab serve exited; see " + str(root / "collab.log"))
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(base + "/healthz", timeout=1)).status_code == 200:
                    break
            await asyncio.sleep(0.1)
    return proc, base, url


async def signed_up(base: str, name: str) -> tuple[str, str, str]:
    """(session cookie, account id, API key) of a new account."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        r = await client.post(
            "/api/auth/signup",
            json={"email": f"{name}-{uuid.uuid4().hex[:6]}@example.com",
                  "password": "correct horse battery", "name": name},
        )  # fmt: skip
        r.raise_for_status()
        key = (await client.post("/api/auth/keys", json={"name": "bench"})).json()["key"]
        return r.cookies["collab_session"], r.json()["account_id"], key


async def bare_typing(a: Page, g: Page, root: Path, pid: str, n: int) -> list[float]:
    """The baseline: page `a` inserts n characters, 30 ms apart, into a bare Y.Text over
    y-websocket (no editor); each one's latency to `g`'s document (ms)."""
    js = await asyncio.to_thread(bare_bundle, root)
    for p in (a, g):
        await p.route(
            "**/bench-bare.js",
            lambda route: route.fulfill(body=js, content_type="text/javascript"),
        )
        await p.route(
            "**/bench-bare.html*",
            lambda route: route.fulfill(
                body='<script type="module" src="/bench-bare.js"></script>',
                content_type="text/html",
            ),
        )
        await p.goto(f"/bench-bare.html?project={pid}&path=bare.md")
        await p.wait_for_function("() => window.benchReady === true", timeout=30000)
    await a.evaluate(f"window.benchType({n}, 30)")
    await asyncio.sleep(1)
    return latencies(await a.evaluate("window.bench.sent"), await g.evaluate("window.bench.got"))


async def context(browser: Browser, base: str, cookie: str) -> BrowserContext:
    # No service worker: the bare page is served by page.route, which a worker would bypass.
    ctx = await browser.new_context(
        base_url=base, viewport={"width": 1280, "height": 800}, service_workers="block"
    )
    await ctx.add_cookies([{"name": "collab_session", "value": cookie, "url": base}])
    await ctx.add_init_script(APP_PROBE)
    return ctx


def bare_bundle(tmp: Path) -> str:
    """The bare client, bundled from the app's own node_modules (read from stdin, so
    imports resolve from frontend/)."""
    out = tmp / "bare.out.js"
    esbuild = FRONTEND / "node_modules" / ".bin" / "esbuild"
    subprocess.run(
        [str(esbuild), "--bundle", "--format=esm", "--minify", f"--outfile={out}"],
        input=BARE_ENTRY.encode(), check=True, cwd=FRONTEND,
    )  # fmt: skip
    return out.read_text()


async def type_app(writer: Page, reader: Page, n: int, gap_ms: int) -> list[float]:
    await writer.locator(".cm-content").click()
    await writer.keyboard.press("Control+End")
    await reader.evaluate("window.bench.got = []")
    for _ in range(n):
        await writer.keyboard.type("q")
        await asyncio.sleep(gap_ms / 1000)
    await asyncio.sleep(1)
    sent = await writer.evaluate("window.bench.sent")
    got = await reader.evaluate("window.bench.got")
    return latencies(sent, got)


def screen_rows(stats: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """What opening a screen first loads beyond the initial JavaScript (build.mjs
    measures each lazy module's chunks, less those already loaded)."""
    lazy = stats.get("lazy_js_gzip_bytes", {})
    text = lazy.get("src/editors/text.ts")
    rows = []
    if text is not None:
        rows.append(("text editor screen, gzipped (KiB)", f"{text / 1024:.1f}", "", "lazy"))
    latex, pdf = lazy.get("src/latex/screen.ts"), lazy.get("src/latex/pdf.ts")
    if latex is not None and text is not None:
        rows.append(("LaTeX screen over the editor, gzipped (KiB)",
                     f"{(latex - text) / 1024:.1f}", "", "lazy"))  # fmt: skip
    if pdf is not None:
        worker = stats.get("pdf_worker_gzip_bytes", 0)
        rows.append(("pdf.js + its worker, gzipped (KiB)", f"{pdf / 1024:.1f}",
                     f"+ {worker / 1024:.1f}", "lazy, LaTeX only"))  # fmt: skip
    return rows


async def run(args: argparse.Namespace) -> None:
    stats = json.loads(await asyncio.to_thread((FRONTEND / "dist" / "build.json").read_text))
    root = Path(tempfile.mkdtemp(prefix="collab-bench-fe-"))
    proc, base, _ = await start_server(root)
    try:
        ada_cookie, _, ada_key = await signed_up(base, "ada")
        grace_cookie, grace_id, _ = await signed_up(base, "grace")
        async with Client(base.replace("http", "ws"), ada_key) as c:
            pid = str((await c.set("projects", {"title": "Bench"}))["project_id"])
            await c.set("project_users", {"project_id": pid, "account_id": grace_id})
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
            )
            doc = root / "data" / "projects" / pid / "notes.md"
            await asyncio.to_thread(doc.write_text, "# bench\n\n" + "Some text to load.\n" * 200)

            loads = []
            for _ in range(args.loads or (3 if args.quick else 7)):
                ctx = await context(browser, base, ada_cookie)
                p = await ctx.new_page()
                await p.goto(f"/projects/{pid}/files/notes.md")
                await p.wait_for_function("() => window.benchLoaded !== undefined", timeout=30000)
                loads.append(await p.evaluate("window.benchLoaded"))
                if args.waterfall:
                    print_waterfall(await p.evaluate(WATERFALL), loads[-1])
                await ctx.close()

            a_ctx = await context(browser, base, ada_cookie)
            g_ctx = await context(browser, base, grace_cookie)
            a = await a_ctx.new_page()
            g = await g_ctx.new_page()
            # A short document: CodeMirror renders only the lines in view.
            typing = root / "data" / "projects" / pid / "typing.md"
            await asyncio.to_thread(typing.write_text, "# bench\n\n")
            for p in (a, g):
                await p.goto(f"/projects/{pid}/files/typing.md")
                await p.wait_for_function("() => window.benchLoaded !== undefined", timeout=30000)
            n = 40 if args.quick else 150
            app = await type_app(a, g, n, 30)

            bare = await bare_typing(a, g, root, pid, n)
            await browser.close()
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)
        shutil.rmtree(root, ignore_errors=True)

    total = sum(f.stat().st_size for f in (FRONTEND / "dist" / "assets").glob("*.gz"))
    rows = [
        ("cold load to editable document (ms)", f"{statistics.median(loads):.0f} median",
         f"{max(loads):.0f} max", "< 1000"),
        ("typing latency, app (ms)", f"{pct(app, 0.5):.1f} p50", f"{pct(app, 0.99):.1f} p99",
         "p50 < 30, p99 < 100"),
        ("typing latency, bare yjs + y-websocket (ms)", f"{pct(bare, 0.5):.1f} p50",
         f"{pct(bare, 0.99):.1f} p99", "baseline"),
        ("initial JavaScript, gzipped (KiB)", f"{stats['initial_js_gzip_bytes'] / 1024:.1f}",
         "", "< 400"),
        *screen_rows(stats),
        ("all assets incl. lazy, gzipped (KiB)", f"{total / 1024:.1f}", "", ""),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>14}  {'':>12}  target")
    for name, v1, v2, target in rows:
        print(f"{name:<{width}}  {v1:>14}  {v2:>12}  {target}")
    print(f"({len(app)} / {len(bare)} characters measured; loads: {[round(x) for x in loads]})")
    one, five, fifteen = os.getloadavg()
    print(f"(machine load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer loads and keystrokes")
    parser.add_argument("--loads", type=int, default=0, help="cold loads to measure")
    parser.add_argument(
        "--waterfall", action="store_true", help="print every cold load's requests and marks"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
