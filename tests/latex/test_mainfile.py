"""Finding the main file to build for an included one."""

from __future__ import annotations

from pathlib import Path

import pytest

from collab.latex.files import sources
from collab.latex.mainfile import find
from collab.latex.runner import engine_for

MAIN = "\\documentclass{article}\n\\begin{document}\n\\include{%s}\n\\end{document}\n"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_file_with_a_documentclass_is_its_own_main_file(tmp_path):
    _write(tmp_path, {"a.tex": MAIN % "b", "b.tex": "text"})
    assert find(tmp_path, "a.tex") == "a.tex"


def test_an_included_file_is_built_by_the_file_that_includes_it(tmp_path):
    _write(
        tmp_path,
        {
            "thesis.tex": MAIN % "chapters/one",
            "other.tex": MAIN % "chapters/two",
            "chapters/one.tex": "one",
            "chapters/two.tex": "two",
            "chapters/loose.tex": "nobody includes me",
        },
    )
    assert find(tmp_path, "chapters/one.tex") == "thesis.tex"
    assert find(tmp_path, "chapters/two.tex") == "other.tex"
    assert find(tmp_path, "chapters/loose.tex") == "chapters/loose.tex"


def test_a_tex_root_comment_names_the_main_file(tmp_path):
    _write(
        tmp_path,
        {
            "book/main.tex": MAIN % "x",
            "book/parts/p.tex": "% !TEX root = ../main.tex\nPart.\n",
            "book/parts/out.tex": "% !TEX root = ../../../etc/passwd.tex\n",
            "book/parts/gone.tex": "% !TEX root = missing.tex\n",
        },
    )
    assert find(tmp_path, "book/parts/p.tex") == "book/main.tex"
    assert find(tmp_path, "book/parts/out.tex") == "book/parts/out.tex"
    assert find(tmp_path, "book/parts/gone.tex") == "book/parts/gone.tex"


def test_a_main_file_behind_a_symlink_is_not_used(tmp_path):
    outside = tmp_path / "outside"
    _write(outside, {"evil.tex": MAIN % "p/c"})
    project = tmp_path / "project"
    _write(project, {"p/c.tex": "chapter"})
    (project / "evil.tex").symlink_to(outside / "evil.tex")
    assert find(project, "p/c.tex") == "p/c.tex"


@pytest.mark.timeout(30)
def test_magic_comments_built_to_take_quadratic_time_are_read_in_one_pass(tmp_path):
    """A `% !TeX root` line padded with 65,000 spaces, or a file of blank lines, took a
    regex over the whole head about 85 s (holding the GIL, so the whole server stalled);
    read line by line it is one pass."""
    _write(
        tmp_path,
        {
            "padded.tex": "% !TeX root = a" + " " * 65_000 + "b",
            "blank.tex": "\n" * 60_000,
            "main.tex": MAIN % "padded",
        },
    )
    assert find(tmp_path, "padded.tex") == "main.tex"
    assert find(tmp_path, "blank.tex") == "blank.tex"
    assert engine_for("%" + " " * 4000 + "!") == "pdflatex"
    assert engine_for("% !TEX TS-program = LuaLaTeX \n") == "lualatex"


def test_the_sources_of_a_build_are_every_file_but_outputs_and_bounded(tmp_path):
    _write(tmp_path, {"main.tex": "x", "ch/one.tex": "y", ".build/main.pdf": "z"})
    (tmp_path / "link.tex").symlink_to("/etc/passwd")
    seen = sources(tmp_path)
    assert seen is not None
    assert sorted(p for p, *_ in seen) == ["ch/one.tex", "link.tex", "main.tex"]
    assert sources(tmp_path) == seen
    (tmp_path / "ch" / "one.tex").write_text("changed")
    assert sources(tmp_path) != seen
    # Too deep to walk quickly (a recursive walk also raised RecursionError): unknown.
    (tmp_path / "/".join(["d"] * 70)).mkdir(parents=True)
    assert sources(tmp_path) is None
