from __future__ import annotations

from dataflows.core.ownership import FieldVersion, decide, is_newer
from dataflows.config.policy import build_policy
from schemas.v1.governance import GovernanceDecision as D
from tests.support.fixtures import connector

POLICY = build_policy([connector("erp"), connector("crm")])


def version(value, system="erp", by_owner=True) -> FieldVersion:
    return FieldVersion(value, system, system, (1,), 100.0, by_owner)


def test_default_ownership_follows_the_design() -> None:
    assert POLICY.owners["credit_status"] == ["erp"] and POLICY.owners["sales_owner"] == ["crm"]
    assert POLICY.owners["plan"] == ["erp"] and "lifecycle_status" not in POLICY.owners
    assert decide(POLICY, "credit_status", "erp", None)[0] is D.APPLIED
    assert decide(POLICY, "credit_status", "crm", None)[0] is D.REJECTED
    assert decide(POLICY, "sales_owner", "erp", version("dana", "crm"))[0] is D.CONFLICT  # advisory
    assert decide(POLICY, "tax_id", "crm", None)[0] is D.FILLED
    assert decide(POLICY, "tax_id", "crm", version("DE1"))[0] is D.CONFLICT
    assert decide(POLICY, "tax_id", "crm", version("X", "crm", by_owner=False))[0] is D.FILLED
    assert decide(POLICY, "erp_customer_id", "crm", None)[0] is D.APPLIED  # no owner declared


def test_versions_compare_positions_within_a_source_and_time_across() -> None:
    current = FieldVersion("a", "erp", "erp", (50, 1), 100.0, True)
    assert is_newer("erp", (51, 1), 90.0, current)  # same source: position decides, not the clock
    assert not is_newer("erp", (49, 1), 200.0, current)
    assert is_newer("billing", (1,), 100.5, current) and not is_newer("billing", (999,), 99.0, current)


def test_no_engine_broker_or_driver_in_the_core() -> None:
    import subprocess
    import sys

    code = ("import sys, dataflows.core.core, dataflows.ingest.decode, dataflows.ingest.mapping; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('bytewax', 'kafka', 'psycopg', 'pymysql', 'jpype', 'pydbzengine', 'prometheus_client')]; "
            "print(bad); sys.exit(1 if bad else 0)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
