"""The benchmark's synthetic envelopes must be what the real pipeline accepts, or the figures mean nothing."""

from __future__ import annotations

import hashlib

from dataflows.bench.core_bench import core_pass
from dataflows.bench.workload import generate


def test_workload_decodes_maps_and_links_every_customer() -> None:
    envelopes = list(generate(3000, 300))
    assert len(envelopes) == 3000
    _, core = core_pass(envelopes)
    assert len(core.records) == 300  # ERP customer and CRM account linked by crosswalk, never duplicated
    assert core.stats.errors == {} and core.reorder.stats.late == 0
    assert all(set(r.source_ids) == {"erp", "crm"} for r in core.records.values())


def test_workload_is_the_same_history_for_the_same_arguments() -> None:
    """Pinned: benchmark figures from different days compare only if the workload did not change."""
    digest = hashlib.sha256()
    for e in generate(3000, 300):
        digest.update(repr((e.topic, e.source, e.dialect, e.key, e.value)).encode())
    assert digest.hexdigest() == "b49ee083f019df326816d68d3a7d80d1a14fdcc44075d5b87d277b9e229d0f8f"
