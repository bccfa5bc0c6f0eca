"""Conformance of every connectors/*.yaml: a new source file is covered by these tests without new code."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflows.config.connectors import connect_config, connector_files, embedded_properties, load_connector
from dataflows.ingest.decode import decode
from dataflows.ingest.mapping import MappingError, SourceMapper
from dataflows.core.policy import ReorderPolicy
from dataflows.dialects import MYSQL
from dataflows.settings import project_root
from tests.support.fixtures import FIXTURES, as_kafka, recorded

FILES = connector_files(project_root() / "connectors")
# Scenarios recorded on purpose to fail mapping, with the error each must give.
EXPECTED_ERRORS = {"truncate": "truncate", "drop_mapped_column": "mapped_column_missing"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_connector_renders_for_both_runtimes(path: Path) -> None:
    config = load_connector(path)
    connect = connect_config(config)
    assert connect["topic.prefix"] == config.topic_prefix and connect["decimal.handling.mode"] == "string"
    defaults = {name: "x" for name in ("TIDEMARK_ERP_HOST", "TIDEMARK_ERP_PORT", "TIDEMARK_CRM_HOST", "TIDEMARK_CRM_PORT",
                                       "TIDEMARK_ERP_CAPTURE_PASSWORD", "TIDEMARK_CRM_CAPTURE_PASSWORD")}  # fmt: skip
    embedded = embedded_properties(config, Path("/state"), defaults)
    assert "${" not in "".join(embedded.values())  # every reference resolved for the embedded engine
    assert any("${" in v for k, v in connect.items() if "password" in k)  # but kept as a reference for Connect


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_heartbeats_come_faster_than_the_reorder_idle_timeout(path: Path) -> None:
    """Without a heartbeat well inside the idle timeout the dataflow cannot tell a stalled source from a
    quiet one: an outage would let the other sources run ahead, and its backlog would arrive late."""
    config = load_connector(path)
    assert config.heartbeat_topic == f"__debezium-heartbeat.{config.topic_prefix}"
    assert int(str(config.debezium["heartbeat.interval.ms"])) * 2 <= ReorderPolicy().idle_timeout_ms
    if config.dialect is MYSQL:  # an idle binlog only yields server heartbeats every 0.8 x keep-alive
        assert int(str(config.debezium["connect.keep.alive.interval.ms"])) * 0.8 * 2 <= ReorderPolicy().idle_timeout_ms


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_mapped_table_is_captured_and_keyed(path: Path) -> None:
    config = load_connector(path)
    include = str(config.debezium.get("table.include.list", "")).split(",")
    mapper = SourceMapper(config)
    for table, mapping in config.tables.items():
        assert table in include, f"{table} is mapped but not in table.include.list"
        assert mapper.tables[table].fields, f"{table} maps no field"
        assert set(mapping.key), f"{table} has no key"


@pytest.mark.parametrize("path", [p for p in FILES if (FIXTURES / f"{p.stem}.jsonl").exists()], ids=lambda p: p.stem)
def test_recorded_envelopes_map_or_fail_as_recorded(path: Path) -> None:
    config = load_connector(path)
    mapper = SourceMapper(config)
    for record in recorded(config.name):
        change = decode(*as_kafka(record), source=config.name, dialect=config.dialect)
        if change is None:
            continue
        if record["scenario"] in EXPECTED_ERRORS:
            with pytest.raises(MappingError) as e:
                mapper.map(change)
            assert e.value.error_class == EXPECTED_ERRORS[record["scenario"]]
        else:
            mapper.map(change)
