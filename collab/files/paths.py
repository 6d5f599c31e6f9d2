"""Client paths of files and folders: checked by collab.sync.paths' rules, resolved with
symlinks inside the project directory, and errors as the stable `bad_path` code."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from collab.errors import ApiError
from collab.projects.store import project_dir
from collab.sync.paths import BadPath, normalize


def checked(raw: Any, name: str = "path") -> str:
    if not isinstance(raw, str):
        raise ApiError("bad_args", f"`{name}` is a string")
    try:
        return normalize(raw)
    except BadPath as err:
        raise ApiError("bad_path", str(err)) from None


def project_root(projects_dir: Path, project_id: UUID) -> Path:
    root = project_dir(projects_dir, project_id)
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def inside(root: Path, path: str, *, follow: bool = True) -> Path:
    """The file for `path` under `root`. With follow=False the last component is not
    resolved, so a symlink itself can be renamed or deleted (never what it points to)."""
    target = root / path
    try:
        parent = target.parent.resolve()
    except RuntimeError:  # a symlink loop
        raise ApiError("bad_path", "the path goes round a loop of links") from None
    if not (parent == root or parent.is_relative_to(root)):
        raise ApiError("bad_path", "the path leaves the project")
    full = parent / target.name
    if follow:
        try:
            resolved = full.resolve()
        except RuntimeError:
            raise ApiError("bad_path", "the path goes round a loop of links") from None
        if resolved == root or not resolved.is_relative_to(root):
            raise ApiError("bad_path", "the path leaves the project")
        return resolved
    return full
