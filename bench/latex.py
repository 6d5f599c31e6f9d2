"""Save-to-preview time of a LaTeX build through the server against `latexmk` alone,
measured in the same run, taking turns. Prints a table.

    .venv/bin/python bench/latex.py [--runs 9] [--rounds 3] [--database-url postgresql://…]

A 10-page article with a figure and a bibliography. Each run edits the main file (a
save), then: through the server, `latex.build` on /ws → the `latex_builds` row
`succeeded` on its changefeed → the PDF fetched over HTTP; alone, the same latexmk
command line (same flags and environment, no sandbox) on a copy of the project, edited
the same way. The server runs in this process under uvicorn, with its default settings
(including the `latex_merge_ms` wait and the sandbox); each round is a fresh server
and database, and the table gives each round's medians and their median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import struct
import tempfile
import time
import zlib
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx
import uvicorn
import websockets

from collab.app import create_app
from collab.config import Settings
from collab.db import embedded, migrate
from collab.latex import runner
from collab.projects import store

PARAGRAPH = (
    "Collaborative editing lets several authors work on one document at once. "
    "Each change is merged without conflicts, and the build shows the result. "
) * 6


def article() -> str:
    sections = []
    for n in range(1, 13):
        body = "\n\n".join(PARAGRAPH for _ in range(4))
        sections.append(f"\\section{{Part {n}}}\\label{{sec:{n}}}\n{body}\n")
    return (
        "\\documentclass{article}\n\\usepackage{amsmath,graphicx,hyperref}\n"
        "\\begin{document}\n\\title{Bench}\\author{collab}\\maketitle\n"
        "See Section~\\ref{sec:3} and \\cite{knuth84,lamport94}.\n"
        "\\begin{figure}[h]\\centering\\includegraphics[width=4cm]{figure}"
        "\\caption{A figure}\\end{figure}\n"
        "\\begin{equation} e^{i\\pi} + 1 = 0 \\end{equation}\n"
        + "\n".join(sections)
        + "\\bibliographystyle{plain}\n\\bibliography{refs}\n%EDIT\n\\end{document}\n"
    )


REFS = """@article{knuth84, author = {Donald Knuth}, title = {Literate Programming},
  journal = {The Computer Journal}, year = 1984}
@book{lamport94, author = {Leslie Lamport}, title = {LaTeX: A Document Preparation
  System}, publisher = {Addison-Wesley}, year = 1994}
