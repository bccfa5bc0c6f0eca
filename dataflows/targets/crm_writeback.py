"""Write-back of ERP-owned facts into the CRM's accounts, so sales sees what finance knows.

Each write bumps the account's `tidemark_version`: its capture is recognised as Tidemark's own echo
(connectors/crm.yaml `echo_column`) and acted on by nobody, while a user's edit of the same row is not
an echo and flows as usual. Writes are guarded: an older version or unchanged facts write nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pymysql

from dataflows.dialects import MYSQL
from dataflows.targets.retry import with_reconnect
from dataflows.targets.sql import guarded_update

FACTS = ["erp_customer_id", "credit_status", "lifecycle_status"]
TRANSIENT = (pymysql.err.OperationalError, pymysql.err.InterfaceError)
UPDATE = guarded_update("accounts", FACTS, "id", "tidemark_version", MYSQL)


def writebacks(record: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One guarded update per CRM account of a golden record (parameters for UPDATE)."""
    ids = record.get("source_ids", {})
    crm_ids, erp_ids = ids.get("crm", []), ids.get("erp", [])
    if not crm_ids:
        return []
    # Without a linked ERP customer yet, the account keeps the crosswalk it states (found by `tidemark chaos`:
    # writing NULL there unlinked accounts processed before their ERP customer, at the next user edit).
    erp_id = erp_ids[0] if erp_ids else record.get("erp_customer_id")
    facts = (int(erp_id) if erp_id else None, record.get("credit_status"), record.get("lifecycle_status"))
    version = record["version"]
    return [(*facts, version, int(account), version, *facts) for account in crm_ids]


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

        def attempt() -> int:
            with self.conn.cursor() as cur:
                changed = sum(cur.execute(UPDATE, params) for params in updates)
            self.conn.commit()
            return changed

        return with_reconnect("CRM write-back", attempt, self._reconnect, TRANSIENT)

    def close(self) -> None:
        self.conn.close()
