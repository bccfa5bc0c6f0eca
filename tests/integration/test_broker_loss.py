"""A broker that loses everything (today's in-memory local broker, restarted): dead letters survive in
PostgreSQL, the dataflow notices the reset of every capture topic it held offsets for, and the
re-snapshot brings customer_360, the CRM write-back and the golden records back to the databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from dataflows.io.sinks import ensure_topics
from dataflows.stack.local import LocalStack
from dataflows.stack.scratch import scratch_stack
from dataflows.targets.dead_letters import DeadLetterWriter
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def lossy() -> Iterator[LocalStack]:
    with scratch_stack("tidemark-loss-", snapshot_interval_s=1.0) as stack:
        yield stack


def restart_broker(stack: LocalStack) -> None:
    """Stop the in-memory broker and start a fresh, empty one, as `up` would after a crash."""
    stack.table.stop("kafka")
    stack.kafka.start(stack.table)
    ensure_topics(stack.settings.kafka_bootstrap, stack.all_topics())


def cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.settings_environment()}
    return subprocess.run([sys.executable, "-m", "dataflows.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def letters(stack: LocalStack, *args: str) -> dict[str, dict[str, Any]]:
    out = cli(stack, "dlq", "list", "--json", *args)
    assert out.returncode == 0, out.stderr
    return {r["dead_letter_id"]: r for r in orjson.loads(out.stdout)}


def test_dead_letters_are_stored_durably_replay_moves_their_state_and_survive_a_broker_restart(lossy: LocalStack) -> None:
    producer = KafkaProducer(bootstrap_servers=lossy.settings.kafka_bootstrap)
    producer.send("erp.erp.customers", key=b'{"id": 777001}', value=b"{still not json")
    producer.send("erp.erp.customers", key=b'{"id": 777002}', value=b"\xff\xfe binary, not UTF-8")
    producer.flush()
    producer.close()
    found = wait_until(lambda: len(d := letters(lossy)) >= 2 and d, 60, "two dead letters in PostgreSQL")
    assert {r["state"] for r in found.values()} == {"open"}
    binary = next(r for r in found.values() if r["payload_encoding"] == "base64")
    assert binary["topic"] == "erp.erp.customers" and binary["source"] == "erp" and binary["failures"] == 1
    bad = next(r for r in found.values() if r["payload"] == "{still not json")

    # The very same dead letter written again (an output batch replayed after a crash) is the same row.
    writer = DeadLetterWriter(lossy.ops_conninfo())
    with writer.conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(failures) FROM dead_letters")
        before = cur.fetchone()
    writer.conn.commit()
    from dataflows.outputs import dead_letter_out
    from dataflows.targets.dead_letters import dead_letter_row

    again = dead_letter_out("decode", bad["error_class"], bad["reason"], "erp",
                            (bad["topic"], bad["partition"], bad["offset"], bad["key"].encode(), bad["payload"].encode()))  # fmt: skip
    writer.write([dead_letter_row(again)])
    with writer.conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(failures) FROM dead_letters")
        assert cur.fetchone() == before
    writer.conn.commit()
    writer.close()

    # Replay: the row is marked replayed; the record fails again (still malformed) at a new offset, so the
    # same row is open again with two failures, never a second row.
    replayed = cli(lossy, "dlq", "replay", bad["dead_letter_id"][:8])
    assert replayed.returncode == 0 and "replayed 1 " in replayed.stdout, replayed.stderr
    reopened = wait_until(lambda: (r := letters(lossy).get(bad["dead_letter_id"])) and r["failures"] == 2 and r,
                          60, "the replayed dead letter to fail again")  # fmt: skip
    assert reopened["state"] == "open" and reopened["replayed_at"] is not None
    assert len(letters(lossy)) == len(found)

    restart_broker(lossy)  # a fresh in-memory broker: the DLQ topic is gone, the table is not
    after = letters(lossy)
    assert set(after) == set(found)
    assert after[bad["dead_letter_id"]]["failures"] == 2
    shown = cli(lossy, "dlq", "show", binary["dead_letter_id"])
    assert shown.returncode == 0 and json.loads(shown.stdout)["payload_encoding"] == "base64"
    status = {r["name"]: r for r in json.loads(cli(lossy, "status", "--json").stdout)}
    assert status["dataflow-0"]["detail"]["dead_letters"] == len(letters(lossy, "--state", "open"))
