"""Which file to build when a user asks to build an `\\include`d one: the file itself
if it has a `\\documentclass`, else the file its `% !TEX root = …` comment names, else a
.tex file in its folder or the two above it that has a `\\documentclass` and inputs it."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from collab.latex import files
from collab.sync import paths

_ROOT = re.compile(r"%[ \t]*![ \t]*TeX[ \t]+root[ \t]*=[ \t]*(.+)", re.I)
_DOCUMENTCLASS = re.compile(r"^[^%\n]*\\documentclass", re.M)
MAX_CANDIDATES = 200
HEAD = 64 * 1024
LEVELS = 3  # the file's folder and the two above it


def find(root: Path, path: str) -> str:
    """The project path of the main file to build for `path` (itself when none other)."""
    head = files.file_head(root, path, HEAD)
    if _DOCUMENTCLASS.search(head):
        return path
    folder = PurePosixPath(path).parent
    named = magic(head, _ROOT)
    if named:
        target = os.path.normpath(str(folder / named))
        try:
            target = paths.normalize(target)
        except paths.BadPath:
            target = ""
        if target.endswith(".tex") and files.exists(root, target):
            return target
    for level in [folder, *folder.parents][:LEVELS]:
        for candidate in _tex_files(root, level):
            if candidate != path and _inputs(root, candidate, path):
                return candidate
    return path


def magic(head: str, pattern: re.Pattern[str]) -> str | None:
    """The value of the first `% !TeX key = value` comment `pattern` matches, read line
    by line (a regex over the whole head that may cross lines takes quadratic time on a
    file of blank lines, holding the GIL)."""
    for line in head.splitlines():
        text = line.strip()
        if text.startswith("%"):
            found = pattern.fullmatch(text)
            if found:
                return found.group(1).strip()
    return None


def _tex_files(root: Path, folder: PurePosixPath) -> list[str]:
    directory = root / folder
    try:
        if directory.is_symlink() or not directory.resolve().is_relative_to(root.resolve()):
            return []
        with os.scandir(directory) as entries:
            names = sorted(
                e.name
                for e in entries
                if e.name.endswith(".tex") and e.is_file(follow_symlinks=False)
            )
    except OSError:
        return []
    return [str(folder / name) for name in names[:MAX_CANDIDATES]]


def _inputs(root: Path, main: str, path: str) -> bool:
    text = files.file_head(root, main, HEAD)
    if not _DOCUMENTCLASS.search(text):
        return False
    name = os.path.relpath(path, str(PurePosixPath(main).parent) or ".")
    stem = name[: -len(".tex")] if name.endswith(".tex") else name
    pattern = r"\\(?:input|include|subfile)\s*\{\s*(?:\./)?" + re.escape(stem) + r"(?:\.tex)?\s*\}"
    return re.search(pattern, text) is not None
