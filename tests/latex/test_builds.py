"""LaTeX builds through /ws with real TeX in the project's sandbox: a PDF served to
members with an ETag, errors with their file and line, TeX held to the project, the
timeout, merged requests, cancelling, and SyncTeX both ways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from typing import Any
from uuid import UUID

from tests.conftest import make_user, ws_connect
from tests.latex.conftest import ARTICLE, CHAPTER, finished, put, row
from tests.sync.yclient import connect


def _args(project: Any, path: str = "paper/main.tex", **extra: Any) -> dict[str, Any]:
    return {"project_id": str(project), "path": path, **extra}


async def test_an_article_builds_and_its_pdf_is_served_to_members_with_an_etag(
    server, user, project
):
    put(server, project, "paper/main.tex", ARTICLE)
    put(server, project, "paper/chapter.tex", CHAPTER)
    async with ws_connect(server, user.key) as ws:
        answer = (await ws.call("latex.build", _args(project)))["result"]
    assert answer["status"] == "queued"
    done = await finished(server, project, "paper/main.tex", answer["build"])
    assert done["status"] == "succeeded", (done["message"], done["errors"])
    assert done["errors"] == [] and done["engine"] == "pdflatex"
    assert done["pdf"] == "paper/.build/main.pdf"
    assert done["requested_by"] == [user.account_id]
    assert done["milliseconds"] > 0 and done["finished"] >= done["started"]
    url = f"/api/projects/{project}/latex/pdf"
    auth = {"Authorization": f"Bearer {user.key}"}
    async with server.client() as http:
        r = await http.get(url, params={"path": "paper/main.tex"}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pdf"
        assert r.content.startswith(b"%PDF-")
        etag = r.headers["etag"]
        again = await http.get(
            url, params={"path": "paper/main.tex"}, headers={**auth, "If-None-Match": etag}
        )
        assert again.status_code == 304 and again.content == b""
        stale = await http.get(
            url, params={"path": "paper/main.tex"}, headers={**auth, "If-None-Match": '"x"'}
        )
        assert stale.status_code == 200 and stale.content == r.content
        # A rebuild after an edit makes a new PDF, and a new ETag.
        put(server, project, "paper/chapter.tex", CHAPTER + "\nOne more line.\n")
        async with ws_connect(server, user.key) as ws:
            second = (await ws.call("latex.build", _args(project)))["result"]
        assert second["build"] == answer["build"] + 1
        rebuilt = await finished(server, project, "paper/main.tex", second["build"])
        assert rebuilt["status"] == "succeeded", (rebuilt["message"], rebuilt["errors"])
        fresh = await http.get(
            url, params={"path": "paper/main.tex"}, headers={**auth, "If-None-Match": etag}
        )
        assert fresh.status_code == 200 and fresh.headers["etag"] != etag
        missing = await http.get(url, params={"path": "paper/none.tex"}, headers=auth)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_pdf"
        escape = await http.get(url, params={"path": "../x.tex"}, headers=auth)
        assert escape.json()["error"]["code"] == "bad_path"
        anonymous = await http.get(url, params={"path": "paper/main.tex"})
        assert anonymous.status_code == 401


async def test_an_error_fails_the_build_with_its_file_and_line(server, user, project):
    put(server, project, "bad.tex", "\\documentclass{article}\n\\begin{document}\nok\n")
    put(server, project, "part.tex", "fine\n\n\\undefinedmacro\n")
    with_part = "\\documentclass{article}\n\\begin{document}\nok\n\\input{part}\n\\end{document}\n"
    put(server, project, "bad.tex", with_part)
    async with ws_connect(server, user.key) as ws:
        build = (await ws.call("latex.build", _args(project, "bad.tex")))["result"]["build"]
    done = await finished(server, project, "bad.tex", build)
    assert done["status"] == "failed", dict(done)
    first = done["errors"][0]
    assert (first["file"], first["line"]) == ("part.tex", 3), done["errors"]
    assert first["message"] == "Undefined control sequence."
    assert done["message"] == "part.tex:3: Undefined control sequence."


async def test_tex_cannot_read_outside_the_project(server, user, project):
    doc = "\\documentclass{article}\n\\begin{document}\n\\input{/etc/passwd}\n\\end{document}\n"
    put(server, project, "leak.tex", doc)
    async with ws_connect(server, user.key) as ws:
        build = (await ws.call("latex.build", _args(project, "leak.tex")))["result"]["build"]
    done = await finished(server, project, "leak.tex", build)
    assert done["status"] == "failed", dict(done)
    assert any(
        "/etc/passwd" in e["message"] and "not found" in e["message"] for e in done["errors"]
    )
    assert done["pdf"] is None


async def test_shell_escape_and_writes_outside_the_project_do_nothing(
    server, user, project, tmp_path
):
    """`\\write18` runs no command (shell escape is off), and TeX cannot open a file for
    writing outside the project: the build stops there with the error on its line."""
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)
    doc = (
        "\\documentclass{article}\n\\begin{document}\nHello.\n"
        f"\\immediate\\write18{{touch {outside}/by-shell}}\n"
        "\\immediate\\write18{touch by-shell-here}\n"
        "\\newwrite\\out\n"
        f"\\immediate\\openout\\out={outside}/by-tex.txt\n"
        "\\immediate\\write\\out{written}\n\\immediate\\closeout\\out\n"
        "\\end{document}\n"
    )
    put(server, project, "escape.tex", doc)
    async with ws_connect(server, user.key) as ws:
        build = (await ws.call("latex.build", _args(project, "escape.tex")))["result"]["build"]
    done = await finished(server, project, "escape.tex", build)
    assert done["status"] == "failed", dict(done)
    assert any(
        e["line"] == 7 and "can't write on file" in e["message"] and "by-tex.txt" in e["message"]
        for e in done["errors"]
    ), done["errors"]
    assert list(outside.iterdir()) == []
    # The shell commands came first (lines 4 and 5) and ran nowhere, in the project neither.
    root = server.services.settings.projects_dir / str(project)
    assert not list(root.rglob("by-shell*"))


async def test_a_build_that_loops_forever_is_killed_at_the_timeout(server, user, project):
    object.__setattr__(server.services.settings, "latex_timeout_seconds", 3)
    put(server, project, "loop.tex", "\\def\\a{\\a}\\a\n")
    async with ws_connect(server, user.key) as ws:
        build = (await ws.call("latex.build", _args(project, "loop.tex")))["result"]["build"]
    done = await finished(server, project, "loop.tex", build)
    assert done["status"] == "failed"
    assert done["message"] == "the build ran longer than 3 s and was stopped"
    assert server.services.extra["latex"].get(project, "loop.tex") is None


async def test_two_requests_at_once_make_one_build_for_both(server, user, project):
    friend = await make_user(server)
    await server.services.pool.execute(
        "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, 'collaborator')",
        project,
        UUID(friend.account_id),
    )
    put(server, project, "paper/main.tex", ARTICLE)
    put(server, project, "paper/chapter.tex", CHAPTER)
    builds = server.services.extra["latex"]
    runs = builds.runs
    async with ws_connect(server, user.key) as a, ws_connect(server, friend.key) as b:
        first, second = await asyncio.gather(
            a.call("latex.build", _args(project)), b.call("latex.build", _args(project))
        )
    assert first["result"]["build"] == second["result"]["build"]
    done = await finished(server, project, "paper/main.tex", first["result"]["build"])
    assert done["status"] == "succeeded"
    assert sorted(done["requested_by"]) == sorted([user.account_id, friend.account_id])
    assert builds.runs == runs + 1


async def test_requests_at_once_with_no_merge_wait_make_one_build(server, user, project):
    """With no merge window the first request starts its build at once; the others,
    arriving while it runs with nothing changed, join it."""
    object.__setattr__(server.services.settings, "latex_merge_ms", 0)
    put(server, project, "paper/main.tex", ARTICLE)
    put(server, project, "paper/chapter.tex", CHAPTER)
    builds = server.services.extra["latex"]
    runs = builds.runs
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(ws_connect(server, user.key)) for _ in range(5)]
        answers = await asyncio.gather(*(c.call("latex.build", _args(project)) for c in conns))
    numbers = {a["result"]["build"] for a in answers}
    assert len(numbers) == 1, answers
    done = await finished(server, project, "paper/main.tex", numbers.pop())
    assert done["status"] == "succeeded"
    assert builds.runs == runs + 1


async def test_an_edited_document_during_a_build_restarts_it(server, user, project):
    """An edit through /yjs (not yet in the file) counts as a change: the build restarts
    and the PDF has the edit."""
    object.__setattr__(server.services.settings, "latex_merge_ms", 0)
    put(server, project, "paper/main.tex", ARTICLE)
    put(server, project, "paper/chapter.tex", CHAPTER)
    async with (
        ws_connect(server, user.key) as ws,
        connect(server, project, "paper/chapter.tex", user.key) as doc,
    ):
        await asyncio.wait_for(doc.synced.wait(), 20)
        first = (await ws.call("latex.build", _args(project)))["result"]["build"]
        await _running(server, project, "paper/main.tex", first)
        doc.text.insert(0, "Edited while building. ")
        await doc.wait_acked()
        second = (await ws.call("latex.build", _args(project)))["result"]
        assert second["build"] == first + 1 and second["status"] == "queued"
        done = await finished(server, project, "paper/main.tex", second["build"])
    assert done["status"] == "succeeded"


async def test_a_request_during_a_build_cancels_it_and_stop_cancels_without_a_new_one(
    server, user, project
):
    put(server, project, "loop.tex", "\\def\\a{\\a}\\a\n")
    builds = server.services.extra["latex"]
    async with ws_connect(server, user.key) as ws:
        first = (await ws.call("latex.build", _args(project, "loop.tex")))["result"]["build"]
        await _running(server, project, "loop.tex", first)
        # Nothing changed: the request joins the build under way.
        again = (await ws.call("latex.build", _args(project, "loop.tex")))["result"]
        assert again == {"path": "loop.tex", "build": first, "status": "running"}
        # An edit since the build read its files: the request restarts it.
        put(server, project, "loop.tex", "% edited\n\\def\\a{\\a}\\a\n")
        second = (await ws.call("latex.build", _args(project, "loop.tex")))["result"]["build"]
        assert second == first + 1
        assert (await row(server, project, "loop.tex"))["build"] == second
        await _running(server, project, "loop.tex", second)
        stopped = await ws.call("latex.stop", _args(project, "loop.tex"))
        assert stopped["result"] == {"build": second, "status": "cancelled"}
        done = await row(server, project, "loop.tex")
        assert (done["build"], done["status"]) == (second, "cancelled")
        assert builds.get(project, "loop.tex") is None
        nothing = await ws.call("latex.stop", _args(project, "loop.tex"))
        assert nothing["error"]["code"] == "no_build"


async def _running(server: Any, project: Any, path: str, build: int) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        found = await row(server, project, path)
        if found["build"] == build and found["status"] == "running":
            return
        assert asyncio.get_running_loop().time() < deadline, dict(found)
        await asyncio.sleep(0.05)


async def test_members_follow_a_build_on_the_changefeed(server, user, project):
    put(server, project, "paper/main.tex", ARTICLE)
    put(server, project, "paper/chapter.tex", CHAPTER)
    query = {"latex_builds": [{"project_id": None, "path": None, "status": None, "errors": None}]}
    stranger = await make_user(server)
    async with ws_connect(server, user.key) as ws, ws_connect(server, stranger.key) as other:
        answer = await ws.request({"query": query, "changes": True})
        assert answer["result"] == {"latex_builds": []}
        outsider = await other.request({"query": query, "changes": True})
        # Sent raw: WsClient.call would drop feed events that arrive before its answer.
        await ws.send_raw(json.dumps({"id": 999, "call": "latex.build", "args": _args(project)}))
        seen: list[str] = []
        deadline = asyncio.get_running_loop().time() + 120
        while "succeeded" not in seen:
            left = deadline - asyncio.get_running_loop().time()
            msg = json.loads(await asyncio.wait_for(ws.conn.recv(), left))
            if msg.get("feed") == answer["feed"] and msg.get("new_val"):
                seen.append(msg["new_val"]["status"])
        assert seen[0] == "queued" and "running" in seen, seen
        assert outsider["result"] == {"latex_builds": []}
        write = await ws.request(
            {"query": {"latex_builds": {"project_id": str(project), "path": "x.tex"}}}
        )
        assert "error" in write, write


async def test_a_stranger_is_refused_build_pdf_and_synctex(server, user, project):
    put(server, project, "paper/main.tex", ARTICLE)
    put(server, project, "paper/chapter.tex", CHAPTER)
    stranger = await make_user(server)
    async with ws_connect(server, user.key) as ws:
        build = (await ws.call("latex.build", _args(project)))["result"]["build"]
    await finished(server, project, "paper/main.tex", build)
    async with ws_connect(server, stranger.key) as ws:
        for name, extra in (
            ("latex.build", {}),
            ("latex.stop", {}),
            ("latex.forward", {"line": 3}),
            ("latex.inverse", {"page": 1, "x": 100, "y": 100}),
        ):
            answer = await ws.call(name, _args(project, **extra))
            assert answer["error"]["code"] == "forbidden", (name, answer)
    async with server.client() as http:
        r = await http.get(
            f"/api/projects/{project}/latex/pdf",
            params={"path": "paper/main.tex"},
            headers={"Authorization": f"Bearer {stranger.key}"},
        )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


async def test_synctex_forward_then_inverse_returns_the_starting_line(server, user, project):
    put(server, project, "paper/main.tex", ARTICLE)
    put(server, project, "paper/chapter.tex", CHAPTER)
    async with ws_connect(server, user.key) as ws:
        early = await ws.call("latex.forward", _args(project, line=7))
        assert early["error"]["code"] == "no_pdf"
        # Asked for the included file, the server builds the main file that inputs it.
        asked = (await ws.call("latex.build", _args(project, "paper/chapter.tex")))["result"]
        assert asked["path"] == "paper/main.tex"
        build = asked["build"]
        assert (await finished(server, project, "paper/main.tex", build))["status"] == "succeeded"
        for source, line in (("paper/main.tex", 7), ("paper/chapter.tex", 3)):
            there = await ws.call("latex.forward", _args(project, source=source, line=line))
            spot = there["result"]
            assert spot["page"] == 1 and spot["x"] > 0 and spot["y"] > 0, there
            back = await ws.call(
                "latex.inverse", _args(project, page=spot["page"], x=spot["x"], y=spot["y"])
            )
            found = back["result"]
            assert found["file"] == source, back
            assert abs(found["line"] - line) <= 1, back


async def test_bad_latex_calls_get_codes(server, user, project):
    async with ws_connect(server, user.key) as ws:
        cases = [
            ("latex.build", _args(project, "x.ipynb"), "bad_path"),
            ("latex.build", _args(project, "../x.tex"), "bad_path"),
            ("latex.build", _args(project, extra=1), "bad_args"),
            ("latex.build", {"project_id": "nope", "path": "a.tex"}, "bad_args"),
            ("latex.forward", _args(project, line=0), "bad_args"),
            ("latex.forward", _args(project, line="3"), "bad_args"),
            ("latex.forward", _args(project, line=3, source="/etc/passwd"), "bad_path"),
            ("latex.inverse", _args(project, page=1, x=-1, y=0), "bad_args"),
            ("latex.inverse", _args(project, page=1, x=float("nan"), y=0), "bad_args"),
            ("latex.inverse", _args(project, page=True, x=1, y=1), "bad_args"),
            ("latex.inverse", _args(project, page=1, x=1, y=1), "no_pdf"),
        ]
        for name, args, code in cases:
            answer = await ws.call(name, args)
            assert answer.get("error", {}).get("code") == code, (name, args, answer)


async def test_a_missing_engine_fails_the_build_naming_the_package(server, user, project):
    put(
        server,
        project,
        "x.tex",
        "% !TEX program = xelatex\n\\documentclass{article}\n\\begin{document}x\\end{document}\n",
    )
    async with ws_connect(server, user.key) as ws:
        build = (await ws.call("latex.build", _args(project, "x.tex")))["result"]["build"]
    done = await finished(server, project, "x.tex", build)
    assert done["engine"] == "xelatex"
    if shutil.which("xelatex") is None:
        assert done["status"] == "failed"
        assert "texlive-xetex" in done["message"], done["message"]
    else:
        assert done["status"] == "succeeded", dict(done)


async def test_a_pdf_that_is_a_symlink_out_of_the_project_is_not_served(
    server, user, project, tmp_path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "doc.pdf").write_bytes(b"%PDF-secret")
    root = put(server, project, "a.tex", "x").parent
    (root / ".build").mkdir()
    (root / ".build" / "a.pdf").symlink_to("/etc/hostname")
    (root / "b").mkdir()
    (root / "b" / ".build").symlink_to(outside)
    auth = {"Authorization": f"Bearer {user.key}"}
    async with server.client() as http:
        for path in ("a.tex", "b/doc.tex"):
            r = await http.get(
                f"/api/projects/{project}/latex/pdf", params={"path": path}, headers=auth
            )
            assert r.status_code == 404 and r.json()["error"]["code"] == "no_pdf", r.text


async def test_a_build_sees_edits_that_are_not_yet_mirrored_to_the_file(server, user, project):
    # The file mirror would wait ten minutes: only the flush before the build puts the
    # edit on disk in time.
    object.__setattr__(server.services.settings, "sync_mirror_debounce_ms", 600_000)
    good = "\\documentclass{article}\n\\begin{document}\nDraft.\n\\end{document}\n"
    path = put(server, project, "live.tex", good)
    async with connect(server, project, "live.tex", user.key) as editor:
        await asyncio.wait_for(editor.synced.wait(), 10)
        editor.text.insert(len("\\documentclass{article}\n\\begin{document}\n"), "\\typo\n")
        await editor.wait_acked()
        assert "\\typo" not in path.read_text()
        async with ws_connect(server, user.key) as ws:
            build = (await ws.call("latex.build", _args(project, "live.tex")))["result"]["build"]
        done = await finished(server, project, "live.tex", build)
    assert done["status"] == "failed", dict(done)
    assert (done["errors"][0]["file"], done["errors"][0]["line"]) == ("live.tex", 3)


async def test_a_huge_sparse_pdf_is_refused_and_a_large_one_streamed(server, user, project):
    """The project's code can make `.build/x.pdf` a sparse file of any size: over the cap
    it is refused; under it, it is streamed (never read whole into the server's memory)
    with its Range and ETag answers."""
    put(server, project, "big.tex", "x")
    build = server.services.settings.projects_dir / str(project) / ".build"
    build.mkdir()
    pdf = build / "big.pdf"
    pdf.touch()
    os.truncate(pdf, 64 * 1024**3)
    auth = {"Authorization": f"Bearer {user.key}"}
    url = f"/api/projects/{project}/latex/pdf?path=big.tex"
    async with server.client(headers=auth) as http:
        r = await http.get(url)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        os.truncate(pdf, 8 * 1024**2)
        r = await http.get(url, headers={"Range": "bytes=0-9"})
        assert r.status_code == 206 and r.content == b"\0" * 10
        r = await http.get(url)
        assert r.status_code == 200 and len(r.content) == 8 * 1024**2
        again = await http.get(url, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
