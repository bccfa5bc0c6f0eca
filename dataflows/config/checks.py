"""Checks of connector files beyond their schema: what Debezium will capture, heartbeats, server ids shared
between files, values a mapping can produce, and (given the tables' columns) columns that do not exist.

Every check returns problems instead of raising, so one run reports every mistake in every file. The
checks are plain functions over loaded files; reading a live database's columns is dataflows.config.live.
"""

from __future__ import annotations

import difflib
import re
import types
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import sqlglot
from pydantic import ValidationError
from sqlglot import exp
from sqlglot.errors import ParseError

from dataflows.config.connectors import (
    ConfigProblem,
    ConnectorConfigError,
    LoadedConnector,
    load_connector_file,
    sort_problems,
)
from dataflows.ingest.expressions import ExpressionError, compile_expression
from dataflows.ingest.mapping import _coercer as runtime_coercer  # the flow's own conversion: check and flow agree
from dataflows.core.policy import ReorderPolicy
from schemas.v1.entities import ENTITY_MODELS

# Properties naming the schemas (PostgreSQL) or databases (MySQL family) Debezium reads tables from.
KEEP_ALIVE_MS = 1250  # an idle binlog sends server heartbeats every 0.8 x keep-alive: 1 s


@dataclass
class Validation:
    """The outcome of validating a set of connector files: the files that loaded, and every problem."""

    connectors: dict[Path, LoadedConnector] = field(default_factory=dict)  # by file: names may repeat across dirs
    problems: list[ConfigProblem] = field(default_factory=list)

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConnectorConfigError(sort_problems(self.problems))


def validate_files(paths: Sequence[Path]) -> Validation:
    """Load every file and run every check that needs no database; all problems of all files together."""
    result = Validation()
    for path in paths:
        try:
            loaded = load_connector_file(path)
        except ConnectorConfigError as e:
            result.problems.extend(e.problems)
            continue
        result.connectors[path] = loaded
        result.problems.extend(check_connector(loaded))
    result.problems.extend(server_id_problems(list(result.connectors.values())))
    result.problems = sort_problems(result.problems)
    return result


def check_connector(c: LoadedConnector) -> list[ConfigProblem]:
    """The single-file checks of a file that loaded."""
    return include_list_problems(c) + heartbeat_problems(c) + value_set_problems(c)


# -- what Debezium captures ----------------------------------------------------------------------
def _patterns(c: LoadedConnector, key: str) -> list[tuple[str, re.Pattern[str] | None]]:
    """Debezium's comma-separated include list: regular expressions matched against whole names."""
    out: list[tuple[str, re.Pattern[str] | None]] = []
    for text in (t.strip() for t in str(c.config.debezium[key]).split(",")):
        if not text:
            continue
        try:
            out.append((text, re.compile(text, re.IGNORECASE)))
        except re.error:
            out.append((text, None))
    return out


def include_list_problems(c: LoadedConnector) -> list[ConfigProblem]:
    """Mapped tables Debezium would not capture, and captured tables nothing maps."""
    props, mapped = c.config.debezium, list(c.config.tables)
    loc = ("debezium", "table.include.list")
    if "table.include.list" not in props:
        return [c.problem(("debezium",), "no table.include.list: Debezium captures every table, mapped or not",
                          f"add table.include.list: {','.join(mapped)}")]  # fmt: skip
    patterns = _patterns(c, "table.include.list")
    problems = [c.problem(loc, f"{text!r} is not a valid regular expression", "write the table's schema.table name")
                for text, rx in patterns if rx is None]  # fmt: skip
    valid = [(text, rx) for text, rx in patterns if rx is not None]
    for table in mapped:
        if not any(rx.fullmatch(table) for _, rx in valid):
            message = (f"mapped table {table!r} is not in debezium.table.include.list (line {c.yaml.line_of(loc)}): "
                       "Debezium never captures it")
            fix = f"add {table} to table.include.list, or remove this mapping"
            problems.append(c.problem(("tables", table), message, fix))
    for text, rx in valid:
        if not any(rx.fullmatch(table) for table in mapped):
            problems.append(c.problem(loc, f"{text!r} is captured but no entry under tables: maps it",
                                      f"map it under tables:, or remove {text} from table.include.list"))  # fmt: skip
    container_key = c.config.dialect.container_key
    if container_key in props:
        containers = [rx for _, rx in _patterns(c, container_key) if rx is not None]
        for table in mapped:
            container = table.partition(".")[0]
            if not any(rx.fullmatch(container) for rx in containers):
                message = f"{container!r} is not in debezium.{container_key}: Debezium never captures {table}"
                problems.append(c.problem(("tables", table), message, f"add {container} to {container_key}"))
    return problems


