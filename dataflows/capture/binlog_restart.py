"""A binlog capture's stored offset made safe to restart from, before its engine starts.

Debezium's MySQL connector (the only binlog connector of the embedded bundle) does not take MariaDB's GTID
event for the start of a transaction, so over a MariaDB binlog it keeps every offset as if no transaction
were open: the position of the event *after* the one being read, plus `row`, the rows of that event
already sent. Restarted from such an offset, it would skip `row` rows of the next rows event it reads,
another statement's (a stop or a crash right after a transaction's last row lost the next transaction's
first rows). An offset taken inside a transaction, as the connector keeps them over MySQL, also counts the
events to skip (`event`, at least 1: the transaction's own start); one with `row` and no `event` is
therefore one of these. It is moved back to the start of the transaction of the event it was taken in:
the rows re-read from there are replays, which the dataflow drops by their source position.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataflows.dialects import BY_CONNECTOR_CLASS
from dataflows.dialects.base import LiveReadError
from dataflows.dialects.mysql import BinlogEvent, MySQL

log = logging.getLogger(__name__)

EventQuery = Callable[[str, int, int], list[BinlogEvent]]  # (file, from position, limit) -> events in order

READ_TIMEOUT_S = 10
PAGE = 10_000  # binlog events per query while looking for a transaction's start
TRANSACTION_STARTS = ("Gtid", "Anonymous_Gtid")  # MariaDB's GTID event opens its transactions (and DDL)


class RestartError(RuntimeError):
    """The stored offset is unsafe and the binlog cannot tell where to restart instead."""


def unsafe(offset: Mapping[str, Any]) -> bool:
    """An offset taken outside a transaction after some rows of an event: its `pos` is past that event.
    (One taken during a snapshot is not: an unfinished snapshot is taken again, not resumed.)"""
    binlog = "file" in offset and "pos" in offset and not offset.get("snapshot")
    return binlog and bool(offset.get("row")) and not offset.get("event")


def transaction_start(events: Iterable[BinlogEvent], end: int) -> int:
    """The position of the transaction start (or BEGIN) last seen before the event that ends at `end`,
    `events` read in order from the binlog file's start; the event itself when no start came before it."""
    start: int | None = None
    for event in events:
        if event.kind in TRANSACTION_STARTS or (event.kind == "Query" and event.info.strip().upper() == "BEGIN"):
            start = event.pos
        if event.end == end:
            return event.pos if start is None else start
        if event.end > end:
            break
    msg = f"no binlog event ends at position {end}"
    raise RestartError(msg)


def safe_offset(offset: Mapping[str, Any], events: Iterable[BinlogEvent]) -> dict[str, Any]:
    """`offset` moved back to its transaction's start, nothing to skip there (see the module docstring)."""
    moved = {k: v for k, v in offset.items() if k not in ("row", "event")}
    moved["pos"] = transaction_start(events, int(offset["pos"]))
    return moved


def read_events(query: EventQuery, file: str) -> Iterator[BinlogEvent]:
    """Every event of binlog `file` from its start, a page per query (`query(file, from_pos, limit)`)."""
    pos = 4  # the first event, after the file's magic number
    while True:
        page = query(file, pos, PAGE)
        yield from page
        if len(page) < PAGE:
            return
        pos = page[-1].end


@dataclass(frozen=True)
class OffsetsFile:
    """Kafka Connect's FileOffsetBackingStore file: a Java-serialized map of JSON key bytes to JSON value
    bytes. Read and written through the JVM the engine runs in, so the format is Kafka's own."""

    path: Path

    def read(self) -> dict[bytes, bytes]:
        from jpype import JClass  # noqa: PLC0415 - the JVM is up only inside a capture process

        stream = JClass("java.io.ObjectInputStream")(JClass("java.io.FileInputStream")(str(self.path)))
        try:
            raw = stream.readObject()
        finally:
            stream.close()
        return {bytes(k): bytes(raw.get(k)) for k in raw.keySet()}

    def write(self, entries: Mapping[bytes, bytes]) -> None:
        from jpype import JArray, JByte, JClass  # noqa: PLC0415 - the JVM is up only inside a capture process

        raw = JClass("java.util.HashMap")()
        for key, value in entries.items():
            raw.put(JArray(JByte)(key), JArray(JByte)(value))
        temporary = self.path.with_suffix(".repair")
        stream = JClass("java.io.ObjectOutputStream")(JClass("java.io.FileOutputStream")(str(temporary)))
        try:
            stream.writeObject(raw)
        finally:
            stream.close()
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)


def make_safe(source: str, offsets: OffsetsFile, query: EventQuery) -> bool:
    """Rewrite each unsafe binlog offset in `offsets` to its transaction's start; True if one was moved.
    Raises RestartError when the binlog cannot say where that is (starting anyway could lose rows)."""
    if not offsets.path.exists():
        return False
    entries = offsets.read()
    moved = False
    for key, value in entries.items():
        offset = json.loads(value)
        if isinstance(offset, dict) and unsafe(offset):
            fixed = safe_offset(offset, read_events(query, str(offset["file"])))
            log.info("capture %s: restarting from %s:%s (its transaction's start), not %s:%s skipping %s rows: "
                     "the rows in between are replays", source, fixed["file"], fixed["pos"], offset["file"],
                     offset["pos"], offset["row"])  # fmt: skip
            entries[key] = json.dumps(fixed, separators=(",", ":")).encode()
            moved = True
    if moved:
        offsets.write(entries)
    return moved


def prepare(properties: Mapping[str, str]) -> None:
    """Before an engine starts on `properties`: make its stored offset safe (binlog sources only)."""
    dialect = BY_CONNECTOR_CLASS.get(properties.get("connector.class", ""))
    filename = properties.get("offset.storage.file.filename")
    if not isinstance(dialect, MySQL) or not filename:
        return
    prop = lambda key, default: properties.get(key, default)  # noqa: E731 - the dialect's Property
    query: EventQuery = functools.partial(dialect.binlog_events, prop, READ_TIMEOUT_S)
    try:
        make_safe(properties.get("name", "?"), OffsetsFile(Path(filename)), query)
    except LiveReadError as e:
        msg = f"cannot read the binlog to find a safe restart position ({e}); not starting from an unsafe one"
        raise RestartError(msg) from e
