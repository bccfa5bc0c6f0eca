"""No value of one record stops the pipeline: real envelopes of every captured table of both dialects,
with typed values replaced by the worst a database or a person can produce, go through decode, map and
apply. Each becomes a change the core applies, or a dead letter with its error class and reason."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.core.core import ConsistencyCore
from dataflows.core.change import CanonicalChange
from dataflows.config.policy import build_policy
from dataflows.flows.consistency import Decoder
from dataflows.core.outputs import DeadLetter
from tests.support.fixtures import connector, recorded

CONNECTORS = {s: connector(s) for s in ("erp", "crm")}
POLICY = build_policy(CONNECTORS.values())
# One real envelope per (source, table, op): the shapes the engine writes, for both dialects.
TEMPLATES = list({(s, r["topic"], r["value"]["op"]): r for s in CONNECTORS for r in recorded(s)
                  if r["value"] and "payload" not in r["value"] and (r["value"]["after"] or r["value"]["before"])}.values())  # fmt: skip

BAD = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),  # day and microsecond counts far outside any calendar
    st.sampled_from([-719_529, -719_163 - 1, 2_932_897, 10**15, -(10**18)]),  # year 0, BC, year 10000
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "0000-00-00", "0000-01-01", "-0001-12-31",
                     "10000-01-01", "2024-02-30", "", " ", "\x00", "\ud800", "x" * 5000, "9" * 400]),  # fmt: skip
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _raw(envelope: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(envelope)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(envelope).encode("utf-8", "surrogatepass")  # lone surrogates: invalid UTF-8, as it may come


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(range(len(TEMPLATES))), st.dictionaries(st.text(max_size=12), BAD,
                                                                                  max_size=3), BAD),
                min_size=1, max_size=8))  # fmt: skip
def test_every_bad_value_becomes_a_dead_letter_and_the_flow_goes_on(edits) -> None:
    from dataflows.io.kafka_source import RawRecord

    decoder = Decoder(CONNECTORS, max_record_bytes=1024 * 1024)
    core = ConsistencyCore(POLICY)
    for offset, (which, extra, value) in enumerate(edits):
        template = TEMPLATES[which]
        envelope = json.loads(json.dumps(template["value"]))
        row = envelope["after"] or envelope["before"]
        column = sorted(row)[offset % len(row)]  # a mapped or key column, in turn
        row[column] = value
        row.update(extra)
        raw = RawRecord(template["topic"], 0, offset, orjson.dumps(template["key"]), _raw(envelope))
        result = decoder(raw)
        if isinstance(result, DeadLetter):
            letter = orjson.loads(result.wire)
            assert letter["error_class"] and letter["reason"] and letter["offset"] == offset
            continue
        assert isinstance(result, CanonicalChange) or result is None
        if result is not None:
            out = core.submit_batch([result], 0.0)
            out.extend(core.flush())
            for change, error_class, reason in out.errors:
                assert change is result and error_class and reason
