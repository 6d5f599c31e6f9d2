"""Reading a TeX log (and a BibTeX .blg) into errors, warnings and bad boxes, each with
the file and line it names. Logs are written unwrapped (the runner sets max_print_line),
so a message is on one line; the file a message belongs to is tracked through the
`(file … )` nesting that TeX prints as it opens and closes inputs."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

MAX_MESSAGES = 200  # per kind: a runaway document repeats one error thousands of times
MAX_TEXT = 1000

# `./doc.tex:12: Undefined control sequence.` (-file-line-error)
_FILE_LINE_ERROR = re.compile(
    r"^(?P<file>(?:\.{0,2}/|[A-Za-z]:)?[^:\s][^:]*?):(?P<line>\d+): (?P<msg>.*)$"
)
_BANG = re.compile(r"^! (?P<msg>.*)$")
_CONTEXT_LINE = re.compile(r"^l\.(?P<line>\d+)(?: |$)")
_WARNING = re.compile(
    r"^(?:(?:LaTeX|pdfTeX|XeTeX|LuaTeX)(?: \w+)? Warning|Package (?P<pkg>[\w.-]+) Warning"
    r"|Class (?P<cls>[\w.-]+) Warning|LaTeX Font Warning): (?P<msg>.*)$"
)
_ON_LINE = re.compile(r"on input line (\d+)")
_BADBOX = re.compile(r"^(?P<msg>(?:Over|Under)full \\[hv]box .*)$")
_BOX_LINES = re.compile(r"(?:at lines? |detected at line )(\d+)")
# Warnings that continue on lines beginning `(package)` or spaces.
_CONTINUATION = re.compile(r"^\((?:[\w.-]+)\)\s+(?P<rest>.*)$")
_FILE_START = re.compile(
    r"\(((?:\.{0,2}/|/)?[^()\s]*\.[A-Za-z0-9]+|[^()\s]+\.(?:tex|sty|cls|clo|def|cfg|fd|aux|toc|out|bbl|ltx|bst|dtx|ins|mkii|lua|code\.tex))"
)

# BibTeX's .blg
_BIB_WARNING = re.compile(r"^Warning--(?P<msg>.*)$")
_BIB_ERROR_LINE = re.compile(r"^(?P<msg>.*)---line (?P<line>\d+) of file (?P<file>\S+)$")
_BIB_ERROR = re.compile(r"^(?P<msg>I (?:couldn't|found no) .*)$")
_BIB_WARNING_LOC = re.compile(r"^--line (?P<line>\d+) of file (?P<file>\S+)$")
# Biber's .blg: `[ms] Module.pm:line> LEVEL - message`. Its BibTeX reader names a
# temporary UTF-8 copy of the data source, which the preceding "Found BibTeX data
# source" line names.
_BIBER = re.compile(r"^\[\d+\] [^>]*> (?P<level>WARN|ERROR) - (?P<msg>.*)$")
_BIBER_SOURCE = re.compile(r"> INFO - Found BibTeX data source '(?P<file>[^']+)'$")
_BIBER_AT = re.compile(r"^BibTeX subsystem: \S+?, line (?P<line>\d+), (?P<msg>.*)$")


@dataclass
class Message:
    kind: str  # "error" | "warning" | "badbox"
    message: str
    file: str | None
    line: int | None
    source: str = "tex"  # "tex" | "bibtex" | "biber"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Parsed:
    errors: list[Message]
    warnings: list[Message]
    badboxes: list[Message]

    def add(self, msg: Message) -> None:
        target = {"error": self.errors, "warning": self.warnings, "badbox": self.badboxes}
        bucket = target[msg.kind]
        msg.message = msg.message.strip()[:MAX_TEXT]
        if len(bucket) < MAX_MESSAGES and msg not in bucket:
            bucket.append(msg)

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "errors": [m.to_json() for m in self.errors],
            "warnings": [m.to_json() for m in self.warnings],
            "badboxes": [m.to_json() for m in self.badboxes],
        }


class _Files:
    """The stack of open input files, from the parentheses of the log."""

    def __init__(self) -> None:
        self.stack: list[str] = []

    @property
    def current(self) -> str | None:
        return self.stack[-1] if self.stack else None

    def feed(self, line: str) -> None:
        i = 0
        while i < len(line):
            ch = line[i]
            if ch == "(":
                match = _FILE_START.match(line, i)
                if match:
                    self.stack.append(match.group(1))
                    i = match.end()
                    continue
                self.stack.append("")  # a parenthesis that is not a file still closes
            elif ch == ")" and self.stack:
                self.stack.pop()
            i += 1

    def nearest(self) -> str | None:
        for name in reversed(self.stack):
            if name:
                return name
        return None


def parse_log(text: str, parsed: Parsed | None = None) -> Parsed:
    """The messages of a TeX log."""
    parsed = parsed or Parsed([], [], [])
    files = _Files()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        error = _FILE_LINE_ERROR.match(line)
        if error and not line.startswith(("l.", " ")) and _looks_like_file(error.group("file")):
            msg = error.group("msg")
            if "==> Fatal error occurred" not in msg:
                parsed.add(Message("error", msg, error.group("file"), int(error.group("line"))))
            i += 1
            continue
        bang = _BANG.match(line)
        if bang:
            # The line is on the `l.N` context line that follows (within a few lines).
            number = None
            for follow in lines[i + 1 : i + 12]:
                context = _CONTEXT_LINE.match(follow)
                if context:
                    number = int(context.group(1))
                    break
            parsed.add(Message("error", bang.group("msg"), files.nearest(), number))
            i += 1
            continue
        warning = _WARNING.match(line)
        if warning:
            text_ = warning.group("msg")
            j = i + 1
            while j < len(lines):
                more = _CONTINUATION.match(lines[j])
                if not more:
                    break
                text_ += " " + more.group("rest")
                j += 1
            on_line = _ON_LINE.search(text_)
            parsed.add(
                Message(
                    "warning",
                    _prefix(warning) + text_,
                    files.nearest(),
                    int(on_line.group(1)) if on_line else None,
                )
            )
            i = j
            continue
        badbox = _BADBOX.match(line)
        if badbox:
            at = _BOX_LINES.search(line)
            parsed.add(Message("badbox", line, files.nearest(), int(at.group(1)) if at else None))
            i += 1
            continue
        files.feed(line)
        i += 1
    return parsed


def parse_blg(text: str, parsed: Parsed | None = None) -> Parsed:
    """The messages of a BibTeX or Biber log (.blg)."""
    parsed = parsed or Parsed([], [], [])
    lines = text.splitlines()
    if lines and lines[0].startswith("[") and "This is Biber" in lines[0]:
        return _parse_biber(lines, parsed)
    for i, line in enumerate(lines):
        warning = _BIB_WARNING.match(line)
        if warning:
            where = _BIB_WARNING_LOC.match(lines[i + 1]) if i + 1 < len(lines) else None
            parsed.add(
                Message(
                    "warning",
                    warning.group("msg"),
                    where.group("file") if where else None,
                    int(where.group("line")) if where else None,
                    "bibtex",
                )
            )
            continue
        located = _BIB_ERROR_LINE.match(line)
        if located:
            msg = located.group("msg") or (lines[i - 1] if i else "")
            parsed.add(
                Message("error", msg, located.group("file"), int(located.group("line")), "bibtex")
            )
            continue
        error = _BIB_ERROR.match(line)
        if error:
            parsed.add(Message("error", error.group("msg"), None, None, "bibtex"))
    return parsed


def _parse_biber(lines: list[str], parsed: Parsed) -> Parsed:
    source: str | None = None
    for line in lines:
        found = _BIBER_SOURCE.search(line)
        if found:
            source = found.group("file")
            continue
        entry = _BIBER.match(line)
        if entry is None:
            continue
        kind = "error" if entry.group("level") == "ERROR" else "warning"
        message, file, at = entry.group("msg"), None, None
        located = _BIBER_AT.match(message)
        if located:
            message, file, at = located.group("msg"), source, int(located.group("line"))
        parsed.add(Message(kind, message, file, at, "biber"))
    return parsed


def _prefix(warning: re.Match[str]) -> str:
    if warning.group("pkg"):
        return f"Package {warning.group('pkg')}: "
    if warning.group("cls"):
        return f"Class {warning.group('cls')}: "
    return ""


def _looks_like_file(name: str) -> bool:
    # `Package hyperref Warning: …` and friends contain colons too; a file has a dot.
    return "." in name.rsplit("/", 1)[-1] and " " not in name.strip()
