"""Tidemark's own tables are created by whichever process connects first: several at once must all succeed."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from dataflows.stack.local import LocalStack
from dataflows.targets.ops_table import ensure_table


@pytest.mark.parametrize("ddl_file", ["customer_360.sql", "dead_letters.sql"])
def test_processes_creating_the_ops_tables_at_once_all_succeed(stack: LocalStack, ddl_file: str) -> None:
    """A 2-process dataflow's first start: both create the tables at the same moment. PostgreSQL's CREATE
    TABLE IF NOT EXISTS is not safe against itself (one fails on pg_type's unique index), and the worker
    that fails takes the cluster down with it."""
    failures: list[BaseException] = []
    for _ in range(5):
        schema = f"race_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(stack.ops_conninfo(), autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        conninfo = psycopg.conninfo.make_conninfo(stack.ops_conninfo(), options=f"-c search_path={schema}")
        start = threading.Barrier(6)

        def create(conninfo: str = conninfo, start: threading.Barrier = start) -> None:
            with psycopg.connect(conninfo) as conn:
                start.wait()
                try:
                    ensure_table(conn, ddl_file)
                except psycopg.Error as e:
                    failures.append(e)

        threads = [threading.Thread(target=create) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with psycopg.connect(stack.ops_conninfo(), autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    assert not failures, failures[:2]
