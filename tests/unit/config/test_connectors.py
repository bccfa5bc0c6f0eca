from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataflows.config.connectors import (
    ConnectorConfigError,
    connect_config,
    connector_files,
    embedded_properties,
    load_connector,
    load_connectors,
)
from dataflows.config.secrets import SecretError
from dataflows.dialects import POSTGRES
from dataflows.settings import project_root

CONNECTORS = project_root() / "connectors"
VALID = """\
name: src
system: erp
debezium:
  connector.class: io.debezium.connector.postgresql.PostgresConnector
  topic.prefix: src
  database.hostname: localhost
  database.user: u
  database.password: ${env:SRC_PASSWORD}
  decimal.handling.mode: string
tables:
  public.t:
    entity: customer
    key: [id]
    customer: {column: id}
"""


def _write(tmp_path: Path, text: str, name: str = "src.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConnectorConfigError) as e:
        load_connector(path)
    return [str(p) for p in e.value.problems]


@pytest.mark.parametrize("path", connector_files(CONNECTORS), ids=lambda p: p.stem)
def test_every_shipped_connector_is_valid(path: Path) -> None:
    config = load_connector(path)
    assert config.name == path.stem
    assert config.tables, "a source feeds at least one table"
    for table in config.tables:
        include = str(config.debezium.get("table.include.list", ""))
        assert table in include.split(","), f"{table} mapped but not captured"


def test_valid_file_loads(tmp_path: Path) -> None:
    config = load_connector(_write(tmp_path, VALID))
    assert config.dialect is POSTGRES
    assert config.topic_for("public.t") == "src.public.t"


def test_misspelt_key_names_file_line_key_and_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("    customer: {column: id}", "    custmer: {column: id}"))
    problems = _problems(path)
    assert f"{path}:14: tables.public.t.custmer: unknown key; did you mean 'customer'?" in problems
    assert f"{path}:11: tables.public.t.customer: Field required" in problems


def test_literal_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("${env:SRC_PASSWORD}", "hunter2"))
    problems = _problems(path)
    assert problems == [
        f"{path}:8: debezium.database.password: literal secret: write a reference, ${{env:NAME}} or ${{file:PATH:KEY}}"
    ]
    assert not any("hunter2" in p for p in problems)


def test_runtime_owned_property_and_unknown_connector(tmp_path: Path) -> None:
    text = VALID.replace("io.debezium.connector.postgresql.PostgresConnector", "com.example.Nope")
    text = text.replace("  topic.prefix: src\n", "  topic.prefix: src\n  offset.storage: x\n")
    problems = _problems(_write(tmp_path, text))
    assert any(":4: debezium.connector.class: unsupported connector 'com.example.Nope'" in p for p in problems)
    assert any(":6: debezium.offset.storage: set by the Tidemark runtime" in p for p in problems)


def test_mapping_problems_name_the_field_and_the_fix(tmp_path: Path) -> None:
    text = VALID + "    fields:\n      legal_nme: TRIM(name)\n      plan: plan\n      tax_id: MD5(tax)\n      country: UPPER(\n"
    text = text.replace("  decimal.handling.mode: string\n", "")
    problems = _problems(_write(tmp_path, text + "owns: [credit_limt]\n"))
    assert any(":15: tables.public.t.fields.legal_nme: unknown canonical field 'legal_nme'; did you mean 'legal_name'?" in p for p in problems)
    assert any(":16: tables.public.t.fields.plan: 'plan' belongs to entity 'subscription', not 'customer'" in p for p in problems)
    assert any(":17: tables.public.t.fields.tax_id: unsupported SQL function MD5" in p for p in problems)
    assert any(":18: tables.public.t.fields.country: cannot parse" in p for p in problems)
    assert any(":19: owns.0: unknown canonical field 'credit_limt'; did you mean 'credit_limit'?" in p for p in problems)
    assert any("debezium: set decimal.handling.mode: string" in p for p in problems)


def test_name_must_match_file(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, VALID, "other.yaml"))
    assert any(":1: name: must match the file name" in p for p in problems)


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, VALID + "  bad: [unclosed\n"))
    assert problems and problems[0].startswith(f"{tmp_path / 'src.yaml'}:")
    assert "invalid YAML" in problems[0]


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, VALID + "system: crm\n"))
    assert any(":15: <file>: duplicate key 'system'" in p for p in problems)


def test_directory_reports_problems_of_every_file(tmp_path: Path) -> None:
    _write(tmp_path, "name: a\n", "a.yaml")
    _write(tmp_path, "name: b\n", "b.yaml")
    with pytest.raises(ConnectorConfigError) as e:
        load_connectors(tmp_path)
    assert {p.file.name for p in e.value.problems} == {"a.yaml", "b.yaml"}


def test_embedded_properties_resolve_references_and_add_file_offsets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SRC_PASSWORD", "s3cret")
    props = embedded_properties(load_connector(_write(tmp_path, VALID)), tmp_path / "state")
    assert props["database.password"] == "s3cret"
    assert props["offset.storage.file.filename"] == str(tmp_path / "state" / "offsets.dat")
    assert props["name"] == "src" and props["value.converter.schemas.enable"] == "false"


def test_unresolvable_reference_names_the_property_not_a_value(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SRC_PASSWORD", raising=False)
    with pytest.raises(SecretError, match=r"src: debezium.database.password: environment variable SRC_PASSWORD"):
        embedded_properties(load_connector(_write(tmp_path, VALID)), tmp_path)


def test_connect_rendering_keeps_references_and_adds_mysql_history() -> None:
    crm = connect_config(load_connector(CONNECTORS / "crm.yaml"))
    assert crm["database.password"] == "${env:TIDEMARK_CRM_CAPTURE_PASSWORD}"
    assert crm["schema.history.internal.kafka.topic"] == "_tidemark.schema-history.crm"
    assert crm["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
    erp = connect_config(load_connector(CONNECTORS / "erp.yaml"))
    assert "schema.history.internal.kafka.topic" not in erp
    assert all(isinstance(v, str) for v in erp.values())
    json.dumps(erp)