# -- heartbeats and server ids ---------------------------------------------------------------------
def _int_property(c: LoadedConnector, key: str) -> int | None:
    try:
        return int(str(c.config.debezium[key]))
    except (KeyError, ValueError):
        return None


def heartbeat_problems(c: LoadedConnector) -> list[ConfigProblem]:
    """A MySQL-family source must send heartbeats, also while idle: the dataflow reads them to tell a quiet
    source from a stalled one (an idle binlog has no events to hang a heartbeat on without the keep-alive)."""
    if not c.config.dialect.heartbeat_required:
        return []
    props, problems = c.config.debezium, []
    half_idle = ReorderPolicy().idle_timeout_ms // 2
    interval = _int_property(c, "heartbeat.interval.ms")
    loc = ("debezium", "heartbeat.interval.ms")
    if interval is None or interval <= 0:
        what = "is missing" if loc[1] not in props else f"is {props[loc[1]]!r}"
        message = f"heartbeat.interval.ms {what}: a MySQL-family source without heartbeats looks like a stalled one"
        fix = f"set heartbeat.interval.ms: 900 (at most {half_idle}, half the reorder idle timeout)"
        problems.append(c.problem(loc, message, fix))
    elif interval > half_idle:
        problems.append(c.problem(loc, f"heartbeat.interval.ms {interval} is slower than half the reorder idle "
                                  f"timeout ({half_idle} ms)", "set heartbeat.interval.ms: 900"))  # fmt: skip
    keep_alive = _int_property(c, "connect.keep.alive.interval.ms")
    if keep_alive is None or keep_alive * 0.8 > half_idle:
        what = "is missing" if keep_alive is None else f"{keep_alive} is too long"
        problems.append(c.problem(("debezium", "connect.keep.alive.interval.ms"),
                                  f"connect.keep.alive.interval.ms {what}: an idle binlog then sends no server "
                                  "heartbeats, and Debezium emits none of its own",
                                  f"set connect.keep.alive.interval.ms: {KEEP_ALIVE_MS}"))  # fmt: skip
    if "database.server.id" not in props:
        problems.append(c.problem(("debezium",), "database.server.id is missing: a MySQL-family capture is a binlog "
                                  "client and needs an id unique on its server",
                                  "set database.server.id: a number no other binlog client of it uses"))  # fmt: skip
    return problems


def server_id_problems(connectors: Sequence[LoadedConnector]) -> list[ConfigProblem]:
    """Two binlog clients with one server id make the server drop one of them, over and over."""
    by_id: dict[str, list[LoadedConnector]] = defaultdict(list)
    for c in connectors:
        if "database.server.id" in c.config.debezium:
            by_id[str(c.config.debezium["database.server.id"]).strip()].append(c)
    numbers = [int(v) for v in by_id if v.isdigit()]
    unused = max(numbers, default=184053) + 1
    problems = []
    for value, users in sorted(by_id.items()):
        if len(users) < 2:
            continue
        loc = ("debezium", "database.server.id")
        for c in users:
            others = ", ".join(f"{o.path.name}:{o.yaml.line_of(loc)}" for o in users if o is not c)
            problems.append(c.problem(loc, f"database.server.id {value} is also used by {others}",
                                      f"give each connector its own id, e.g. {unused}"))  # fmt: skip
            unused += 1
    return problems


# -- values a mapping can produce --------------------------------------------------------------------
def _outcomes(node: exp.Expression) -> Iterator[exp.Expression]:
    """The constant expressions (reading no column) whose value the expression can return, through
    CASE, IF, COALESCE and case folding. Parts that read a column are not followed: their values are data."""
    if node.find(exp.Column) is None:
        yield node
    elif isinstance(node, exp.Paren):
        yield from _outcomes(node.this)
    elif isinstance(node, exp.Case):
        for branch in node.args["ifs"]:
            yield from _outcomes(branch.args["true"])
        default = node.args.get("default")
        yield from _outcomes(default) if default is not None else iter([exp.Null()])  # no ELSE: NULL
    elif isinstance(node, exp.If):
        yield from _outcomes(node.args["true"])
        false = node.args.get("false")
        yield from _outcomes(false) if false is not None else iter([exp.Null()])
    elif isinstance(node, exp.Coalesce):
        for part in (node.this, *node.expressions):
            yield from _outcomes(part)
    elif isinstance(node, exp.Upper | exp.Lower | exp.Trim):
        for inner in _outcomes(node.this):
            wrapped = node.copy()
            wrapped.set("this", inner)
            yield wrapped


