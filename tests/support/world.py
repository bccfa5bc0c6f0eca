"""A tiny simulated ERP + CRM: rows written in commit order become canonical changes through the real
connector mappings (connectors/erp.yaml, connectors/crm.yaml), with realistic positions and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dataflows.ingest.decode import ChangeRecord
from dataflows.core.change import CanonicalChange
from dataflows.ingest.mapping import SourceMapper
from tests.support.fixtures import connector

MAPPERS = {s: SourceMapper(connector(s)) for s in ("erp", "crm")}
TABLES = {"erp": "erp", "crm": "crm"}
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
# Every column of the demo schemas (infra/*/schema.sql), so rows look like Debezium's full images.
COLUMNS = {
    "customers": ["legal_name", "tax_id", "country", "payment_terms", "credit_limit", "credit_status", "status", "notes"],
    "billing_accounts": ["customer_id", "currency", "approval_status"],
    "subscriptions": ["customer_id", "plan", "seats", "status", "period_start", "period_end"],
    "invoices": ["customer_id", "amount", "currency", "due_date", "status"],
    "accounts": ["name", "domain", "industry", "owner", "stage", "tax_id", "country", "erp_customer_id",
                 "lifecycle_status", "credit_status", "tidemark_version"],
    "contacts": ["account_id", "first_name", "last_name", "email", "phone", "title"],
    "opportunities": ["account_id", "name", "stage", "amount", "close_date"],
}


class World:
    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self.rows: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.lsn = 1000
        self.binlog_pos = 4
        self.tx = 500
        self.log: list[CanonicalChange] = []

    def write(self, source: str, table: str, row_id: int, values: dict[str, Any] | None = None, *,
              delete: bool = False, advance_ms: int = 1000, snapshot: bool = False) -> CanonicalChange:
        """Insert, update (merging `values` into the row) or delete a row; return its canonical change."""
        self.now += timedelta(milliseconds=advance_ms)
        key = (source, table, row_id)
        before = self.rows.get(key)
        if delete:
            op, after = "d", None
            del self.rows[key]
        else:
            empty = dict.fromkeys(COLUMNS[table])
            after = {**empty, **(before or {}), **(values or {}), "id": row_id}
            op = "r" if snapshot else ("u" if before else "c")
            self.rows[key] = after
        self.tx += 1
        if source == "erp":
            self.lsn += 56
            position, text = (self.lsn, 0 if delete else 1), f"lsn:{self.lsn}"
        else:
            self.binlog_pos += 311
            position, text = (1, self.binlog_pos, 0, 0 if delete else 1), f"mariadb-bin.000001:{self.binlog_pos}:0"
        record = ChangeRecord(source=source, table=f"{TABLES[source]}.{table}", op=op, key={"id": row_id},  # type: ignore[arg-type]
                              before=before if op in ("u", "d") else None, after=after, position=position,
                              position_text=text, commit_time=self.now, tx_id=str(self.tx), snapshot=snapshot)  # fmt: skip
        change = MAPPERS[source].map(record)
        self.log.append(change)
        return change
