"""The columns of each mapped table, read from the source's live database with the connector's own
connection properties (the capture user Debezium logs in as), for the checks in dataflows.config.checks.

Each source's dialect reads information_schema.columns with its own driver (dataflows.dialects). A database
that cannot be reached is a problem of that file, not a crash.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from dataflows.config.checks import TableColumns, Validation, column_problems, validate_files
from dataflows.config.connectors import ConfigProblem, ConnectorConfig, LoadedConnector, sort_problems
from dataflows.config.secrets import SecretError, resolve
from dataflows.dialects.base import LiveReadError, Property, driver_reason

CONNECT_TIMEOUT_S = 5


def connector_property(config: ConnectorConfig, defaults: Mapping[str, str] | None = None) -> Property:
    """Reads one of the connector file's Debezium properties, references resolved: (key, fallback) -> value."""
    def prop(key: str, fallback: str) -> str:
        value = config.debezium.get(key)
        return resolve(str(value), defaults) if value is not None else fallback

    return prop


def _rows_to_columns(rows: Sequence[tuple[str, str, str]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for schema, table, column in rows:
        out[f"{schema}.{table}"].add(column)
    return {table: frozenset(cols) for table, cols in out.items()}


def read_columns(c: LoadedConnector, defaults: Mapping[str, str] | None = None) -> TableColumns:
    """Columns of the connector's mapped tables that exist and that its database.user can see."""
    prop = connector_property(c.config, defaults)
    return _rows_to_columns(c.config.dialect.read_columns(prop, sorted(c.config.tables), CONNECT_TIMEOUT_S))


def live_column_problems(
    connectors: Sequence[LoadedConnector], defaults: Mapping[str, str] | None = None
) -> list[ConfigProblem]:
    """Columns the mappings read that their tables lack, for every connector; an unreachable database or an
    unresolvable reference is reported at the file's database.hostname, never with a secret in it."""
    problems: list[ConfigProblem] = []
    for c in connectors:
        if not c.config.tables:
            continue
        try:
            columns = read_columns(c, defaults)
        except (LiveReadError, OSError, SecretError, ValueError) as e:
            problems.append(c.problem(("debezium", "database.hostname"),
                                      f"cannot read the tables' columns: {_safe_reason(c, e, defaults)}",
                                      "start the database, or check database.hostname/port/user/password"))  # fmt: skip
            continue
        problems.extend(column_problems(c, columns))
    return sort_problems(problems)


def _safe_reason(c: LoadedConnector, error: Exception, defaults: Mapping[str, str] | None) -> str:
    """The driver's first line, with the password cut out should a driver ever echo it."""
    reason = str(error) if isinstance(error, LiveReadError) else driver_reason(error)
    try:
        password = connector_property(c.config, defaults)("database.password", "")
    except SecretError:
        return reason
    return reason.replace(password, "********") if password else reason


def validate_against_databases(paths: Sequence[Path], defaults: Mapping[str, str] | None = None) -> Validation:
    """Every check of dataflows.config.checks, plus the columns of every mapped table in its live database."""
    result = validate_files(paths)
    result.problems = sort_problems(result.problems + live_column_problems(list(result.connectors.values()), defaults))
    return result