def _allowed_literals(entity: str, name: str) -> tuple[Any, ...]:
    annotation = ENTITY_MODELS[entity].model_fields[name].annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def value_set_problems(c: LoadedConnector) -> list[ConfigProblem]:
    """A CASE (or IF, COALESCE, constant) that can return a value the canonical field does not allow: every
    such row would be dead-lettered at run time."""
    problems = []
    dialect = c.config.dialect.name
    for table, mapping in c.config.tables.items():
        for name, sql in mapping.fields.items():
            try:
                tree = sqlglot.parse_one(sql, read=dialect)
            except ParseError:
                continue  # reported when the file was loaded
            coerce, allowed = runtime_coercer(name), _allowed_literals(mapping.entity, name)
            bad = [b for b in (_bad_outcome(o, dialect, coerce) for o in _outcomes(tree)) if b is not None]
            if bad:
                problems.append(_value_problem(c, ("tables", table, "fields", name), name, allowed, bad))
    return problems


def _bad_outcome(outcome: exp.Expression, dialect: str, coerce: Callable[[Any], Any]) -> tuple[str, str] | None:
    """(the constant as written, why the field cannot take it), or None when it can."""
    sql = outcome.sql(dialect=dialect)
    try:
        value = compile_expression(sql, dialect)({})
    except (ValueError, TypeError, ArithmeticError) as e:
        return sql, f"evaluating it fails: {e}"
    try:
        coerce(value)
    except ValidationError as e:
        return sql, str(e.errors()[0]["msg"])
    except (ValueError, TypeError, ArithmeticError) as e:
        return sql, str(e)
    return None


def _value_problem(c: LoadedConnector, loc: tuple[str, ...], name: str, allowed: tuple[Any, ...],
                   bad: list[tuple[str, str]]) -> ConfigProblem:  # fmt: skip
    values = ", ".join(sql for sql, _ in bad)
    if allowed:
        options = ", ".join(repr(a) for a in allowed)
        close = difflib.get_close_matches(bad[0][0].strip("'"), [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return c.problem(loc, f"can return {values}, which {name} does not allow",
                         f"return only {options}, or NULL{hint}")  # fmt: skip
    reasons = "; ".join(f"{sql}: {why}" for sql, why in bad)
    return c.problem(loc, f"can return {values}, which {name} cannot hold ({reasons})",
                     "change that THEN/ELSE value to one the field accepts")  # fmt: skip


# -- columns that exist ---------------------------------------------------------------------------------
TableColumns = Mapping[str, frozenset[str]]  # "schema.table" -> its column names


def column_problems(c: LoadedConnector, columns: TableColumns) -> list[ConfigProblem]:
    """Key, customer link, echo and mapped columns absent from the table (as read from its database).
    Names must match exactly: the flow reads row[name] from Debezium's rows, which carry the real names."""
    problems = []
    for table, mapping in c.config.tables.items():
        if table not in columns:
            problems.append(c.problem(("tables", table), f"table {table} does not exist in the database, or the "
                                      "capture user cannot read it",
                                      "check the name, or GRANT SELECT on it to the database.user"))  # fmt: skip
            continue
        have = columns[table]
        wanted: list[tuple[tuple[str | int, ...], str]] = [
            (("tables", table, "key", i), k) for i, k in enumerate(mapping.key)
        ]
        wanted.append((("tables", table, "customer", "column"), mapping.customer.column))
        if mapping.echo_column is not None:
            wanted.append((("tables", table, "echo_column"), mapping.echo_column))
        for name, sql in mapping.fields.items():
            try:
                used = compile_expression(sql, c.config.dialect.name).columns
            except ExpressionError:
                continue  # reported when the file was loaded
            wanted += [(("tables", table, "fields", name), column) for column in sorted(used)]
        for loc, column in wanted:
            if column not in have:
                problems.append(c.problem(loc, f"column {column!r} does not exist in table {table}",
                                          _column_fix(column, have)))  # fmt: skip
    return problems


def _column_fix(column: str, have: frozenset[str]) -> str:
    close = difflib.get_close_matches(column, sorted(have), n=1) or [h for h in have if h.lower() == column.lower()]
    listing = ", ".join(sorted(have))
    return f"did you mean {close[0]!r}? (columns: {listing})" if close else f"use one of its columns: {listing}"
