"""One LaTeX build: `latexmk` in the project's sandbox with the engine the main file asks
for, TeX's file access held to the project, a time limit, and the log parsed. The build
is killed (its whole process group, and the sandbox's pid namespace with it) on timeout
or when the task running it is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from collab.latex import files, mainfile
from collab.latex.logparse import Parsed, parse_blg, parse_log
from collab.sandbox.jail import Jail

log = logging.getLogger(__name__)

# engine → (latexmk switch, the binary, the Debian package that has it)
ENGINES = {
    "pdflatex": ("-pdf", "pdflatex", "texlive-latex-base"),
    "xelatex": ("-xelatex", "xelatex", "texlive-xetex"),
    "lualatex": ("-lualatex", "lualatex", "texlive-luatex"),
}
BASE_PACKAGES = "texlive-latex-base latexmk"
_MAGIC = re.compile(r"%[ \t]*![ \t]*TeX[ \t]+(?:TS-)?program[ \t]*=[ \t]*([A-Za-z]+)\b.*", re.I)

# kpathsea reads these from the environment over texmf.cnf: `p` (paranoid) lets TeX open
# files only under the current directory (no absolute paths, no `..`, no dot files), so
# `\input{/etc/passwd}` finds nothing; shell escape off. Unwrapped log lines make every
# message one line for the parser.
TEX_ENVIRONMENT = {
    "openin_any": "p",
    "openout_any": "p",
    "shell_escape": "f",
    "max_print_line": "10000",
    "error_line": "254",
    "half_error_line": "238",
}
MAX_LOG = 16 * 1024 * 1024
MAX_OUTPUT = 64 * 1024


@dataclass
class Outcome:
    status: str  # "succeeded" | "failed"
    engine: str
    message: str = ""
    parsed: Parsed = field(default_factory=lambda: Parsed([], [], []))
    seconds: float = 0.0


def engine_for(head: str) -> str:
    """The engine a `% !TEX program = …` comment names (pdflatex when there is none)."""
    named = mainfile.magic(head, _MAGIC)
    return named.lower() if named else "pdflatex"


def missing_tex(engine: str) -> str | None:
    """Why this server cannot build with `engine`, naming what to install; None if it can."""
    if shutil.which("latexmk") is None or shutil.which("pdflatex") is None:
        return (
            "TeX is not installed on the server: an administrator installs the Debian "
            f"packages {BASE_PACKAGES} (apt-get install --no-install-recommends "
            f"{BASE_PACKAGES} texlive-latex-recommended texlive-fonts-recommended)"
        )
    _, binary, package = ENGINES[engine]
    if shutil.which(binary) is None:
        return (
            f"{binary} is not installed on the server: an administrator installs the "
            f"Debian package {package}"
        )
    return None


def command(jail: Jail, path: str, engine: str) -> list[str]:
    switch = ENGINES[engine][0]
    return jail.command(
        [
            "latexmk",
            switch,
            "-cd",  # runs in the main file's folder: its \input paths are relative to it
            "-synctex=1",
            "-interaction=nonstopmode",
            "-file-line-error",
            "-no-shell-escape",
            f"-outdir={files.OUTPUT_DIR}",
            f"{jail.home}/{path}",
        ]
    )


async def build(jail: Jail, path: str, timeout: float) -> Outcome:
    """Build the main file `path` (project-relative) in `jail`."""
    started = time.monotonic()
    head = await asyncio.to_thread(files.file_head, jail.directory, path)
    engine = engine_for(head)
    if engine not in ENGINES:
        return Outcome(
            "failed",
            engine,
            f"unknown TeX program {engine!r}: use {', '.join(ENGINES)}",
        )
    missing = missing_tex(engine)
    if missing is not None:
        return Outcome("failed", engine, missing)
    proc = await asyncio.create_subprocess_exec(
        *command(jail, path, engine),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd="/" if jail.isolated else str(jail.directory),
        env=jail.environment(TEX_ENVIRONMENT),
        start_new_session=True,
    )
    output = bytearray()
    try:
        try:
            await asyncio.wait_for(_drain(proc, output), timeout)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            outcome = await _read_outcome(jail, path, engine, False)
            outcome.status = "failed"
            outcome.message = f"the build ran longer than {timeout:g} s and was stopped"
            outcome.seconds = time.monotonic() - started
            return outcome
    except BaseException:
        _kill(proc)
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        raise
    ok = proc.returncode == 0
    outcome = await _read_outcome(jail, path, engine, ok)
    if outcome.status == "failed" and not outcome.parsed.errors:
        # No TeX error to show: what latexmk and TeX printed is the only trace.
        log.warning(
            "LaTeX build failed without a TeX error",
            extra={
                "event": "latex.failed_unparsed",
                "path": path,
                "returncode": proc.returncode,
                "output": output[-4000:].decode("utf-8", "replace"),
            },
        )
    if outcome.status == "failed" and not outcome.message:
        tail = output.decode("utf-8", "replace").strip().splitlines()[-5:]
        outcome.message = "the build failed" + (": " + " / ".join(tail) if tail else "")
    outcome.seconds = time.monotonic() - started
    return outcome


async def _drain(proc: Any, output: bytearray) -> None:
    # latexmk's own chatter, kept only as a tail: the log file has the messages.
    while chunk := await proc.stdout.read(65536):
        output += chunk
        if len(output) > MAX_OUTPUT:
            del output[: len(output) - MAX_OUTPUT]
    await proc.wait()


def _kill(proc: Any) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


async def _read_outcome(jail: Jail, path: str, engine: str, ok: bool) -> Outcome:
    parsed = await asyncio.to_thread(_parse_outputs, jail.directory, path, jail.home)
    pdf = await asyncio.to_thread(files.exists, jail.directory, files.outputs(path, ".pdf"))
    status = "succeeded" if ok and pdf else "failed"
    message = ""
    if status == "failed" and parsed.errors:
        first = parsed.errors[0]
        where = f"{first.file}:{first.line}: " if first.file and first.line else ""
        message = where + first.message
    return Outcome(status, engine, message, parsed)


def _parse_outputs(directory: Path, path: str, home: str) -> Parsed:
    parsed = Parsed([], [], [])
    log = files.read_inside(directory, files.outputs(path, ".log"), MAX_LOG)
    if log is not None:
        parse_log(log.decode("utf-8", "replace"), parsed)
    blg = files.read_inside(directory, files.outputs(path, ".blg"), MAX_LOG)
    if blg is not None:
        parse_blg(blg.decode("utf-8", "replace"), parsed)
    _relative(parsed, path, home)
    return parsed


def _relative(parsed: Parsed, path: str, home: str) -> None:
    """File names as the project knows them: TeX names inputs relative to the main
    file's folder (`./chap.tex`) or absolutely inside the sandbox (/home/user/…)."""
    folder = PurePosixPath(path).parent
    for msg in [*parsed.errors, *parsed.warnings, *parsed.badboxes]:
        if msg.file is not None:
            msg.file = project_path(msg.file, folder, home)


def project_path(name: str, folder: PurePosixPath, home: str) -> str:
    """A file name from TeX or SyncTeX as a project path; names outside the project (the
    TeX distribution's files) are kept as they are."""
    if name.startswith("/"):
        normal = os.path.normpath(name)
        if normal.startswith(home.rstrip("/") + "/"):
            return normal[len(home.rstrip("/")) + 1 :]
        return normal
    joined = os.path.normpath(str(folder / name))
    return joined if not joined.startswith("..") else name
