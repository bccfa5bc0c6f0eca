"""A broker that loses everything (today's in-memory local broker, restarted): dead letters survive in
PostgreSQL, the dataflow notices the reset of every capture topic it held offsets for, and the
re-snapshot brings customer_360, the CRM write-back and the golden records back to the databases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from dataflows.config.live import connector_property
from dataflows.io.sinks import ensure_topics
from dataflows.outputs import LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack
from dataflows.stack.scrape import scrape
from dataflows.stack.scratch import scratch_stack, wait_capture_running
from dataflows.targets.dead_letters import DeadLetterWriter
from tests.support.kafka import TopicReader, produce
from tests.support.truth import Workload, delete_some, differences, seed
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
    produce(lossy.settings.kafka_bootstrap, [("erp.erp.customers", b'{"id": 777001}', b"{still not json"),
                                             ("erp.erp.customers", b'{"id": 777002}', b"\xff\xfe binary, not UTF-8")])
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


def _resets(stack: LocalStack) -> float:
    return sum(v for _, v in scrape(stack.dataflow_metrics_url()).get("tidemark_source_resets_total", []))


def _agree(stack: LocalStack, base: int, what: str) -> None:
    last: dict[str, list[str]] = {}

    def agree() -> bool:
        last["problems"] = differences(stack, base)
        return not last["problems"]

    try:
        wait_until(agree, 240, what)
    except TimeoutError:
        pytest.fail(f"{what}: {len(last['problems'])} differences, e.g. {last['problems'][:5]}")


def test_a_broker_wiped_under_a_steady_workload_is_detected_and_the_resnapshot_restores_the_truth(lossy: LocalStack) -> None:
    """(c) The dataflow is behind (stopped) while rows are deleted, then the broker loses everything: the
    deletes exist only in the databases. The reset is detected (metric, log line), both sources re-snapshot,
    and customer_360, the CRM write-back and the deletes equal the databases."""
    base = 600_000
    seed(lossy, base, 30)
    _agree(lossy, base, "the seeded rows to arrive")
    work = Workload(lossy, base, 30, seed=3)
    work.start()
    time.sleep(3)
    record = lossy.table.running("dataflow-0")
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)  # a consumer behind: what it has not read is only on the broker
    delete_some(lossy, base, list(range(0, 30, 3)))
    time.sleep(3)
    restart_broker(lossy)  # the broker loses everything, the deletes included
    lossy.start_dataflow(echo=lambda _l: None)
    time.sleep(5)
    statements = work.finish()
    assert statements > 50
    wait_until(lambda: _resets(lossy) > 0, 60, "tidemark_source_resets_total to count the reset")
    log = (lossy.table.log_dir / "dataflow-0.log").read_text()
    assert "was reset (recreated" in log and "held offset" in log
    for source in ("erp", "crm"):
        assert "re-snapshot requested" in (lossy.table.log_dir / f"capture-{source}.log").read_text()
    _agree(lossy, base, "customer_360 and the CRM to equal the databases after the re-snapshot")


class EventCollector(threading.Thread):
    """Reads the lifecycle topic for as long as the broker is there (it goes away with `down`)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.reader, self.stop = TopicReader(bootstrap, [LIFECYCLE_TOPIC]), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.reader.poll()
            except Exception:  # noqa: BLE001 - the broker stopped under the reader: what it read stays
                time.sleep(0.2)

    def events(self) -> list[dict[str, Any]]:
        self.stop.set()
        self.join(timeout=30)
        try:
            self.reader.close()
        except Exception:  # noqa: BLE001, S110 - closing against a stopped broker
            pass
        return [m.value for m in self.reader.messages if m.value]


def _golden_ids(stack: LocalStack, erp_ids: list[int]) -> dict[int, str]:
    with stack.erp_admin("tidemark") as ops:
        rows = ops.execute("SELECT customer_id, erp_customer_ids FROM customer_360 WHERE merged_into IS NULL").fetchall()
    wanted = {str(i) for i in erp_ids}
    return {int(e): cid for cid, ids in rows for e in ids or [] if e in wanted}


def test_each_database_tells_whether_its_capture_has_been_sent_everything(lossy: LocalStack) -> None:
    """What `down` waits for before it stops the captures: a running capture is sent all that its database
    committed before the mark; a stopped one is not (so a restarting or snapshotting capture is waited for)."""
    connectors, defaults = lossy.connectors(), lossy.runtime_defaults()
    props = {s: (connectors[s].dialect, connector_property(connectors[s], defaults)) for s in ("erp", "crm")}

    def sent(source: str) -> bool:
        dialect, prop = props[source]
        return dialect.sent_to_capture(prop, dialect.log_end(prop, 5), 5)

    for source in props:
        wait_until(lambda s=source: sent(s), 60, f"capture-{source} to be sent its database's log")
        lossy.table.stop(f"capture-{source}")
        wait_until(lambda s=source: not sent(s), 30, f"capture-{source}'s replication connection to close")
        assert not sent(source)
        lossy.start_capture(source)
        wait_capture_running(lossy, source)
        wait_until(lambda s=source: sent(s), 60, f"the restarted capture-{source} to be sent its database's log")


def test_down_drains_and_up_loses_nothing_over_three_cycles(lossy: LocalStack) -> None:
    """(a) changes -> `down` -> `up`, three times: `down` stops the captures, waits for the dataflow to
    drain (progress line), then stops the rest; every change's lifecycle event was published before the
    broker stopped, and after each `up` customer_360 and the CRM equal the databases."""
    base, n = 700_000, 12
    customers = list(range(base, base + n))
    seed(lossy, base, n)
    _agree(lossy, base, "the seeded rows to arrive")
    for cycle in range(3):
        golden = _golden_ids(lossy, customers)
        assert len(golden) == n
        collector = EventCollector(lossy.settings.kafka_bootstrap)
        collector.start()
        with lossy.erp_admin() as db, db.cursor() as cur:  # credit hold applied, released, applied
            cur.executemany("UPDATE erp.customers SET credit_status = %s WHERE id = %s",
                            [("hold" if cycle % 2 == 0 else "ok", i) for i in customers])  # fmt: skip
        delete_some(lossy, base, [cycle])
        lines: list[str] = []
        lossy.down(echo=lines.append)
        events = collector.events()
        stops = [line.split()[0] for line in lines if not line.startswith("captures ")]  # progress lines aside
        assert stops[:2] == ["capture-crm", "capture-erp"], lines
        assert any("drained" in line for line in lines), lines
        expected = "CreditHoldApplied" if cycle % 2 == 0 else "CreditHoldReleased"
        got = {e["customer_id"] for e in events if e["event_type"] == expected}
        missing = [i for i in customers if golden[i] not in got]
        assert not missing, f"cycle {cycle}: no {expected} event published before the stop for {missing}"
        lossy.up(echo=lambda _l: None)
        for source in ("erp", "crm"):
            wait_capture_running(lossy, source)
        _agree(lossy, base, f"customer_360 and the CRM to equal the databases after down/up cycle {cycle + 1}")
