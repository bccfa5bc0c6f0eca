"""Real Debezium capture from the local ERP (PostgreSQL) and CRM (MariaDB) into the real broker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from dataflows.stack.local import LocalStack, capture_process_name
from dataflows.stack.scratch import wait_capture_running
from tests.support.kafka import Message


def _rows(messages: list[Message], key: int) -> list[Message]:
    return [m for m in messages if m.key == {"id": key}]


def _ops(messages: list[Message]) -> list[str | None]:
    return [m.value["op"] if m.value is not None else None for m in messages]


def test_snapshot_reads_existing_rows(captures: LocalStack, seeded: dict[str, int], reader) -> None:
    erp = reader(["erp.erp.customers"])
    crm = reader(["crm.crm.accounts"])
    erp_msgs = erp.wait_for(lambda ms: _rows(ms, seeded["erp"]), 60, "ERP snapshot row")
    crm_msgs = crm.wait_for(lambda ms: _rows(ms, seeded["crm"]), 60, "CRM snapshot row")
    for msg in (_rows(erp_msgs, seeded["erp"])[0], _rows(crm_msgs, seeded["crm"])[0]):
        assert msg.value["op"] == "r"
        assert msg.value["before"] is None
        assert msg.value["source"]["snapshot"] in ("true", "first", "last", "first_in_data_collection",
                                                  "last_in_data_collection")  # fmt: skip
    assert _rows(erp_msgs, seeded["erp"])[0].value["after"]["legal_name"] == "Seed Corp"


def test_erp_insert_update_delete(captures: LocalStack, reader) -> None:
    with captures.erp_admin() as db:
        cid = db.execute(
            "INSERT INTO erp.customers (legal_name, tax_id, country, credit_limit) "
            "VALUES ('Nordwind AG', 'DE123', 'DE', 1234.50) RETURNING id"
        ).fetchone()[0]
        db.execute("UPDATE erp.customers SET credit_status = 'hold' WHERE id = %s", (cid,))
        db.execute("DELETE FROM erp.customers WHERE id = %s", (cid,))
    topic = reader(["erp.erp.customers"])
    msgs = topic.wait_for(lambda ms: len(_rows(ms, cid)) >= 4, 60, "c, u, d and tombstone")
    mine = _rows(msgs, cid)
    assert _ops(mine) == ["c", "u", "d", None]  # same key: same partition, so in order
    create, update, delete, _tombstone = (m.value for m in mine)
    assert create["after"]["credit_limit"] == "1234.50"  # decimal.handling.mode=string
    assert update["before"]["credit_status"] == "ok" and update["after"]["credit_status"] == "hold"
    assert delete["before"]["legal_name"] == "Nordwind AG" and delete["after"] is None
    lsns = [m["source"]["lsn"] for m in (create, update, delete)]
    assert lsns == sorted(lsns) and len(set(lsns)) == 3
    assert all(m["source"]["table"] == "customers" and m["source"]["schema"] == "erp" for m in (create, update))
    assert len({m.partition for m in mine}) == 1


def test_crm_insert_update_delete(captures: LocalStack, reader) -> None:
    db = captures.crm_admin()
    with db.cursor() as cur:
        cur.execute("INSERT INTO accounts (name, domain, stage) VALUES ('Blue Heron Ltd', 'heron.example', 'prospect')")
        aid = cur.lastrowid
        cur.execute("UPDATE accounts SET stage = 'customer' WHERE id = %s", (aid,))
        cur.execute("DELETE FROM accounts WHERE id = %s", (aid,))
    db.close()
    topic = reader(["crm.crm.accounts"])
    msgs = topic.wait_for(lambda ms: len(_rows(ms, aid)) >= 4, 60, "c, u, d and tombstone")
    mine = _rows(msgs, aid)
    assert _ops(mine) == ["c", "u", "d", None]
    create, update, delete, _ = (m.value for m in mine)
    assert create["after"]["name"] == "Blue Heron Ltd"
    assert update["before"]["stage"] == "prospect" and update["after"]["stage"] == "customer"
    assert delete["after"] is None and delete["before"]["domain"] == "heron.example"
    positions = [(m["source"]["file"], m["source"]["pos"], m["source"]["row"]) for m in (create, update, delete)]
    assert positions == sorted(positions)
    assert create["source"]["db"] == "crm" and create["source"]["table"] == "accounts"


def test_bad_password_fails_loudly(captures: LocalStack) -> None:
    """A connector failure ends the capture with the reason and a non-zero exit, never a silent exit 0."""
    env = {**os.environ, **captures.settings_environment(), "TIDEMARK_ERP_CAPTURE_PASSWORD": "not-the-password",
           "TIDEMARK_HOME": str(captures.home / "bad-password")}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "dataflows.cli", "capture", "erp"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1
    assert "password authentication failed" in proc.stderr
    assert "not-the-password" not in proc.stderr + proc.stdout


def test_kill_9_mid_burst_loses_nothing(captures: LocalStack, reader) -> None:
    """kill -9 of the ERP capture during a 5,000-row burst, then restart: every row arrives."""
    rows, per_tx = 5000, 50
    tag = "BURST"

    def burst() -> None:
        with captures.erp_admin() as db:
            for start in range(0, rows, per_tx):
                with db.transaction():
                    db.cursor().executemany(
                        "INSERT INTO erp.customers (legal_name, tax_id, country) VALUES (%s, %s, 'NL')",
                        [(f"burst {i}", f"{tag}{i}") for i in range(start, start + per_tx)],
                    )

    topic = reader(["erp.erp.customers"])

    def burst_ids(ms: list[Message]) -> Counter[str]:
        return Counter(m.value["after"]["tax_id"] for m in ms
                       if m.value and m.value["after"] and (m.value["after"]["tax_id"] or "").startswith(tag))  # fmt: skip

    writer = threading.Thread(target=burst)
    writer.start()
    topic.wait_for(lambda ms: len(burst_ids(ms)) >= 1000, 120, "the first 1,000 burst rows")
    record = captures.table.get(capture_process_name("erp"))
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    seen_at_kill = len(burst_ids(topic.messages))
    writer.join(timeout=120)
    captures.start_capture("erp")
    wait_capture_running(captures, "erp")
    topic.wait_for(lambda ms: len(burst_ids(ms)) == rows, 180, "all 5,000 burst rows")
    counts = burst_ids(topic.messages)
    duplicates = sum(c - 1 for c in counts.values())
    print(f"\nkill -9 at {seen_at_kill}/{rows} rows delivered; after restart: 0 lost, {duplicates} duplicates replayed")
    assert set(counts) == {f"{tag}{i}" for i in range(rows)}


def _insert_one_by_one(stack: LocalStack, source: str, tag: str, rows: int, done: threading.Event) -> None:
    """`rows` inserts, each its own transaction (as users write them), tax ids tag0, tag1, ..."""
    sql = {"erp": "INSERT INTO erp.customers (legal_name, tax_id, country) VALUES (%s, %s, 'DE')",
           "crm": "INSERT INTO accounts (name, tax_id, country) VALUES (%s, %s, 'DE')"}[source]  # fmt: skip
    db = stack.erp_admin() if source == "erp" else stack.crm_admin()
    if source == "erp":
        db.autocommit = True
    with db.cursor() as cur:
        for i in range(rows):
            cur.execute(sql, (f"stop {i}", f"{tag}{i}"))
            time.sleep(0.002)
    db.close()
    done.set()


# The ERP's kill -9 is test_kill_9_mid_burst_loses_nothing.
@pytest.mark.parametrize(("source", "sig"), [("crm", signal.SIGTERM), ("crm", signal.SIGKILL), ("erp", signal.SIGTERM)],
                         ids=["crm-stop", "crm-kill-9", "erp-stop"])  # fmt: skip
def test_capture_stopped_between_transactions_loses_nothing(captures: LocalStack, reader, source: str,
                                                            sig: int) -> None:  # fmt: skip
    """A capture stopped (as `down` does) or killed while single-row transactions commit, three times,
    rows committed while it is down, restarted each time: every row arrives. Debezium's MySQL connector
    reads a MariaDB binlog as if no transaction were open, so the offset it keeps after a row names the
    next event and the rows sent; restarted from it as it is, the CRM capture skipped that many rows of
    the next transaction (without the repair, both CRM variants lost rows here)."""
    rows, tag, rounds = 3000, f"STOP{sig}-", 3
    topic = reader([f"{source}.{source}.{'customers' if source == 'erp' else 'accounts'}"])
    done = threading.Event()

    def tagged(ms: list[Message]) -> set[str]:
        return {m.value["after"]["tax_id"] for m in ms
                if m.value and m.value["after"] and (m.value["after"]["tax_id"] or "").startswith(tag)}  # fmt: skip

    writer = threading.Thread(target=_insert_one_by_one, args=(captures, source, tag, rows, done))
    writer.start()
    for n in range(rounds):
        seen = len(tagged(topic.messages))
        topic.wait_for(lambda ms, seen=seen: len(tagged(ms)) >= seen + 200, 120, f"200 more rows (round {n})")
        captures.table.stop(capture_process_name(source), sig=sig)
        time.sleep(0.5)  # rows committed while it is down
        captures.start_capture(source)
        wait_capture_running(captures, source)
    writer.join(timeout=180)
    assert done.is_set(), "the inserts did not finish"
    expected = {f"{tag}{i}" for i in range(rows)}
    with contextlib.suppress(TimeoutError):
        topic.wait_for(lambda ms: tagged(ms) >= expected, 90, f"all {rows} rows")
    lost = expected - tagged(topic.messages)
    assert not lost, f"{len(lost)} rows never captured, e.g. {sorted(lost)[:5]}"


@pytest.mark.parametrize("source", ["erp", "crm"])
def test_capture_refuses_second_instance(captures: LocalStack, source: str) -> None:
    env = {**os.environ, **captures.settings_environment()}
    proc = subprocess.run([sys.executable, "-m", "dataflows.cli", "capture", source], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "already running" in proc.stderr
