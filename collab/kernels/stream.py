"""StreamBuffer: the text of one stream output as a terminal would show it, with `\\r`
returning to the start of the line and `\\b` stepping back, so progress bars overwrite
themselves instead of piling up."""

from __future__ import annotations


class StreamBuffer:
    """Committed lines plus the line under the cursor.

    `dirty_from` is the smallest character offset changed since the last `take_dirty()`,
    so the writer rewrites only the tail of the shared text.
    """

    def __init__(self, text: str = "") -> None:
        self._done: list[str] = []
        self._done_len = 0
        self._line: list[str] = []
        self._col = 0
        self.dirty_from: int | None = 0 if text else None
        self.feed(text)
        if text:
            self.dirty_from = 0

    def __len__(self) -> int:
        return self._done_len + len(self._line)

    @property
    def text(self) -> str:
        return "".join(self._done) + "".join(self._line)

    def _mark(self, offset: int) -> None:
        if self.dirty_from is None or offset < self.dirty_from:
            self.dirty_from = offset

    def feed(self, chunk: str) -> None:
        line, col = self._line, self._col
        start = self._done_len
        # Plain text (the common case) is appended without the per-character loop.
        if col == len(line) and "\r" not in chunk and "\b" not in chunk:
            head, sep, tail = chunk.rpartition("\n")
            self._mark(start + col)
            if sep:
                done = "".join(line) + head + "\n"
                self._done.append(done)
                self._done_len += len(done)
                line = list(tail)
            else:
                line.extend(tail)
            self._line, self._col = line, len(line)
            return
        for ch in chunk:
            if ch == "\n":
                done = "".join(line) + "\n"
                self._mark(start + len(line))
                self._done.append(done)
                self._done_len += len(done)
                start = self._done_len
                line, col = [], 0
            elif ch == "\r":
                col = 0
            elif ch == "\b":
                col = max(0, col - 1)
            else:
                self._mark(start + col)
                if col < len(line):
                    line[col] = ch
                else:
                    line.append(ch)
                col += 1
        self._line, self._col = line, col

    def take_dirty(self) -> tuple[int, str] | None:
        """(offset, new tail from offset) since the last call, or None if unchanged."""
        if self.dirty_from is None:
            return None
        offset = self.dirty_from
        self.dirty_from = None
        return offset, self.text[offset:]
