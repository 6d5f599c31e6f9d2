"""Services: the long-lived parts of one server process, built in the app's lifespan
and shared by every request and connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from collab.auth.ratelimit import LoginLimiter
from collab.auth.tokens import ApiKeys, Sessions
from collab.config import Settings


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    database_url: str
    sessions: Sessions
    keys: ApiKeys
    limiter: LoginLimiter
    # Filled by the packages that later issues add (tables engine, sync rooms, kernels).
    extra: dict[str, Any] = field(default_factory=dict)
