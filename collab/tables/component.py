"""The tables component: checks schema/ against the database, starts the changefeed
engine, publishes it as services.extra["tables"] and serves `query` and `cancel`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from collab.services import Services
from collab.tables import schema as schema_mod
from collab.tables.engine import Tables
from collab.ws.dispatch import Api


@contextlib.asynccontextmanager
async def tables_component(services: Services, api: Api) -> AsyncIterator[None]:
    schema = schema_mod.load(services.settings.tables_schema_dir or schema_mod.SCHEMA_DIR)
    await schema_mod.check(schema, services.pool)
    tables = Tables(services, schema)
    await tables.start()
    services.extra["tables"] = tables
    api.register_operation("query", tables.query)
    api.register_operation("cancel", tables.cancel)
    try:
        yield
    finally:
        await tables.stop()
