"""Document paths: the one place that turns a client's path into a file in a project's
directory, refusing anything that could leave it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from uuid import UUID

from collab.projects.store import project_dir

MAX_PATH_LENGTH = 1024
# File systems refuse longer names (NAME_MAX) with an error, not a client's mistake.
MAX_SEGMENT_BYTES = 255


class BadPath(ValueError):
    """A path that is empty, absolute, escapes the project or contains NUL."""


def normalize(path: str) -> str:
    """The canonical document name, or BadPath. One document has one name: no `.`,
    `..` or empty segments, so `a//b` and `a/./b` are refused rather than aliased."""
    if not isinstance(path, str) or not path:
        raise BadPath("a path is 1 to 1024 bytes")
    try:
        # Strict UTF-8: a lone surrogate ("\\ud800") is no file name.
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadPath("a path is valid Unicode text") from None
    if size > MAX_PATH_LENGTH:
        raise BadPath("a path is 1 to 1024 bytes")
    if "\x00" in path or "\\" in path:
        raise BadPath("a path contains no NUL or backslash")
    if path.startswith("/"):
        raise BadPath("a path is relative to the project")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BadPath("a path has no empty, '.' or '..' segments")
    if any(len(part.encode("utf-8")) > MAX_SEGMENT_BYTES for part in parts):
        raise BadPath(f"a path segment is at most {MAX_SEGMENT_BYTES} bytes")
    return str(PurePosixPath(*parts))


def resolve(projects_dir: Path, project_id: UUID, path: str) -> Path:
    """The file for a document, checked after following symlinks (a link that points
    out of the project is refused)."""
    root = project_dir(projects_dir, project_id).resolve()
    target = (root / normalize(path)).resolve()
    if target == root or not target.is_relative_to(root):
        raise BadPath("the path leaves the project")
    if target.is_dir():
        raise BadPath("the path is a directory")
    return target
