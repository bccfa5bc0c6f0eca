"""Retained WAL of a PostgreSQL source's replication slot: an idle or abandoned slot keeps WAL forever,
so SREs must see it grow. Polled in the background with the capture's own (replication) credentials."""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from dataflows import metrics

log = logging.getLogger(__name__)
QUERY = ("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
         "FROM pg_replication_slots WHERE slot_name = %s")  # fmt: skip


class SlotMonitor:
    def __init__(self, source: str, conninfo: dict[str, Any], slot: str, interval_s: float = 15.0) -> None:
        self.source, self.conninfo, self.slot, self.interval_s = source, conninfo, slot, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"slot-monitor-{source}", daemon=True)

    @classmethod
    def for_properties(cls, source: str, props: dict[str, str]) -> SlotMonitor | None:
        if props.get("connector.class") != "io.debezium.connector.postgresql.PostgresConnector":
            return None
        conninfo = {"host": props["database.hostname"], "port": int(props.get("database.port", "5432")),
                    "user": props["database.user"], "password": props["database.password"],
                    "dbname": props.get("database.dbname", "postgres"), "connect_timeout": 5}  # fmt: skip
        return cls(source, conninfo, props.get("slot.name", "debezium"))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sample(self) -> int | None:
        with psycopg.connect(**self.conninfo) as conn:
            row = conn.execute(QUERY, (self.slot,)).fetchone()
        return None if row is None else int(row[0])

    def _loop(self) -> None:
        gauge = metrics.SLOT_RETAINED_WAL.labels(self.source, self.slot)
        while not self._stop.is_set():
            try:
                retained = self.sample()
                if retained is not None:
                    gauge.set(retained)
            except psycopg.Error as e:
                log.warning("cannot read replication slot %s: %s", self.slot, type(e).__name__)
            self._stop.wait(self.interval_s)
