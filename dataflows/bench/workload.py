"""Synthetic but realistic capture traffic: Debezium envelopes shaped like the real engine's (the golden
fixtures), for many customers, in commit order, as Kafka (key, value) bytes per topic."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from stdnum.iso7064 import mod_11_10

EPOCH_MS = 1_780_000_000_000


@dataclass(frozen=True, slots=True)
class Envelope:
    topic: str
    source: str
    dialect: str
    key: bytes
    value: bytes


def vat_de(n: int) -> str:
    """The n-th valid German VAT number (check digit by ISO 7064 Mod 11,10, as the tax office computes it):
    generated customers carry tax ids that identity resolution accepts as real."""
    body = f"{10_000_000 + n % 90_000_000:08d}"
    return f"DE{body}{mod_11_10.calc_check_digit(body)}"


def _pg(table: str, op: str, before: dict | None, after: dict, lsn: int, ts: int, tx: int) -> bytes:
    return orjson.dumps({"before": before, "after": after, "op": op, "ts_ms": ts + 5, "source": {
        "version": "3.6.3.Final", "connector": "postgresql", "name": "erp", "ts_ms": ts, "snapshot": "false",
        "db": "erp", "sequence": f'["{lsn - 40}","{lsn}"]', "schema": "erp", "table": table, "txId": tx,
        "lsn": lsn, "xmin": None}, "transaction": None})  # fmt: skip


def _my(table: str, op: str, before: dict | None, after: dict, pos: int, ts: int) -> bytes:
    return orjson.dumps({"before": before, "after": after, "op": op, "ts_ms": ts + 5, "source": {
        "version": "3.6.3.Final", "connector": "mysql", "name": "crm", "ts_ms": ts - ts % 1000, "snapshot": "false",
        "db": "crm", "sequence": None, "table": table, "server_id": 1, "gtid": None, "file": "mariadb-bin.000001",
        "pos": pos, "row": 0, "thread": None, "query": None}, "transaction": None})  # fmt: skip


class _Rows:
    """The source tables' current rows and the sources' positions, as a generated history advances."""

    def __init__(self) -> None:
        self.erp: dict[int, dict] = {}
        self.crm: dict[int, dict] = {}
        self.subs: dict[int, dict] = {}
        self.lsn, self.pos, self.tx = 30_000_000, 4, 1000

    def create(self, i: int, t: int) -> Iterator[Envelope]:
        """Customer `i` created in the ERP, then its account in the CRM (linked by crosswalk)."""
        self.erp[i] = {"id": i, "legal_name": f"Customer {i} GmbH", "tax_id": vat_de(i), "country": "DE",
                       "payment_terms": "NET30", "credit_limit": "10000.00", "credit_status": "ok", "status": "active",
                       "notes": None, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}  # fmt: skip
        yield self._erp("customers", "c", None, self.erp[i], i, t)
        self.pos += 311
        self.crm[i] = {"id": i, "name": f"Customer {i}", "domain": f"c{i}.example", "industry": "software",
                       "owner": "dana", "stage": "prospect", "tax_id": vat_de(i), "country": "DE",
                       "erp_customer_id": i, "lifecycle_status": None, "credit_status": None,
                       "tidemark_version": None, "updated_at": "2026-01-01T00:00:00.000Z"}  # fmt: skip
        yield Envelope("crm.crm.accounts", "crm", "mysql", orjson.dumps({"id": i}),
                       _my("accounts", "c", None, self.crm[i], self.pos, t))  # fmt: skip

    def update(self, rnd: random.Random, i: int, t: int, n: int) -> Envelope:
        """One random update of customer `i`: credit status, legal name, account owner or subscription."""
        kind = rnd.random()
        if kind < 0.4:
            before = self.erp[i]
            self.erp[i] = {**before, "credit_status": "hold" if before["credit_status"] == "ok" else "ok"}
            return self._erp("customers", "u", before, self.erp[i], i, t)
        if kind < 0.6:
            before = self.erp[i]
            self.erp[i] = {**before, "legal_name": f"Customer {i} GmbH v{n}"}
            return self._erp("customers", "u", before, self.erp[i], i, t)
        if kind < 0.8:
            self.pos += 311
            before = self.crm[i]
            self.crm[i] = {**before, "owner": rnd.choice(["dana", "sam", "kim"])}
            return Envelope("crm.crm.accounts", "crm", "mysql", orjson.dumps({"id": i}),
                            _my("accounts", "u", before, self.crm[i], self.pos, t))  # fmt: skip
        before = self.subs.get(i)
        self.subs[i] = {"id": i, "customer_id": i, "plan": rnd.choice(["growth", "scale"]),
                        "seats": rnd.choice([5, 10, 20]), "status": "active", "period_start": 20500, "period_end": None,
                        "updated_at": "2026-01-01T00:00:00Z"}  # fmt: skip
        return self._erp("subscriptions", "u" if before else "c", before, self.subs[i], i, t)

    def _erp(self, table: str, op: str, before: dict | None, after: dict, i: int, t: int) -> Envelope:
        return Envelope(f"erp.erp.{table}", "erp", "postgres", orjson.dumps({"id": i}),
                        _pg(table, op, before, after, self.lsn, t, self.tx))  # fmt: skip


def generate(changes: int, customers: int, seed: int = 7, rate_per_s: float = 5000.0,
             create_share: float = 0.5) -> Iterator[Envelope]:  # fmt: skip
    """`changes` envelopes: each customer is created in the ERP and the CRM (linked by crosswalk), then
    random updates (credit status, legal name, account owner, subscriptions) until the count is reached.
    While customers remain to be created, a step creates one with probability `create_share`."""
    rnd = random.Random(seed)
    rows = _Rows()
    ts, step = float(EPOCH_MS), 1000.0 / rate_per_s
    emitted = created = 0
    while emitted < changes:
        ts += step
        rows.lsn += 64
        rows.tx += 1
        if created < customers and (created < 1 or rnd.random() < create_share):
            yield from rows.create(created, int(ts))
            created += 1
            emitted += 2
            continue
        yield rows.update(rnd, rnd.randrange(created), int(ts), emitted)
        emitted += 1


def mixed_statement(rnd: random.Random, customer: int, n: int) -> tuple[str, str, tuple]:
    """One statement of the steady mixed workload (soak run, fault tests) against the demo tables, as
    (system, SQL, parameters): ERP credit flips, legal-name edits and subscription changes, CRM owner edits."""
    kind = rnd.random()
    if kind < 0.35:
        return ("erp", "UPDATE erp.customers SET credit_status = CASE credit_status WHEN 'ok' THEN 'hold' ELSE 'ok' END "
                "WHERE id = %s", (customer,))  # fmt: skip
    if kind < 0.55:
        return "erp", "UPDATE erp.customers SET legal_name = %s WHERE id = %s", (f"Customer {customer} GmbH r{n}", customer)
    if kind < 0.7:
        return ("erp", "INSERT INTO erp.subscriptions (id, customer_id, plan, seats, status) VALUES (%s, %s, 'growth', %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET seats = excluded.seats, status = excluded.status",
                (customer, customer, rnd.choice([5, 10, 20]), rnd.choice(["active", "cancelled", "active", "pending"])))  # fmt: skip
    return "crm", "UPDATE accounts SET owner = %s WHERE id = %s", (rnd.choice(["dana", "sam", "kim"]), customer)
