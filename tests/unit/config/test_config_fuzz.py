"""Fuzzing the connector loader: whatever the file holds, the only outcome is a config or a reported
ConnectorConfigError with file, line and key; never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.config.connectors import ConnectorConfigError, load_connector
from dataflows.settings import project_root

REAL = (project_root() / "connectors" / "erp.yaml").read_text()
KEYS = ["name", "system", "debezium", "tables", "owns", "partitions", "entity", "key", "customer", "fields",
        "column", "via", "connector.class", "database.password", "erp.customers", "legal_name", "echo_column"]  # fmt: skip
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=12) | st.sampled_from(["${env:X}", "UPPER(", "x)"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), c, max_size=4),
    max_leaves=15,
)


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "erp.yaml"
        path.write_text(text)
        try:
            load_connector(path)
        except ConnectorConfigError as e:
            assert e.problems and all(p.line >= 1 and str(p).startswith(str(path)) for p in e.problems)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    _load(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), VALUES, max_size=6))
def test_arbitrary_structures(doc: dict) -> None:
    _load(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutations_of_the_real_file(data: st.DataObject) -> None:
    lines = REAL.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    lines[i] = data.draw(st.sampled_from(["", "  x: [", "tables: 3", "    key: id", lines[i] + "#", lines[i][::-1],
                                          "  database.password: secret", "      legal_name: MD5(x)"]))  # fmt: skip
    _load("\n".join(lines))
