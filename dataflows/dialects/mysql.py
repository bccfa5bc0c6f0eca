"""The MySQL family (MySQL, MariaDB): Debezium's binlog connectors as a source, and a target (CRM write-back)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataflows.dialects.base import Dialect, EnvelopeError, LiveReadError, Property, driver_reason

WHOLE_SECOND_US = 999_999


@dataclass(frozen=True)
class BinlogEvent:
    """One row of SHOW BINLOG EVENTS: where the event starts and ends, its type and its text."""

    pos: int
    end: int
    kind: str
    info: str


class MySQL(Dialect):
    name = "mysql"
    connector_classes = ("io.debezium.connector.mysql.MySqlConnector",
                         "io.debezium.connector.mariadb.MariaDbConnector")  # fmt: skip
    default_port = 3306
    container_key = "database.include.list"
    heartbeat_required = True  # an idle binlog has no events to hang a heartbeat on without the keep-alive

    def container(self, source: dict[str, Any]) -> Any:
        return source.get("db")

    def position(self, source: dict[str, Any], rank: int) -> tuple[tuple[int, ...], str]:
        file, pos, row = source.get("file"), source.get("pos"), source.get("row", 0)
        if file is None or pos is None:
            msg = "MySQL-family change without source.file/source.pos"
            raise EnvelopeError(msg)
        _, _, suffix = str(file).rpartition(".")
        try:
            index = int(suffix)
        except ValueError:
            msg = f"unexpected binlog file name {file!r}"
            raise EnvelopeError(msg) from None
        return (index, int(pos), int(row or 0), rank), f"{file}:{pos}:{row or 0}"

    def commit_resolution_us(self, source: dict[str, Any], envelope: dict[str, Any]) -> int:
        # The binlog records whole seconds: the commit lies within that second, and before Debezium read it
        # (the envelope's own ts_ms). A source that gives finer times (ts_us) is taken at its word.
        ts_ms, ts_us = source["ts_ms"], source.get("ts_us")
        if ts_ms % 1000 or (isinstance(ts_us, int) and ts_us % 1_000_000):
            return 0
        read_ms = envelope.get("ts_ms")
        if isinstance(read_ms, int) and not isinstance(read_ms, bool) and read_ms >= ts_ms:
            return min(WHOLE_SECOND_US, (read_ms - ts_ms) * 1000)
        return WHOLE_SECOND_US

    def embedded_properties(self, name: str, state_dir: Path) -> dict[str, str]:
        # The binlog carries no table definitions: Debezium keeps their history itself.
        return {"schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
                "schema.history.internal.file.filename": str(state_dir / "schema-history.dat")}  # fmt: skip

    def connect_properties(self, name: str, bootstrap: str) -> dict[str, str]:
        return {"schema.history.internal.kafka.bootstrap.servers": bootstrap,
                "schema.history.internal.kafka.topic": f"_tidemark.schema-history.{name}"}  # fmt: skip

    def read_columns(self, prop: Property, tables: Sequence[str], timeout_s: int) -> list[tuple[str, str, str]]:
        return self._query(prop, timeout_s, "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                           "WHERE CONCAT(table_schema, '.', table_name) IN %s", (list(tables),))  # fmt: skip

    def log_end(self, prop: Property, timeout_s: int) -> str | None:
        return None  # the binlog dump thread shows no position, only whether it has sent all (below)

    def sent_to_capture(self, prop: Property, mark: str | None, timeout_s: int) -> bool:
        # Asked after `down` began: a dump thread that has sent the whole binlog now has sent everything
        # committed before. The newest thread is the capture's (a killed capture's thread may linger).
        rows = self._query(prop, timeout_s, "SELECT STATE FROM information_schema.PROCESSLIST WHERE COMMAND = "
                           "'Binlog Dump' AND USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) ORDER BY ID DESC "
                           "LIMIT 1", ())  # fmt: skip
        return bool(rows) and "has sent all binlog" in str(rows[0][0])

    def binlog_events(self, prop: Property, timeout_s: int, file: str, start: int, limit: int) -> list[BinlogEvent]:
        """Up to `limit` events of binlog `file` from position `start` (an event's start), in order."""
        rows = self._query(prop, timeout_s, "SHOW BINLOG EVENTS IN %s FROM %s LIMIT %s", (file, start, limit))
        return [BinlogEvent(int(pos), int(end), str(kind), str(info or "")) for _, pos, kind, _, end, info in rows]

    def _query(self, prop: Property, timeout_s: int, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """`sql`'s rows, on a connection with the connector's own properties (the capture user)."""
        import pymysql  # noqa: PLC0415 - only a live check needs the driver, never decode or mapping

        params = {"host": prop("database.hostname", ""), "port": int(prop("database.port", str(self.default_port))),
                  "user": prop("database.user", ""), "password": prop("database.password", "")}  # fmt: skip
        try:
            db = pymysql.connect(**params, connect_timeout=timeout_s)
            try:
                with db.cursor() as cur:
                    cur.execute(sql, args or None)
                    return list(cur.fetchall())
            finally:
                db.close()
        except pymysql.Error as e:
            raise LiveReadError(driver_reason(e)) from e

    def upsert_template(self, table: str, columns: Sequence[str], key: str, version: str) -> str:
        v = version
        # The version column is assigned last, so every IF still compares against the old version.
        updates = ", ".join(f"{c} = IF(VALUES({v}) > {v}, VALUES({c}), {c})" for c in columns if c not in (key, v))
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
                f"ON DUPLICATE KEY UPDATE {updates}, {v} = GREATEST({v}, VALUES({v}))")  # fmt: skip

    def null_safe_equal(self, column: str) -> str:
        return f"{column} <=> ?"
