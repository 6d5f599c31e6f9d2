"""The log parser on real logs made by TeX Live (tests/latex/logs/regenerate.sh builds
them the way collab/latex/runner.py does): errors, warnings and bad boxes with the file
and line they name, BibTeX's and Biber's messages too."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from collab.latex.logparse import MAX_MESSAGES, Parsed, parse_blg, parse_log
from collab.latex.runner import engine_for, project_path

LOGS = Path(__file__).with_name("logs")


def _where(messages: list) -> list[tuple[str | None, int | None, str]]:
    return [(m.file, m.line, m.message) for m in messages]


def test_errors_carry_their_file_and_line_across_inputs():
    parsed = parse_log((LOGS / "errors.log").read_text())
    assert _where(parsed.errors) == [
        ("./errors.tex", 5, "Undefined control sequence."),
        ("./errors.tex", 8, "Missing $ inserted."),
        ("./chapter.tex", 2, "Undefined control sequence."),
        ("./errors.tex", 10, "LaTeX Error: File `nosuchfile.tex' not found."),
        ("./errors.tex", 10, "Emergency stop."),
    ]
    # "==> Fatal error occurred" is TeX's summary, not one more error.
    assert not any("Fatal error" in m.message for m in parsed.errors)


def test_warnings_and_bad_boxes_carry_their_file_and_line():
    parsed = parse_log((LOGS / "warnings.log").read_text())
    warnings = _where(parsed.warnings)
    assert (
        "./warnings.tex",
        5,
        "Reference `sec:missing' on page 1 undefined on input line 5.",
    ) in warnings
    assert ("./warnings.tex", 5, "Citation `nobody' on page 1 undefined on input line 5.") in (
        warnings
    )
    hyperref = [w for w in parsed.warnings if w.message.startswith("Package hyperref:")]
    # Its continuation line `(hyperref) removing ... on input line 12.` is joined.
    assert hyperref and all(w.line == 12 for w in hyperref), hyperref
    assert ("./warnings.tex", None, "There were undefined references.") in warnings
    boxes = _where(parsed.badboxes)
    assert ("./warnings.tex", 7, "Overfull \\hbox (108.95593pt too wide) detected at line 7") in (
        boxes
    )
    assert any(b[1] == 9 and b[2].startswith("Underfull \\hbox (badness 10000)") for b in boxes)
    assert any(b[1] == 9 and b[2].startswith("Overfull \\hbox (12.68625pt") for b in boxes)
    assert parsed.errors == []


def test_bibtex_errors_and_warnings_from_the_blg():
    parsed = parse_blg((LOGS / "biblio.blg").read_text())
    assert [(m.file, m.line, m.source) for m in parsed.errors] == [("refs.bib", 9, "bibtex")]
    assert parsed.errors[0].message == "I was expecting a `,' or a `}'"
    assert [m.message for m in parsed.warnings] == [
        'I didn\'t find a database entry for "missingkey"'
    ]


def test_biber_errors_and_warnings_from_the_blg():
    parsed = parse_blg((LOGS / "biber.blg").read_text())
    assert [(m.file, m.line, m.source) for m in parsed.errors] == [("refs.bib", 9, "biber")]
    assert parsed.errors[0].message.startswith('syntax error: found "title"')
    assert parsed.warnings == []
    warned = parse_blg((LOGS / "biberwarn.blg").read_text())
    assert warned.errors == []
    assert [(m.kind, m.file, m.message) for m in warned.warnings] == [
        ("warning", None, "I didn't find a database entry for 'missingkey' (section 0)")
    ]


def test_a_runaway_log_keeps_a_bounded_number_of_messages():
    text = "\n".join(f"./doc.tex:{n}: Undefined control sequence." for n in range(1, 5000))
    parsed = parse_log(text)
    assert len(parsed.errors) == MAX_MESSAGES
    assert parsed.errors[-1].line == MAX_MESSAGES


def test_parsed_messages_are_json_for_the_table():
    parsed = parse_log((LOGS / "errors.log").read_text(), Parsed([], [], []))
    first = parsed.to_json()["errors"][0]
    assert first == {
        "kind": "error",
        "message": "Undefined control sequence.",
        "file": "./errors.tex",
        "line": 5,
        "source": "tex",
    }


def test_the_engine_comes_from_the_magic_comment():
    assert engine_for("\\documentclass{article}") == "pdflatex"
    assert engine_for("% !TEX program = xelatex\n\\documentclass{article}") == "xelatex"
    assert engine_for("%!TeX TS-program = LuaLaTeX\n") == "lualatex"
    assert engine_for("% !TEX program = bash\n") == "bash"  # refused by the runner


def test_file_names_become_project_paths():
    folder = PurePosixPath("paper")
    assert project_path("./chap.tex", folder, "/home/user") == "paper/chap.tex"
    assert project_path("/home/user/paper/./main.tex", folder, "/home/user") == "paper/main.tex"
    system = "/usr/share/texlive/texmf-dist/tex/latex/base/article.cls"
    assert project_path(system, folder, "/home/user") == system
    assert project_path("../../x.tex", folder, "/home/user") == "../../x.tex"
