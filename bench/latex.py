"""Save-to-preview time of a LaTeX build through the server against `latexmk` alone,
measured in the same run. Prints a table.

    .venv/bin/python bench/latex.py [--runs 5] [--database-url postgresql://…]

A 10-page article with a figure and a bibliography. Each run edits the main file (a
save), then: through the server, `latex.build` on /ws → the `latex_builds` row
`succeeded` → the PDF fetched over HTTP; alone, the same latexmk command line (same
flags and environment, no sandbox) on a copy of the project, edited the same way.
The server runs in this process under uvicorn, with its default settings (including the
`latex_merge_ms` wait and the sandbox).
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


async def alone(folder: Path, runs: int) -> list[float]:
    env = {**os.environ, **runner.TEX_ENVIRONMENT}
    argv = ["latexmk", "-pdf", "-cd", "-synctex=1", "-interaction=nonstopmode"]
    argv += ["-file-line-error", "-no-shell-escape", "-outdir=.build", str(folder / "main.tex")]
    times = []
    for n in range(runs + 1):
        edit(folder / "main.tex", n)
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await proc.wait()
        assert (folder / ".build" / "main.pdf").exists()
        if n:  # the first run builds from nothing (BibTeX, three passes)
            times.append(time.perf_counter() - started)
    return times


# The build's own time (latexmk in the sandbox, as the row's `milliseconds` says) for
# each measured run through the server: the rest of the save-to-preview time is the server's.
in_sandbox: list[float] = []


async def through_server(settings: Settings, runs: int) -> list[float]:
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
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
            folder = store.project_dir(settings.projects_dir, project)
            write_project(folder)
            headers = {"Authorization": f"Bearer {key}"}
            args = {"project_id": str(project), "path": "main.tex"}
            times = []
            in_sandbox.clear()
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/ws", additional_headers=headers
            ) as ws:
                for n in range(runs + 1):
                    edit(folder / "main.tex", n)
                    started = time.perf_counter()
                    await ws.send(json.dumps({"id": n, "call": "latex.build", "args": args}))
                    build = json.loads(await ws.recv())["result"]["build"]
                    while True:
                        row = await services.pool.fetchrow(
                            """SELECT build, status, milliseconds FROM latex_builds
                               WHERE project_id = $1""",
                            project,
                        )
                        if row["build"] == build and row["status"] not in ("queued", "running"):
                            break
                        await asyncio.sleep(0.01)
                    assert row["status"] == "succeeded", row
                    pdf = await http.get(
                        f"/api/projects/{project}/latex/pdf",
                        params={"path": "main.tex"},
                        headers=headers,
                    )
                    assert pdf.status_code == 200
                    if n:
                        times.append(time.perf_counter() - started)
                        in_sandbox.append(row["milliseconds"] / 1000)
            return times
    finally:
        server.should_exit = True
        await task


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--merge-ms", type=int, default=Settings.latex_merge_ms)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    opts = parser.parse_args()
    name = f"collab_bench_latex_{os.getpid()}"
    admin = await asyncpg.connect(opts.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = embedded.with_database(opts.database_url, name)
    root = Path(tempfile.mkdtemp(prefix="collab-bench-latex-"))
    try:
        await migrate.migrate(url)
        settings = Settings(
            data_dir=root / "data", database_url=url, secret="bench", latex_merge_ms=opts.merge_ms
        )
        server = await through_server(settings, opts.runs)
        copy = root / "alone"
        write_project(copy)
        baseline = await alone(copy, opts.runs)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"save → preview, 10-page article with a figure and BibTeX, {opts.runs} runs, "
        f"latex_merge_ms {opts.merge_ms}"
    )
    print(f"{'':28} {'median s':>9} {'min s':>9}")
    for label, times in (("latexmk alone", baseline), ("through the server", server)):
        print(f"{label:28} {statistics.median(times):9.3f} {min(times):9.3f}")
    print(f"{'  of which latexmk in sandbox':28} {statistics.median(in_sandbox):9.3f}")
    ratio = statistics.median(server) / statistics.median(baseline)
    print(f"{'server / alone (median)':28} {ratio:9.2f}")
    print(os.getloadavg() and "machine load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    asyncio.run(main())
