"""Fixtures for document tests: a project owned by the test user."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from collab.config import Settings
from collab.projects.store import create_project


@pytest.fixture
async def project(server, user) -> UUID:
    services = server.services
    return await create_project(
        services.pool, services.settings.projects_dir, UUID(user.account_id), "docs"
    )


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    # Short delays so mirror and unload behaviour is observable quickly.
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        secret="test-secret",
        sync_mirror_debounce_ms=150,
        sync_unload_delay_ms=300,
        sync_history_seconds=1,
    )


def project_file(server, project_id: UUID, path: str) -> Path:
    return server.services.settings.projects_dir / str(project_id) / path
