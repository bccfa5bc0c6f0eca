"""Write-back of ERP-owned facts into the CRM's accounts, so sales sees what finance knows.

Each write bumps the account's `tidemark_version`: its capture is recognised as Tidemark's own echo
(connectors/crm.yaml `echo_column`) and acted on by nobody, while a user's edit of the same row is not
an echo and flows as usual. Writes are guarded: an older version or unchanged facts write nothing.
A batch is one UPDATE joined with its rows (many accounts per statement), the newest version per account.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import pymysql

from dataflows.core.outputs import GoldenRecordUpdated
from dataflows.dialects import MYSQL
from dataflows.outputs import Destination
from dataflows.targets.retry import with_reconnect
from dataflows.targets.sql import chunks, multi_row, newest_per_key, render

FACTS = ["erp_customer_id", "credit_status", "lifecycle_status"]
TRANSIENT = (pymysql.err.OperationalError, pymysql.err.InterfaceError)
ROWS_PER_STATEMENT = 500


def _update_one() -> str:
    """UPDATE of the accounts named by a one-row derived table (facts, version, id), guarded: only a newer
    version, and only when some fact differs (an unchanged fact writes nothing, so nothing is captured)."""
    row = ", ".join([*(f"? AS {f}" for f in FACTS), "? AS new_version", "? AS id"])
    sets = ", ".join([*(f"a.{f} = n.{f}" for f in FACTS), "a.tidemark_version = n.new_version"])
    same = " AND ".join(MYSQL.null_safe_equal(f"a.{f}").replace("?", f"n.{f}") for f in FACTS)
    guard = f"(a.tidemark_version IS NULL OR a.tidemark_version < n.new_version) AND NOT ({same})"
    return render(f"UPDATE accounts AS a JOIN (SELECT {row}) AS n ON a.id = n.id SET {sets} WHERE {guard}", MYSQL)


UPDATE = _update_one()
_ROW = UPDATE[UPDATE.index("SELECT ") : UPDATE.index(") AS `n`")]


@lru_cache(maxsize=ROWS_PER_STATEMENT)
def update_rows(rows: int) -> str:
    """UPDATE for `rows` accounts in one statement."""
    return multi_row(UPDATE, _ROW, rows, " UNION ALL ")


def writebacks(record: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One guarded update per CRM account of a golden record: (erp_customer_id, credit_status,
    lifecycle_status, version, account id)."""
    ids = record.get("source_ids", {})
    crm_ids, erp_ids = ids.get("crm", []), ids.get("erp", [])
    if not crm_ids:
        return []
    # Without a linked ERP customer yet, the account keeps the crosswalk it states (found by `tidemark chaos`:
    # writing NULL there unlinked accounts processed before their ERP customer, at the next user edit).
    erp_id = erp_ids[0] if erp_ids else record.get("erp_customer_id")
    facts = (int(erp_id) if erp_id else None, record.get("credit_status"), record.get("lifecycle_status"))
    version = record["version"]
    return [(*facts, version, int(account)) for account in crm_ids]


DESTINATION = Destination[tuple[Any, ...]]("crm_writeback", {GoldenRecordUpdated: lambda u: writebacks(u.record)})


class CrmWriter:
    def __init__(self, host: str, port: int, user: str, password: str, database: str) -> None:
        self.params = {"host": host, "port": port, "user": user, "password": password, "database": database,
                       "autocommit": False, "connect_timeout": 10}  # fmt: skip
        self.conn = with_reconnect("CRM connect", lambda: pymysql.connect(**self.params), lambda: None, TRANSIENT)

    def _reconnect(self) -> None:
        try:
            self.conn.close()
        except pymysql.Error:
            pass
        self.conn = pymysql.connect(**self.params)

    def write(self, updates: Iterable[tuple[Any, ...]]) -> int:
        updates = list(updates)
        if not updates:
            return 0

        newest = newest_per_key(updates, 4, 3)

        def attempt() -> int:
            with self.conn.cursor() as cur:
                changed = sum(cur.execute(update_rows(len(chunk)), [v for row in chunk for v in row])
                              for chunk in chunks(newest, ROWS_PER_STATEMENT))  # fmt: skip
            self.conn.commit()
            return changed

        return with_reconnect("CRM write-back", attempt, self._reconnect, TRANSIENT)

    def close(self) -> None:
        self.conn.close()
