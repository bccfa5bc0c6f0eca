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


def generate(changes: int, customers: int, seed: int = 7, rate_per_s: float = 5000.0,
             create_share: float = 0.5) -> Iterator[Envelope]:  # fmt: skip
    """`changes` envelopes: each customer is created in the ERP and the CRM (linked by crosswalk), then
    random updates (credit status, legal name, account owner, subscriptions) until the count is reached.
    While customers remain to be created, a step creates one with probability `create_share`."""
    rnd = random.Random(seed)
    erp_rows: dict[int, dict] = {}
    crm_rows: dict[int, dict] = {}
    subs: dict[int, dict] = {}
    lsn, pos, tx, ts = 30_000_000, 4, 1000, float(EPOCH_MS)
    step = 1000.0 / rate_per_s
    emitted = 0
    created = 0
    while emitted < changes:
        ts += step
        t = int(ts)
        lsn += 64
        tx += 1
        if created < customers and (created < 1 or rnd.random() < create_share):
            i = created
            created += 1
            erp_rows[i] = {"id": i, "legal_name": f"Customer {i} GmbH", "tax_id": vat_de(i), "country": "DE",
                           "payment_terms": "NET30", "credit_limit": "10000.00", "credit_status": "ok", "status": "active",
                           "notes": None, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}  # fmt: skip
            yield Envelope("erp.erp.customers", "erp", "postgres", orjson.dumps({"id": i}),
                           _pg("customers", "c", None, erp_rows[i], lsn, t, tx))  # fmt: skip
            pos += 311
            crm_rows[i] = {"id": i, "name": f"Customer {i}", "domain": f"c{i}.example", "industry": "software",
                           "owner": "dana", "stage": "prospect", "tax_id": vat_de(i), "country": "DE",
                           "erp_customer_id": i, "lifecycle_status": None, "credit_status": None,
                           "tidemark_version": None, "updated_at": "2026-01-01T00:00:00.000Z"}  # fmt: skip
            yield Envelope("crm.crm.accounts", "crm", "mysql", orjson.dumps({"id": i}),
                           _my("accounts", "c", None, crm_rows[i], pos, t))  # fmt: skip
            emitted += 2
            continue
        i = rnd.randrange(created)
        kind = rnd.random()
        if kind < 0.4:
            before = erp_rows[i]
            after = {**before, "credit_status": "hold" if before["credit_status"] == "ok" else "ok"}
            erp_rows[i] = after
            yield Envelope("erp.erp.customers", "erp", "postgres", orjson.dumps({"id": i}),
                           _pg("customers", "u", before, after, lsn, t, tx))  # fmt: skip
        elif kind < 0.6:
            before = erp_rows[i]
            after = {**before, "legal_name": f"Customer {i} GmbH v{emitted}"}
            erp_rows[i] = after
            yield Envelope("erp.erp.customers", "erp", "postgres", orjson.dumps({"id": i}),
                           _pg("customers", "u", before, after, lsn, t, tx))  # fmt: skip
        elif kind < 0.8:
            pos += 311
            before = crm_rows[i]
            after = {**before, "owner": rnd.choice(["dana", "sam", "kim"])}
            crm_rows[i] = after
            yield Envelope("crm.crm.accounts", "crm", "mysql", orjson.dumps({"id": i}),
                           _my("accounts", "u", before, after, pos, t))  # fmt: skip
        else:
            before = subs.get(i)
            after = {"id": i, "customer_id": i, "plan": rnd.choice(["growth", "scale"]), "seats": rnd.choice([5, 10, 20]),
                     "status": "active", "period_start": 20500, "period_end": None, "updated_at": "2026-01-01T00:00:00Z"}  # fmt: skip
            subs[i] = after
            yield Envelope("erp.erp.subscriptions", "erp", "postgres", orjson.dumps({"id": i}),
                           _pg("subscriptions", "u" if before else "c", before, after, lsn, t, tx))  # fmt: skip
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