"""


def png(width: int = 64, height: int = 64) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes((x * 4) % 256 for x in range(width * 3)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def write_project(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.tex").write_text(article())
    (folder / "refs.bib").write_text(REFS)
    (folder / "figure.png").write_bytes(png())


def edit(path: Path, n: int) -> None:
    text = path.read_text().replace("%EDIT", f"Edit {n}.\n%EDIT")
    path.write_text(text)


ALONE_ARGV = ["latexmk", "-pdf", "-cd", "-synctex=1", "-interaction=nonstopmode"]
ALONE_ARGV += ["-file-line-error", "-no-shell-escape", "-outdir=.build"]


async def alone(folder: Path, n: int) -> float:
    """One save → PDF with latexmk alone: the same flags and TeX environment, no server."""
    env = {**os.environ, **runner.TEX_ENVIRONMENT}
    edit(folder / "main.tex", n)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *ALONE_ARGV,
        str(folder / "main.tex"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0 and (folder / ".build" / "main.pdf").exists()
    return elapsed


async def interleaved(settings: Settings, folder: Path, runs: int) -> dict[str, list[float]]:
    """`runs` saves through the server and as many with latexmk alone, taking turns (which
    goes first alternates), so both see the same machine. Through the server a save is
    measured as the browser sees it: the edit written, `latex.build` sent, the build's
    row `succeeded` on the latex_builds changefeed, the PDF fetched over HTTP."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    times: dict[str, list[float]] = {"server": [], "sandbox": [], "alone": []}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            r = await http.post(
                "/api/auth/signup",
                json={"email": "b@example.com", "password": "correct horse battery"},
            )
            account = UUID(r.json()["account_id"])
            key = (await http.post("/api/auth/keys", json={})).json()["key"]
            services = app.state.services
            project = await store.create_project(
                services.pool, settings.projects_dir, account, "bench"
            )
            project_folder = store.project_dir(settings.projects_dir, project)
            write_project(project_folder)
            headers = {"Authorization": f"Bearer {key}"}
            args = {"project_id": str(project), "path": "main.tex"}
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/ws", additional_headers=headers
            ) as ws:
                query = {"latex_builds": [{"project_id": str(project), "path": None,
                                           "build": None, "status": None,
                                           "milliseconds": None}]}  # fmt: skip
                await ws.send(json.dumps({"id": "feed", "query": query, "changes": True}))
                json.loads(await ws.recv())

                async def through_server(n: int) -> tuple[float, float]:
                    edit(project_folder / "main.tex", n)
                    started = time.perf_counter()
                    await ws.send(json.dumps({"id": n, "call": "latex.build", "args": args}))
                    build = None
                    while True:
                        msg = json.loads(await ws.recv())
                        if msg.get("id") == n:
                            build = msg["result"]["build"]
                            continue
                        row = msg.get("new_val") or {}
                        if (
                            build is not None
                            and row.get("build") == build
                            and row.get("status") not in ("queued", "running")
                        ):
                            break
                    assert row["status"] == "succeeded", row
                    pdf = await http.get(
                        f"/api/projects/{project}/latex/pdf",
                        params={"path": "main.tex"},
                        headers=headers,
                    )
                    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
                    return time.perf_counter() - started, row["milliseconds"] / 1000

                # The first build of each is from nothing (BibTeX, three passes): unmeasured.
                await through_server(0)
                await alone(folder, 0)
                for n in range(1, runs + 1):
                    for which in ("server", "alone") if n % 2 else ("alone", "server"):
                        if which == "server":
                            total, sandbox = await through_server(n)
                            times["server"].append(total)
                            times["sandbox"].append(sandbox)
                        else:
                            times["alone"].append(await alone(folder, n))
            return times
    finally:
        server.should_exit = True
        await task


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9, help="saves of each kind per round")
    parser.add_argument("--rounds", type=int, default=3, help="fresh servers, for medians")
    parser.add_argument("--merge-ms", type=int, default=Settings.latex_merge_ms)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    opts = parser.parse_args()
    load_before = os.getloadavg()
    rows = []
    for _ in range(opts.rounds):
        name = f"collab_bench_latex_{os.getpid()}"
        admin = await asyncpg.connect(opts.database_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = embedded.with_database(opts.database_url, name)
        root = Path(tempfile.mkdtemp(prefix="collab-bench-latex-"))
        try:
            await migrate.migrate(url)
            settings = Settings(
                data_dir=root / "data",
                database_url=url,
                secret="bench",
                latex_merge_ms=opts.merge_ms,
            )
            copy = root / "alone"
            write_project(copy)
            rows.append(await interleaved(settings, copy, opts.runs))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"save → preview, 10-page article with a figure and BibTeX; {opts.rounds} rounds of "
        f"{opts.runs} saves each way, taking turns; latex_merge_ms {opts.merge_ms}"
    )
    print(
        f"{'':34} " + " ".join(f"{f'round {i + 1}':>9}" for i in range(opts.rounds)) + "   median"
    )
    med = statistics.median
    lines = (
        ("latexmk alone (s, median)", [med(r["alone"]) for r in rows]),
        ("through the server (s, median)", [med(r["server"]) for r in rows]),
        ("  of which latexmk in sandbox", [med(r["sandbox"]) for r in rows]),
        ("server / alone (of the medians)", [med(r["server"]) / med(r["alone"]) for r in rows]),
        # Each save through the server against the save alone next to it in time: a drift
        # of the machine's speed during a round falls on both.
        (
            "server / alone (median of pairs)",
            [med(s / a for s, a in zip(r["server"], r["alone"], strict=True)) for r in rows],
        ),
    )
    for label, values in lines:
        print(f"{label:34} " + " ".join(f"{v:9.3f}" for v in values) + f" {med(values):8.3f}")
    after = os.getloadavg()
    print(f"machine load before {load_before[0]:.2f}, after {after[0]:.2f} (1-minute average)")


if __name__ == "__main__":
    asyncio.run(main())
