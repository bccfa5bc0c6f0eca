"""A binlog offset kept outside a transaction is moved back to its transaction's start, so a restart re-reads
the rows it had not sent and skips none of the next transaction's (dataflows.capture.binlog_restart)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflows.capture.binlog_restart import RestartError, read_events, safe_offset, transaction_start, unsafe
from dataflows.dialects.mysql import BinlogEvent


@dataclass(frozen=True)
class Rows:
    """A rows event of the generated binlog: its event and the rows it carries (globally numbered)."""

    event: BinlogEvent
    rows: tuple[int, ...]
    start: int  # its transaction's start


@st.composite
def binlogs(draw: st.DrawFn) -> tuple[list[BinlogEvent], list[Rows]]:
    """A MariaDB binlog as SHOW BINLOG EVENTS lists it: transactions of statements of rows events, and DDL."""
    events: list[BinlogEvent] = []
    rows: list[Rows] = []
    pos, row = 4, 0

    def add(kind: str, info: str = "") -> BinlogEvent:
        nonlocal pos
        event = BinlogEvent(pos, pos + draw(st.integers(20, 400)), kind, info)
        events.append(event)
        pos = event.end
        return event

    add("Format_desc")
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()) and draw(st.booleans()):
            add("Gtid", "GTID 0-1-1")
            add("Query", "ALTER TABLE accounts ADD COLUMN x INT")
            continue
        start = add("Gtid", "BEGIN GTID 0-1-2").pos
        for _ in range(draw(st.integers(1, 3))):
            add("Annotate_rows", "UPDATE accounts ...")
            add("Table_map", "table_id: 24 (crm.accounts)")
            for _ in range(draw(st.integers(1, 3))):
                n = draw(st.integers(1, 4))
                rows.append(Rows(add("Update_rows_v1"), tuple(range(row, row + n)), start))
                row += n
        add("Xid", "COMMIT /* xid=9 */")
    return events, rows


def replay(events: list[BinlogEvent], rows: list[Rows], offset: dict[str, int]) -> set[int]:
    """The rows Debezium sends when restarted from `offset`: it reads from `pos`, skipping `row` rows of
    the first rows event it reads."""
    skip, sent = offset.get("row", 0), set()
    for r in (r for r in rows if r.event.pos >= offset["pos"]):
        sent.update(r.rows[skip:])
        skip = 0
    return sent


@given(binlogs().filter(lambda binlog: binlog[1]), st.data())
def test_a_restart_from_the_moved_offset_sends_every_row_not_sent_before(binlog: tuple[list[BinlogEvent], list[Rows]],
                                                                         data: st.DataObject) -> None:  # fmt: skip
    events, rows = binlog
    stopped_in = data.draw(st.sampled_from(rows))
    sent_before = data.draw(st.integers(1, len(stopped_in.rows)))  # rows of that event sent when it stopped
    # What Debezium keeps outside a transaction: the next event's position and the rows sent.
    kept = {"file": "mariadb-bin.000001", "pos": stopped_in.event.end, "row": sent_before, "ts_sec": 1}
    assert unsafe(kept)
    not_sent = {i for r in rows for i in r.rows if i > stopped_in.rows[sent_before - 1]}
    moved = safe_offset(kept, iter(events))
    assert moved["pos"] == stopped_in.start and "row" not in moved
    assert {k: v for k, v in moved.items() if k != "pos"} == {"file": "mariadb-bin.000001", "ts_sec": 1}
    assert replay(events, rows, moved) >= not_sent


def test_the_offset_as_kept_loses_the_next_transactions_first_row() -> None:
    """The defect the move repairs, in the model the property uses: a stop after a transaction's only row."""
    events = [BinlogEvent(4, 100, "Gtid", "BEGIN GTID 0-1-1"), BinlogEvent(100, 200, "Table_map", ""),
              BinlogEvent(200, 300, "Write_rows_v1", ""), BinlogEvent(300, 331, "Xid", ""),
              BinlogEvent(331, 400, "Gtid", "BEGIN GTID 0-1-2"), BinlogEvent(400, 500, "Table_map", ""),
              BinlogEvent(500, 600, "Write_rows_v1", ""), BinlogEvent(600, 631, "Xid", "")]  # fmt: skip
    rows = [Rows(events[2], (0,), 4), Rows(events[6], (1,), 331)]
    kept = {"file": "f.000001", "pos": 300, "row": 1}
    assert replay(events, rows, kept) == set()  # row 1 lost
    assert replay(events, rows, safe_offset(kept, iter(events))) == {0, 1}


@pytest.mark.parametrize(("offset", "expected"), [
    ({"file": "f.000001", "pos": 300, "row": 1}, True),  # outside a transaction, after a row
    ({"file": "f.000001", "pos": 4, "event": 2, "row": 1}, False),  # inside one: pos is its start
    ({"file": "f.000001", "pos": 300}, False),  # between events: nothing to skip
    ({"file": "f.000001", "pos": 300, "row": 1, "snapshot": True}, False),  # a snapshot's: taken again
    ({"lsn": 12345, "txId": 7}, False),  # not a binlog offset
])  # fmt: skip
def test_only_a_row_count_without_events_to_skip_is_unsafe(offset: dict[str, int], expected: bool) -> None:
    assert unsafe(offset) is expected


def test_a_position_no_event_ends_at_is_refused() -> None:
    events = [BinlogEvent(4, 100, "Gtid", "BEGIN GTID 0-1-1"), BinlogEvent(100, 200, "Write_rows_v1", "")]
    with pytest.raises(RestartError, match="no binlog event ends at position 150"):
        transaction_start(iter(events), 150)


def test_events_are_read_a_page_at_a_time_from_the_file_start() -> None:
    events = [BinlogEvent(p, p + 10, "Write_rows_v1", "") for p in range(4, 250_004, 10)]
    asked: list[int] = []

    def query(file: str, start: int, limit: int) -> list[BinlogEvent]:
        asked.append(start)
        return [e for e in events if e.pos >= start][:limit]

    assert list(read_events(query, "f.000001")) == events
    assert asked == [4, 100_004, 200_004]
