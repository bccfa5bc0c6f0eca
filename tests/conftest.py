"""Shared fixtures: one real local stack (PostgreSQL, MariaDB, Kafka broker) per test session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from dataflows.stack.local import LocalStack
from dataflows.stack.scratch import make_settings, new_home


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """Databases and broker as local processes on free loopback ports; captures are started by tests."""
    home = new_home()
    local = LocalStack(make_settings(home))
    local.up(capture=False, echo=lambda _line: None)
    try:
        yield local
    finally:
        local.down(echo=lambda _line: None)
        shutil.rmtree(home, ignore_errors=True)
