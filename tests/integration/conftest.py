from __future__ import annotations

from collections.abc import Iterator

import pytest

from dataflows.stack.local import LocalStack, capture_process_name
from dataflows.stack.scratch import scratch_stack, wait_capture_running
from tests.support.kafka import TopicReader


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def seeded(stack: LocalStack) -> dict[str, int]:
    """Rows that exist before capture starts: they must arrive as snapshot reads (op r)."""
    with stack.erp_admin() as erp:
        erp_id = erp.execute(
            "INSERT INTO erp.customers (legal_name, tax_id, country) VALUES ('Seed Corp', 'SEED1', 'FR') RETURNING id"
        ).fetchone()[0]
    crm = stack.crm_admin()
    with crm.cursor() as cur:
        cur.execute("INSERT INTO accounts (name, stage) VALUES ('Seed Account', 'prospect')")
        crm_id = cur.lastrowid
    crm.close()
    return {"erp": erp_id, "crm": crm_id}


@pytest.fixture(scope="session")
def captures(stack: LocalStack, seeded: dict[str, int]) -> Iterator[LocalStack]:
    """Both capture processes running against the session stack."""
    for source in ("erp", "crm"):
        stack.start_capture(source)
    for source in ("erp", "crm"):
        wait_capture_running(stack, source)
    yield stack
    for source in ("erp", "crm"):
        stack.table.stop(capture_process_name(source))


@pytest.fixture
def reader(stack: LocalStack) -> Iterator[type[TopicReader]]:
    opened: list[TopicReader] = []

    class _Reader(TopicReader):
        def __init__(self, topics: list[str]) -> None:
            super().__init__(stack.settings.kafka_bootstrap, topics)
            opened.append(self)

    yield _Reader
    for r in opened:
        r.close()


@pytest.fixture(scope="session")
def pipeline() -> Iterator[LocalStack]:
    """A whole stack of its own, as `tidemark up` starts it: databases, broker, captures, the dataflow
    and Prometheus."""
    with scratch_stack("tidemark-flow-", snapshot_interval_s=1.0) as stack:
        yield stack
