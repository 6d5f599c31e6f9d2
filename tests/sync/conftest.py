"""Fixtures for document tests: a project owned by the test user."""

from __future__ import annotations

from uuid import UUID

import pytest

from collab.projects.store import create_project


@pytest.fixture
async def project(server, user) -> UUID:
    services = server.services
    return await create_project(
        services.pool, services.settings.projects_dir, UUID(user.account_id), "docs"
    )
