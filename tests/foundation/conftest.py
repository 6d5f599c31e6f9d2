"""Fixtures for foundation tests: `faults`, every log record at ERROR or with a
traceback, from any logger, so a test can prove the server logged no failure."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


class Faults(logging.Handler):
    """Every log record at ERROR or above, or carrying a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def summary(self) -> list[str]:
        return [
            f"{r.name}: {r.getMessage()} {r.exc_info and r.exc_info[1]!r}" for r in self.records
        ]


@pytest.fixture
def faults() -> Iterator[Faults]:
    handler = Faults()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
