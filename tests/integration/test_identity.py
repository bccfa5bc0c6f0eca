"""Identity and ownership on the real stack: two ERP companies of one name stay two, a placeholder tax id
links nothing, a relinked CRM account moves, a CRM edit of an ERP-owned field is undone, a BC date goes to
the DLQ, and the dataflow never restarts."""

from __future__ import annotations

from typing import Any

from dataflows.bench.workload import vat_de
from dataflows.dlq import DlqFilter, read
from dataflows.outputs import GOVERNANCE_TOPIC, LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack
from tests.integration.test_dataflow import c360, c360_row, crm, erp
from tests.support.kafka import TopicReader
from tests.support.waiting import wait_until


def _c360_of_erp(stack: LocalStack, erp_id: int) -> dict[str, Any] | None:
    rows = c360(stack, "%s = ANY(erp_customer_ids) AND merged_into IS NULL", (str(erp_id),))
    return {"customer_id": rows[0][0], "crm": rows[0][15]} if rows else None


def test_identity_and_ownership_hold_on_the_real_stack(pipeline: LocalStack) -> None:
    dataflow_pid = pipeline.table.get("dataflow-0").pid
    reader = TopicReader(pipeline.settings.kafka_bootstrap, [LIFECYCLE_TOPIC, GOVERNANCE_TOPIC])
    sql = "INSERT INTO erp.customers (legal_name, tax_id, country, credit_status) VALUES (%s, %s, 'DE', %s) RETURNING id"
    (first,) = erp(pipeline, sql, ("Nordwind Logistik GmbH", vat_de(7001), "ok"))
    (second,) = erp(pipeline, sql, ("Nordwind Logistik GmbH", vat_de(7002), "hold"))
    account = crm(pipeline, "INSERT INTO accounts (name, tax_id, country, erp_customer_id) "
                            "VALUES ('Nordwind Logistik GmbH', 'N/A', 'DE', %s)", (first,))  # fmt: skip
    linked = wait_until(lambda: (r := c360_row(pipeline, account)) and r["erp_customer_ids"] == [str(first)] and r,
                        90, "the account linked to its ERP customer")  # fmt: skip
    other = wait_until(lambda: _c360_of_erp(pipeline, second), 60, "the second ERP customer")
    assert other["customer_id"] != linked["customer_id"] and other["crm"] == []  # same name, country: still two

    crm(pipeline, "UPDATE accounts SET erp_customer_id = %s WHERE id = %s", (second, account))  # a relink
    moved = wait_until(lambda: (r := c360_row(pipeline, account)) and r["erp_customer_ids"] == [str(second)] and r,
                       60, "the account moved to the other ERP customer")  # fmt: skip
    assert moved["customer_id"] == other["customer_id"]
    assert wait_until(lambda: (r := _c360_of_erp(pipeline, first)) and r["crm"] == [] and r, 60, "first left alone")
    assert moved["credit_status"] == "hold"
    wait_until(lambda: crm(pipeline, "SELECT credit_status, erp_customer_id FROM accounts WHERE id = %s",
                           (account,))[0] == ("hold", second), 60, "the ERP's facts written back")  # fmt: skip

    crm(pipeline, "UPDATE accounts SET credit_status = 'ok' WHERE id = %s", (account,))  # a sales user's edit
    wait_until(lambda: crm(pipeline, "SELECT credit_status FROM accounts WHERE id = %s", (account,))[0][0] == "hold",
               60, "the owner's value restored in the CRM")  # fmt: skip
    assert c360_row(pipeline, account)["credit_status"] == "hold"

    erp(pipeline, "INSERT INTO erp.subscriptions (customer_id, plan, seats, status, period_start) "
                  "VALUES (%s, 'growth', 1, 'active', '0044-03-15 BC')", (second,))  # fmt: skip
    (after,) = erp(pipeline, sql, ("Still Flowing GmbH", vat_de(7003), "ok"))
    wait_until(lambda: _c360_of_erp(pipeline, after), 60, "a change after the bad date")
    letters = wait_until(lambda: [r for r in read(pipeline.ops_conninfo(), DlqFilter(source="erp"))
                                  if "period_start" in r["reason"]], 60, "the BC date in the DLQ")  # fmt: skip
    assert letters[0]["error_class"] == "invalid_value" and "subscriptions" in letters[0]["reason"]

    mine = {other["customer_id"], linked["customer_id"]}
    wanted = {("credit_status", "rejected"), ("tax_id", "invalid_identifier"),  # the placeholder: a finding
              ("identity:name_country", "identity_conflict")}  # two ERP records of one name  # fmt: skip

    def decisions(messages: list[Any]) -> set[tuple[str, str]]:
        return {(m.value["field"], m.value["decision"]) for m in messages
                if m.topic == GOVERNANCE_TOPIC and m.value["customer_id"] in mine}  # fmt: skip

    def relinks(messages: list[Any]) -> list[dict[str, Any]]:
        return [m.value for m in messages if m.topic == LIFECYCLE_TOPIC
                and m.value["event_type"] == "CustomerRelinked" and m.value["customer_id"] == other["customer_id"]]

    # Both topics: the governance records alone (only interventions now) can be read before the event.
    reader.wait_for(lambda ms: wanted <= decisions(ms) and relinks(ms), 60, "the governance records and the relink")
    assert all(decision != "applied" for _, decision in decisions(reader.messages))  # owner writes: provenance
    relinked = relinks(reader.messages)
    assert relinked and relinked[0]["payload"]["source_ref"] == f"crm:{account}"
    assert pipeline.table.get("dataflow-0").pid == dataflow_pid  # the flow never restarted
    reader.close()


