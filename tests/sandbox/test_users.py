"""Projects' OS users made and removed many at once, in this process and another: the
password file's lock, or a user removed by another process meanwhile, never fails a
project start or a deletion."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from collab.config import Settings
from collab.sandbox import users

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-project users need root")

_OTHER = """
import sys, uuid
from concurrent.futures import ThreadPoolExecutor
from collab.sandbox import users
lo, hi, op = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ids = [uuid.UUID(x) for x in sys.argv[4:]]
with ThreadPoolExecutor(8) as pool:
    if op == "make":
        list(pool.map(lambda p: users.ensure(p, lo, hi), ids))
    else:
        list(pool.map(users.remove, ids))
"""


async def test_forty_users_made_and_removed_at_once_across_two_processes() -> None:
    s = Settings()
    lo, hi = s.sandbox_uid_min, s.sandbox_uid_max
    here = [uuid.uuid4() for _ in range(40)]
    there = [uuid.uuid4() for _ in range(20)]
    try:

        async def other(op: str) -> None:
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", _OTHER, str(lo), str(hi), op, *map(str, there)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, done.stderr

        made = await asyncio.gather(
            other("make"), *(asyncio.to_thread(users.ensure, p, lo, hi) for p in here)
        )
        uids = {entry.pw_uid for entry in made[1:]}
        assert len(uids) == 40
        for p in here + there:
            entry = users.ensure(p, lo, hi)  # already there: the same user
            assert lo <= entry.pw_uid <= hi
        # Both processes remove every user at once (two servers hearing of the same
        # deletions): each removal succeeds or finds the user gone, never fails.
        there = here + there
        await asyncio.gather(other("remove"), *(asyncio.to_thread(users.remove, p) for p in there))
        for p in here + there:
            assert not users.remove(p)  # gone already
    finally:
        for p in here + there:
            users.remove(p)
