"""Golden Debezium envelopes recorded from the real engine (tests/fixtures/record_debezium.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from dataflows.config.connectors import ConnectorConfig, load_connector
from dataflows.ingest.decode import ChangeRecord, decode
from dataflows.settings import project_root

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"


def recorded(source: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / f"{source}.jsonl").read_text().splitlines()]


def as_kafka(record: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    key = orjson.dumps(record["key"]) if record["key"] is not None else None
    value = orjson.dumps(record["value"]) if record["value"] is not None else None
    return key, value


def connector(source: str) -> ConnectorConfig:
    return load_connector(project_root() / "connectors" / f"{source}.yaml")


def decoded(source: str, scenario: str) -> list[ChangeRecord]:
    """The scenario's change records in position order (tombstones dropped)."""
    dialect = connector(source).dialect
    out = []
    for r in recorded(source):
        if r["scenario"] == scenario:
            rec = decode(*as_kafka(r), source=source, dialect=dialect)
            if rec is not None:
                out.append(rec)
    return sorted(out, key=lambda c: c.position)


def written_by(record: dict[str, Any], name: str) -> dict[str, Any]:
    """The provenance entry (CustomerV1.provenance) of the write a golden field's value comes from."""
    (write,) = [w for w in record["provenance"] if name in w["fields"]]
    return write