def test_a_steward_splits_a_wrong_merge_and_joins_it_back(pipeline: LocalStack) -> None:
    from dataflows.stewardship import command_record, explain, send_command

    bootstrap, conninfo = pipeline.settings.kafka_bootstrap, pipeline.ops_conninfo()
    (erp_id,) = erp(pipeline, "INSERT INTO erp.customers (legal_name, country) VALUES ('Heron Freight GmbH', 'AT') "
                              "RETURNING id")  # fmt: skip
    account = crm(pipeline, "INSERT INTO accounts (name, country) VALUES ('Heron Freight GmbH', 'AT')")
    joined = wait_until(lambda: (r := c360_row(pipeline, account)) and r["erp_customer_ids"] == [str(erp_id)] and r,
                        90, "linked by name, legal form and country")  # fmt: skip
    gid = joined["customer_id"]
    links = explain(conninfo, gid)["links"]
    assert [(lk["rule"], {lk["a"], lk["b"]}) for lk in links] == [("name_country", {f"erp:{erp_id}", f"crm:{account}"})]

    send_command(bootstrap, *command_record("split", [f"crm:{account}"], customer_id=gid, requested_by="steward"))
    apart = wait_until(lambda: (r := c360_row(pipeline, account)) and r["customer_id"] != gid and r, 60, "split off")
    assert apart["erp_customer_ids"] == [] and explain(conninfo, gid)["source_ids"] == {"erp": [str(erp_id)]}
    crm(pipeline, "UPDATE accounts SET owner = 'sam' WHERE id = %s", (account,))  # the rule would match again
    wait_until(lambda: c360_row(pipeline, account)["sales_owner"] == "sam", 60, "a later edit")
    assert c360_row(pipeline, account)["customer_id"] == apart["customer_id"]  # the steward's split holds

    send_command(bootstrap, *command_record("join", [f"crm:{account}", f"erp:{erp_id}"], customer_id=None,
                                            requested_by="steward"))  # fmt: skip
    wait_until(lambda: c360_row(pipeline, account)["customer_id"] == gid, 60, "joined back")
    assert explain(conninfo, apart["customer_id"])["customer_id"] == gid  # the split-off id now points at gid
