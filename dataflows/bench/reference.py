"""The fault-free reference: every captured change replayed offline through a fresh consistency core in
commit order, and what the running pipeline published compared with it (customer_360, the CRM write-back,
lifecycle event ids). Separate fault-free clusters would assign other LSNs and so other ids: replaying
the very changes captured is what makes ids comparable. Used by the fault tests and `tidemark chaos`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from dataflows.bench.topics import Message
from dataflows.config.connectors import ConnectorConfig, load_connectors
from dataflows.core.core import ConsistencyCore
from dataflows.ingest.decode import decode
from dataflows.ingest.mapping import SourceMapper
from dataflows.config.policy import build_policy
from dataflows.core.reorder import order_key
from dataflows.stack.local import LocalStack


def table_topics(connectors: dict[str, ConnectorConfig]) -> list[str]:
    """The capture topics holding row changes (heartbeats are not changes)."""
    return sorted({c.topic_for(t) for c in connectors.values() for t in c.tables})


def offline(stack: LocalStack, messages: Iterable[Message]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Fault-free processing of captured changes: decode, map, commit order, one fresh core.
    Returns (golden records by customer id, lifecycle events by event id)."""
    connectors = load_connectors(stack.settings.connectors_dir)
    mappers = {c.topic_prefix: (c, SourceMapper(c)) for c in connectors.values()}
    first: dict[str, Any] = {}
    for m in messages:
        if m.value is None:
            continue
        config, mapper = mappers[m.topic.split(".")[0]]
        record = decode(orjson.dumps(m.key), orjson.dumps(m.value), source=config.name, dialect=config.dialect)
        change = mapper.map(record)  # type: ignore[arg-type]
        first.setdefault(change.change_id, change)  # a capture's replay after kill -9 re-reads a change
    core = ConsistencyCore(build_policy(connectors.values()))
    out = core.submit_batch(sorted(first.values(), key=order_key), 0.0)
    out.extend(core.flush(0.0))
    return {cid: r.as_dict() for cid, r in core.records.items()}, {e["event_id"]: e for e in out.events}


def project(records: dict[str, Any]) -> dict[str, tuple]:
    """What customer_360 must hold per golden customer with an ERP identity."""
    return {cid: (r.get("legal_name"), r.get("display_name"), r.get("credit_status"), r.get("lifecycle_status"),
                  r.get("sales_owner")) for cid, r in records.items() if r.get("source_ids", {}).get("erp")}  # fmt: skip


def actual(stack: LocalStack) -> dict[str, tuple]:
    """customer_360 as the pipeline wrote it, projected as `project` does."""
    with stack.erp_admin("tidemark") as ops:
        rows = ops.execute("SELECT customer_id, legal_name, display_name, credit_status, lifecycle_status, sales_owner "
                           "FROM customer_360 WHERE merged_into IS NULL AND cardinality(erp_customer_ids) > 0").fetchall()  # fmt: skip
    return {r[0]: tuple(r[1:]) for r in rows}


def written_back(stack: LocalStack, base: int) -> dict[int, tuple]:
    """CRM account id (>= base) -> (ERP id, credit status, lifecycle status) as the pipeline wrote them."""
    crm = stack.crm_admin()
    try:
        with crm.cursor() as cur:
            cur.execute("SELECT id, erp_customer_id, credit_status, lifecycle_status FROM accounts WHERE id >= %s",
                        (base,))  # fmt: skip
            return {int(r[0]): tuple(r[1:]) for r in cur.fetchall()}
    finally:
        crm.close()


def expected_write_back(records: dict[str, Any], base: int) -> dict[int, tuple]:
    """What the write-back must hold for every CRM account (id >= base) of a golden record with an ERP id."""
    expected = {}
    for r in records.values():
        ids = r.get("source_ids", {})
        for account in ids.get("crm", []) if ids.get("erp") else []:
            if int(account) >= base:
                expected[int(account)] = (int(ids["erp"][0]), r.get("credit_status"), r.get("lifecycle_status"))
    return expected


def brief(events: list[dict[str, Any]]) -> list[tuple]:
    """Enough to tell two events apart: the change that caused it is part of an event's id."""
    return sorted((e["occurred_at"], e["event_type"], e["customer_id"][:8], e["source_position"],
                   e["causation_id"][:8]) for e in events)[:6]  # fmt: skip


@dataclass
class Comparison:
    """The running pipeline's outputs against the fault-free reference of the same captured changes."""

    events: int = 0  # distinct lifecycle events the reference emits
    copies: int = 0  # lifecycle records on the topic, duplicates included
    distinct: int = 0  # distinct event ids on the topic
    rows_differ: list[tuple] = field(default_factory=list)  # (customer, reference, customer_360)
    writebacks_differ: int = 0  # CRM accounts of linked golden records whose written-back facts differ
    missing_events: list[dict[str, Any]] = field(default_factory=list)
    extra_events: list[dict[str, Any]] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict, repr=False)  # the reference's golden records

    @property
    def duplicates(self) -> int:
        """Extra copies of events already on the topic (at-least-once delivery)."""
        return self.copies - self.distinct

    @property
    def wrong(self) -> int:
        return len(self.rows_differ) + self.writebacks_differ + len(self.missing_events) + len(self.extra_events)

    def describe(self) -> str:
        return (f"{len(self.rows_differ)} customer_360 rows differ, e.g. {self.rows_differ[:2]}; "
                f"{self.writebacks_differ} CRM write-backs differ; events: {len(self.missing_events)} missing, e.g. "
                f"{brief(self.missing_events)}, {len(self.extra_events)} not in the fault-free set, e.g. "
                f"{brief(self.extra_events)}")  # fmt: skip


def compare(stack: LocalStack, captured: list[Message], lifecycle: list[Message], base: int) -> Comparison:
    """customer_360, the CRM write-back (accounts id >= base) and the lifecycle event ids versus the reference."""
    expected, expected_events = offline(stack, captured)
    exp, got = project(expected), actual(stack)
    result = Comparison(events=len(expected_events), copies=sum(1 for m in lifecycle if m.value), reference=expected)
    result.rows_differ = [(k, exp.get(k), got.get(k)) for k in sorted(set(exp) | set(got)) if exp.get(k) != got.get(k)]
    back, expected_back = written_back(stack, base), expected_write_back(expected, base)
    result.writebacks_differ = sum(back.get(a) != v for a, v in expected_back.items())
    online = {m.value["event_id"]: m.value for m in lifecycle if m.value}
    result.distinct = len(online)
    result.missing_events = [expected_events[e] for e in expected_events.keys() - online.keys()]
    result.extra_events = [online[e] for e in online.keys() - expected_events.keys()]
    return result
