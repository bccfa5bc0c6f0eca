"""The flow's Decoder builds each change once, with its Kafka coordinates and replay flag set by the mapper:
for any captured record, the change equals what decode and map give alone, and carries where it came from."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.core.change import CanonicalChange
from dataflows.flows.consistency import Decoder
from dataflows.ingest.decode import DecodeError, decode
from dataflows.ingest.mapping import MappingError, SourceMapper
from dataflows.io.kafka_source import RawRecord
from dataflows.core.outputs import DeadLetter
from tests.unit.test_bad_values_fuzz import CONNECTORS, TEMPLATES


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(range(len(TEMPLATES))), st.integers(0, 7), st.integers(0, 2**40),
                          st.booleans()), min_size=1, max_size=10))  # fmt: skip
def test_decoded_change_carries_its_origin_and_replay_flag(records) -> None:
    decoder = Decoder(CONNECTORS, max_record_bytes=1024 * 1024)
    mappers = {name: SourceMapper(c) for name, c in CONNECTORS.items()}  # the same sequence, mapped alone
    for which, partition, offset, replay in records:
        template = TEMPLATES[which]
        key, value = orjson.dumps(template["key"]), orjson.dumps(template["value"])
        change = decoder(RawRecord(template["topic"], partition, offset, key, value, replay))
        source = next(c for c in CONNECTORS.values() if template["topic"].startswith(c.topic_prefix + "."))
        try:
            alone = mappers[source.name].map(decode(key, value, source=source.name, dialect=source.dialect))
        except (DecodeError, MappingError):
            assert isinstance(change, DeadLetter)  # a dead letter, as before
            continue
        assert isinstance(change, CanonicalChange)
        assert change.origin == (template["topic"], partition, offset, key, value)
        assert change.replayed is replay
        assert change == CanonicalChange(**{**{f: getattr(alone, f) for f in alone.__slots__}, "replayed": replay})
