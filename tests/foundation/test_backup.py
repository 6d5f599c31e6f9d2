"""`collab backup` and `collab restore`: a server rebuilt from one file keeps accounts,
projects and project files."""

from __future__ import annotations

import asyncio
import sys
import tarfile

import asyncpg

from collab.db import embedded
from collab.projects.store import create_project
from tests.conftest import make_user


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collab.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_backup_then_restore_into_an_empty_server_keeps_everything(
    server, settings, pg_url, tmp_path
) -> None:
    user = await make_user(server, email="kept@example.com")
    project_id = await create_project(
        server.services.pool,
        settings.projects_dir,
        user_id := __import__("uuid").UUID(user.account_id),
        "Kept",
    )
    (settings.projects_dir / str(project_id) / "notes.txt").write_text("homework")
    archive = tmp_path / "backup.tar"
    code, out = await _cli(
        "backup",
        str(archive),
        "--database-url",
        settings.database_url,
        "--data-dir",
        str(settings.data_dir),
    )
    assert code == 0, out
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "manifest.json" in names and "database.dump" in names
    assert f"projects/{project_id}/notes.txt" in names

    target_db = f"restore_target_{id(tmp_path)}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{target_db}"')
    try:
        target_url = embedded.with_database(pg_url, target_db)
        target_dir = tmp_path / "restored"
        code, out = await _cli(
            "restore", str(archive), "--database-url", target_url, "--data-dir", str(target_dir)
        )
        assert code == 0, out
        conn = await asyncpg.connect(target_url)
        try:
            assert await conn.fetchval("SELECT email FROM accounts") == "kept@example.com"
            row = await conn.fetchrow(
                "SELECT title, account_id FROM projects JOIN project_users USING (project_id)"
            )
            assert row["title"] == "Kept" and row["account_id"] == user_id
        finally:
            await conn.close()
        assert (target_dir / "projects" / str(project_id) / "notes.txt").read_text() == "homework"

        # A second restore would wipe live accounts: refused without --yes.
        code, out = await _cli(
            "restore", str(archive), "--database-url", target_url, "--data-dir", str(target_dir)
        )
        assert code == 1 and "--yes" in out
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
        await admin.close()


async def test_restore_refuses_a_file_that_is_not_a_backup(settings, tmp_path) -> None:
    bogus = tmp_path / "bogus.tar"
    with tarfile.open(bogus, "w") as tar:
        tar.add(__file__, arcname="something.py")
    code, out = await _cli(
        "restore",
        str(bogus),
        "--database-url",
        settings.database_url,
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert code == 1 and "not a collab backup" in out


async def test_a_restored_server_keeps_sessions_valid_and_failed_sign_ins_forgotten(
    settings, pg_url, tmp_path
) -> None:
    import stat

    from collab.config import Settings
    from tests.conftest import serve

    settings = settings.replace(secret=None)  # generated into data_dir/secret, as by default
    email, password = "locked@example.com", "correct horse battery"
    async with serve(settings) as server:
        user = await make_user(server, email=email)
        async with server.client() as http:
            for _ in range(settings.login_max_failures_per_account):
                await http.post("/api/auth/login", json={"email": email, "password": "wrong"})
            r = await http.post("/api/auth/login", json={"email": email, "password": password})
            assert r.status_code == 429, r.text  # locked out on the old server
    archive = tmp_path / "backup.tar"
    code, out = await _cli(
        "backup", str(archive), "--database-url", settings.database_url,
        "--data-dir", str(settings.data_dir),
    )  # fmt: skip
    assert code == 0, out
    # Secret material: the signing secret and password hashes, readable by the owner only.
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        assert "secret" in tar.getnames()

    target_db = f"restore_secret_{id(tmp_path)}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{target_db}"')
    try:
        target_url = embedded.with_database(pg_url, target_db)
        target_dir = tmp_path / "restored"
        code, out = await _cli(
            "restore", str(archive), "--database-url", target_url, "--data-dir", str(target_dir)
        )
        assert code == 0, out
        assert stat.S_IMODE((target_dir / "secret").stat().st_mode) == 0o600
        restored = Settings(data_dir=target_dir, database_url=target_url)
        async with serve(restored) as server, server.client() as http:
            # The session cookie made on the old server is valid on the restored one...
            http.cookies.set("collab_session", user.cookie)
            r = await http.get("/api/auth/me")
            http.cookies.clear()
            assert r.status_code == 200, r.text
            assert r.json()["email"] == email
            # ...and the failed sign-ins did not come along: the account is not locked.
            r = await http.post("/api/auth/login", json={"email": email, "password": password})
            assert r.status_code == 200, r.text
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
        await admin.close()


def test_database_password_never_reaches_a_tool_command_line() -> None:
    from collab.backup import _without_password

    url, env = _without_password("postgresql://collab:s%40cret@/collab?host=/tmp/sock")
    assert "s@cret" not in url and "s%40cret" not in url
    assert url == "postgresql://collab@/collab?host=/tmp/sock"
    assert env["PGPASSWORD"] == "s@cret"
    plain, _ = _without_password("postgresql://postgres@127.0.0.1:5432/test")
    assert plain == "postgresql://postgres@127.0.0.1:5432/test"
