"""The core's typed outputs and their destinations: each output goes to the destinations that take its
type, with the Kafka topics, keys and headers consumers rely on; plain owner writes are provenance and a
metric, never a governance record; each body is serialized once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from dataflows.core.core import ConsistencyCore
from dataflows.core.outputs import (
    CustomerRetired,
    DeadLetter,
    GoldenRecordUpdated,
    GovernanceDecision,
    HandOff,
    LifecycleEvent,
)
from dataflows.outputs import (
    CUSTOMERS,
    CUSTOMERS_TOPIC,
    DLQ,
    GOVERNANCE,
    GOVERNANCE_TOPIC,
    HANDOFF,
    KAFKA,
    LIFECYCLE,
    LIFECYCLE_TOPIC,
    dead_letter_out,
    emit,
)
from dataflows.targets import crm_writeback, customer_360, dead_letters
from schemas import CustomerV1
from tests.unit.core.test_lifecycle_scenario import POLICY
from tests.support.fixtures import written_by
from tests.support.world import World

DESTINATIONS = {"lifecycle": LIFECYCLE, "customers": CUSTOMERS, "governance": GOVERNANCE, "dlq": DLQ,
                "handoff": HANDOFF, "customer_360": customer_360.DESTINATION,
                "crm_writeback": crm_writeback.DESTINATION, "dead_letters": dead_letters.DESTINATION}  # fmt: skip
WHERE = {LifecycleEvent: {"lifecycle"}, GoldenRecordUpdated: {"customers", "customer_360", "crm_writeback"},
         CustomerRetired: {"customers", "customer_360"}, GovernanceDecision: {"governance"},
         DeadLetter: {"dlq", "dead_letters"}, HandOff: {"handoff"}}  # fmt: skip


def _scenario() -> tuple[list[Any], ConsistencyCore]:
    """A prospect in the CRM, its ERP customer, a rejected CRM edit, a merge, and a change that fails."""
    world, core, outs = World(), ConsistencyCore(POLICY), []

    def step(*args: Any, **kwargs: Any) -> None:
        out = core.submit(world.write(*args, **kwargs), now=0.0)
        out.extend(core.flush())
        outs.extend(emit(out))

    step("crm", "accounts", 7, {"name": "Acme", "tax_id": "DE136695976", "country": "FR"})
    step("erp", "customers", 42, {"legal_name": "Acme GmbH", "tax_id": "DE136695976", "country": "DE",
                                  "credit_status": "ok", "status": "active"})  # fmt: skip
    step("crm", "accounts", 7, {"credit_status": "hold"})  # not the CRM's to write: rejected
    step("crm", "accounts", 8, {"name": "Gamma Ltd", "country": "GB"})
    step("erp", "customers", 43, {"legal_name": "Delta plc", "tax_id": "GB77", "country": "GB", "status": "active"})
    step("crm", "accounts", 8, {"erp_customer_id": 43})  # the crosswalk merges the two
    return outs, core


def test_each_output_goes_exactly_to_the_destinations_of_its_type() -> None:
    outs, _ = _scenario()
    outs += [dead_letter_out("decode", "malformed_json", "bad", "erp", ("erp.erp.customers", 0, 1, b"k", b"{")),
             HandOff("handoff-0", b"x")]  # fmt: skip
    assert {type(o) for o in outs} == set(WHERE)  # the scenario covers every type
    for o in outs:
        taken = {name for name, d in DESTINATIONS.items() if d.records(o)}
        assert taken == WHERE[type(o)] - ({"crm_writeback"} if not o_has_crm(o) else set()), o
        assert {name for name, d in DESTINATIONS.items() if d.accepts(o)} == WHERE[type(o)]
        assert KAFKA.records(o) == [r for n in ("lifecycle", "customers", "governance", "dlq", "handoff")
                                    for r in DESTINATIONS[n].records(o)]  # fmt: skip


def o_has_crm(o: Any) -> bool:
    return isinstance(o, GoldenRecordUpdated) and bool(o.record["source_ids"].get("crm"))


def test_kafka_records_keep_their_topics_keys_and_headers() -> None:
    outs, _ = _scenario()
    event = next(o for o in outs if isinstance(o, LifecycleEvent))
    (r,) = KAFKA.records(event)
    assert (r.topic, r.key, orjson.loads(r.value or b"")) == (LIFECYCLE_TOPIC, event.customer_id, event.event)
    assert [k for k, _ in r.headers] == ["correlation-id", "causation-id", "event-type", "schema-version",
                                         "source-position"]  # fmt: skip
    headers = dict(r.headers)
    assert headers["event-type"] == event.event_type.encode() and headers["schema-version"] == b"1"
    assert headers["causation-id"] == event.event["causation_id"].encode() and r.commit_ts is not None
    retired = next(o for o in outs if isinstance(o, CustomerRetired))
    (t,) = KAFKA.records(retired)
    assert (t.topic, t.key, t.value, t.commit_ts) == (CUSTOMERS_TOPIC, retired.merged, None, None)
    assert dict(t.headers)["merged-into"] == retired.survivor.encode()
    assert dict(t.headers)["event-type"] == b"CustomerMerged"
    decision = next(o for o in outs if isinstance(o, GovernanceDecision))
    (g,) = KAFKA.records(decision)
    assert g.topic == GOVERNANCE_TOPIC and dict(g.headers)["event-type"] == f"Governance.{decision.decision}".encode()


def test_a_retirement_names_the_final_survivor_and_its_cause() -> None:
    outs, core = _scenario()
    (retired,) = [o for o in outs if isinstance(o, CustomerRetired)]
    assert retired.survivor in core.records and retired.merged not in core.records
    update = next(o for o in outs if isinstance(o, GoldenRecordUpdated) and o.customer_id == retired.survivor
                  and o.cause.causation_id == retired.cause.causation_id)  # fmt: skip
    assert update.cause == retired.cause


def test_plain_owner_writes_are_provenance_and_a_count_interventions_are_records() -> None:
    outs, core = _scenario()
    decisions = [o.record for o in outs if isinstance(o, GovernanceDecision)]
    assert decisions and all(d["decision"] != "applied" for d in decisions)
    assert ("credit_status", "rejected") in {(d["field"], d["decision"]) for d in decisions}
    assert ("country", "conflict") in {(d["field"], d["decision"]) for d in decisions}
    final = [o.record for o in outs if isinstance(o, GoldenRecordUpdated)
             and "42" in o.record["source_ids"].get("erp", [])][-1]  # fmt: skip
    CustomerV1.model_validate(final)
    assert final["credit_status"] == "ok"
    written = written_by(final, "credit_status")
    assert (written["system"], written["source"], written["owner"]) == ("erp", "erp", True)
    assert written_by(final, "legal_name")["system"] == "erp"
    owner = Counter(core.stats.owner_writes)
    assert owner[("credit_status", "erp")] >= 1 and owner[("legal_name", "erp")] == 2  # Acme's and Delta's


def test_each_body_is_serialized_once_and_shared_by_its_destinations(monkeypatch: pytest.MonkeyPatch) -> None:
    outs, _ = _scenario()
    update = next(o for o in outs if isinstance(o, GoldenRecordUpdated))
    (row,) = customer_360.DESTINATION.records(update)
    (record,) = KAFKA.records(update)
    assert orjson.dumps(row[customer_360.COLUMNS.index("record")]) == update.wire and record.value is update.wire
    calls = []
    monkeypatch.setattr(orjson, "dumps", lambda v: calls.append(v) or b"{}")
    for o in outs:
        for d in DESTINATIONS.values():
            d.records(o)
    # The destinations reuse the bytes `emit` built; only a retirement's small row body is built there (once).
    assert calls == [{"customer_id": o.merged, "merged_into": o.survivor} for o in outs
                     if isinstance(o, CustomerRetired)]  # fmt: skip
