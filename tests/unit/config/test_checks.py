"""The checks of `tidemark sources validate`: each finds its mistake at the right line, and passes a correct file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.cli import main
from dataflows.config.checks import column_problems, validate_files
from dataflows.config.connectors import ConfigProblem, connector_files, load_connector_file
from dataflows.settings import project_root

PG = """\
name: @NAME@
system: @NAME@
debezium:
  connector.class: io.debezium.connector.postgresql.PostgresConnector
  topic.prefix: @NAME@
  database.hostname: localhost
  database.user: u
  database.password: ${env:PW}
  decimal.handling.mode: string
  table.include.list: @INCLUDE@
tables:
  app.customers:
    entity: customer
    key: [id]
    customer: {column: id}
    fields:
      legal_name: TRIM(name)
      erp_status: CASE state WHEN 'A' THEN 'active' WHEN 'S' THEN @STATUS@ ELSE 'closed' END
  app.invoices:
    entity: invoice
    key: [id]
    customer: {column: customer_id}
    fields:
      invoice_status: status
"""
MYSQL = """\
name: @NAME@
system: @NAME@
debezium:
  connector.class: io.debezium.connector.mysql.MySqlConnector
  topic.prefix: @NAME@
  database.hostname: localhost
  database.user: u
  database.password: ${env:PW}
  database.server.id: @SERVER_ID@
  decimal.handling.mode: string
  table.include.list: @INCLUDE@
  heartbeat.interval.ms: 900
  connect.keep.alive.interval.ms: 1250
tables:
  app.customers:
    entity: customer
    key: [id]
    customer: {column: id}
    fields:
      legal_name: TRIM(name)
      erp_status: CASE state WHEN 'A' THEN 'active' WHEN 'S' THEN @STATUS@ ELSE 'closed' END
  app.invoices:
    entity: invoice
    key: [id]
    customer: {column: customer_id}
    fields:
      invoice_status: status
"""
INCLUDE = "app.customers,app.invoices"


def _text(template: str, name: str = "src", *, include: str = INCLUDE, status: str = "'suspended'",
          server_id: int = 5401) -> str:  # fmt: skip
    return (template.replace("@NAME@", name).replace("@INCLUDE@", include).replace("@STATUS@", status)
            .replace("@SERVER_ID@", str(server_id)))  # fmt: skip


def _write(directory: Path, text: str, name: str = "src") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _problems(*paths: Path) -> list[ConfigProblem]:
    return validate_files(list(paths)).problems


@pytest.mark.parametrize("template", [PG, MYSQL], ids=["postgres", "mysql"])
def test_correct_files_pass_every_check(tmp_path: Path, template: str) -> None:
    assert _problems(_write(tmp_path, _text(template))) == []


def test_shipped_connectors_pass_every_check() -> None:
    result = validate_files(connector_files(project_root() / "connectors"))
    assert [str(p) for p in result.problems] == []
    assert {c.config.name for c in result.connectors.values()} == {"erp", "crm"}


# -- (b) table.include.list against the mappings ---------------------------------------------------
def test_mapped_table_missing_from_include_list(tmp_path: Path) -> None:
    path = _write(tmp_path, _text(PG, include="app.customers"))
    (problem,) = _problems(path)
    assert (problem.line, problem.key) == (_line_of(path, "app.invoices:"), "tables.app.invoices")
    assert "not in debezium.table.include.list (line 10)" in problem.message
    assert problem.fix == "add app.invoices to table.include.list, or remove this mapping"


def test_included_table_without_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, _text(MYSQL, include=f"{INCLUDE},app.notes"))
    (problem,) = _problems(path)
    assert (problem.line, problem.key) == (_line_of(path, "table.include.list"), "debezium.table.include.list")
    assert problem.message == "'app.notes' is captured but no entry under tables: maps it"


def test_include_list_regex_covering_the_mapped_tables_passes(tmp_path: Path) -> None:
    assert _problems(_write(tmp_path, _text(PG, include=r"app\.(customers|invoices)"))) == []


def test_missing_include_list_captures_everything(tmp_path: Path) -> None:
    path = _write(tmp_path, _text(PG).replace(f"  table.include.list: {INCLUDE}\n", ""))
    (problem,) = _problems(path)
    assert (problem.line, problem.key) == (3, "debezium")
    assert problem.fix == f"add table.include.list: {INCLUDE}"


def test_schema_include_list_that_leaves_a_mapped_table_out(tmp_path: Path) -> None:
    path = _write(tmp_path, _text(PG).replace("  decimal", "  schema.include.list: other\n  decimal"))
    problems = _problems(path)
    assert {(p.key, p.line) for p in problems} == {("tables.app.customers", _line_of(path, "app.customers:")),
                                                   ("tables.app.invoices", _line_of(path, "app.invoices:"))}  # fmt: skip
    assert all(p.fix == "add app to schema.include.list" for p in problems)


# -- (c) heartbeats of MySQL-family sources --------------------------------------------------------
def test_mysql_without_heartbeats(tmp_path: Path) -> None:
    path = _write(tmp_path, _text(MYSQL).replace("  heartbeat.interval.ms: 900\n", ""))
    (problem,) = _problems(path)
    assert (problem.line, problem.key) == (3, "debezium.heartbeat.interval.ms")
    assert "heartbeat.interval.ms is missing" in problem.message and "heartbeat.interval.ms: 900" in problem.fix


def test_mysql_with_heartbeats_off(tmp_path: Path) -> None:
    path = _write(tmp_path, _text(MYSQL).replace("heartbeat.interval.ms: 900", "heartbeat.interval.ms: 0"))
    (problem,) = _problems(path)
    assert (problem.line, problem.key) == (_line_of(path, "heartbeat.interval.ms"), "debezium.heartbeat.interval.ms")
    assert "is '0'" in problem.message or "is 0" in problem.message


def test_mysql_without_keep_alive_sends_no_heartbeat_while_idle(tmp_path: Path) -> None:
    path = _write(tmp_path, _text(MYSQL).replace("  connect.keep.alive.interval.ms: 1250\n", ""))
    (problem,) = _problems(path)
    assert problem.key == "debezium.connect.keep.alive.interval.ms"
    assert problem.fix == "set connect.keep.alive.interval.ms: 1250"


def test_postgres_needs_no_heartbeat_setting(tmp_path: Path) -> None:
    assert "heartbeat" not in PG and _problems(_write(tmp_path, _text(PG))) == []


# -- (d) database.server.id shared between files -----------------------------------------------------
def test_two_connectors_with_one_server_id(tmp_path: Path) -> None:
    a = _write(tmp_path, _text(MYSQL, "a", server_id=7), "a")
    b = _write(tmp_path, _text(MYSQL, "b", server_id=7), "b")
    problems = _problems(a, b)
    line = _line_of(a, "database.server.id")
    assert [(p.file, p.line, p.key) for p in problems] == [(a, line, "debezium.database.server.id"),
                                                           (b, line, "debezium.database.server.id")]  # fmt: skip
    assert problems[0].message == f"database.server.id 7 is also used by b.yaml:{line}"
    assert problems[0].fix != problems[1].fix  # each is offered an id of its own


def test_distinct_server_ids_pass(tmp_path: Path) -> None:
    a = _write(tmp_path, _text(MYSQL, "a", server_id=7), "a")
    assert _problems(a, _write(tmp_path, _text(MYSQL, "b", server_id=8), "b")) == []


# -- (e) values a CASE can return ----------------------------------------------------------------------
def test_case_returning_a_value_outside_the_allowed_set(tmp_path: Path) -> None:
    path = _write(tmp_path, _text(PG, status="'suspnded'"))
    (problem,) = _problems(path)
    assert (problem.line, problem.key) == (_line_of(path, "erp_status:"), "tables.app.customers.fields.erp_status")
    assert problem.message == "can return 'suspnded', which erp_status does not allow"
    assert problem.fix == "return only 'active', 'suspended', 'closed', or NULL (did you mean 'suspended'?)"


@pytest.mark.parametrize("status", ["NULL", "state", "LOWER('SUSPENDED')", "COALESCE(state, 'closed')"])
def test_case_values_the_field_allows_pass(tmp_path: Path, status: str) -> None:
    assert _problems(_write(tmp_path, _text(PG, status=status))) == []


def test_case_without_else_may_return_null(tmp_path: Path) -> None:
    text = _text(PG).replace(" ELSE 'closed' END", " END")
    assert _problems(_write(tmp_path, text)) == []


@pytest.mark.parametrize(("expression", "bad"), [
    ("CASE WHEN state = 'A' THEN 'active' ELSE 'gone' END", "'gone'"),
    ("UPPER(CASE WHEN state = 'A' THEN 'active' END)", "UPPER('active')"),
    ("COALESCE(state, 'unknown')", "'unknown'"),
    ("'actve'", "'actve'"),
])  # fmt: skip
def test_every_constant_outcome_is_checked(tmp_path: Path, expression: str, bad: str) -> None:
    text = _text(PG).replace(_text(PG).splitlines()[17].split(": ", 1)[1], f'"{expression}"')
    (problem,) = _problems(_write(tmp_path, text))
    assert problem.message == f"can return {bad}, which erp_status does not allow"


def test_mysql_if_is_checked_too(tmp_path: Path) -> None:
    text = _text(MYSQL).replace("invoice_status: status", "invoice_status: IF(paid, 'paid', 'unpaid')")
    (problem,) = _problems(_write(tmp_path, text))
    assert problem.key == "tables.app.invoices.fields.invoice_status" and "'unpaid'" in problem.message


def test_constant_outside_a_pattern_field(tmp_path: Path) -> None:
    text = _text(PG).replace("legal_name: TRIM(name)", "country: CASE WHEN eu THEN 'de' ELSE 'US' END")
    (problem,) = _problems(_write(tmp_path, text))
    assert problem.key == "tables.app.customers.fields.country"
    assert problem.message == "can return 'de', which country cannot hold ('de': String should match pattern '^[A-Z]{2}$')"


# -- (a) columns, given the table's columns (the live read is tested in tests/integration) ------------
COLUMNS = {"app.customers": frozenset({"id", "name", "state"}), "app.invoices": frozenset({"id", "customer_id", "status"})}


def test_columns_that_exist_pass(tmp_path: Path) -> None:
    assert column_problems(load_connector_file(_write(tmp_path, _text(PG))), COLUMNS) == []


def test_misspelt_mapped_key_and_link_columns(tmp_path: Path) -> None:
    text = (_text(PG).replace("TRIM(name)", "TRIM(nme)").replace("key: [id]\n    customer: {column: customer_id}",
                                                                  "key: [ident]\n    customer: {column: customer}"))  # fmt: skip
    path = _write(tmp_path, text)
    problems = column_problems(load_connector_file(path), COLUMNS)
    assert [(p.line, p.key, p.message) for p in problems] == [
        (_line_of(path, "legal_name:"), "tables.app.customers.fields.legal_name",
         "column 'nme' does not exist in table app.customers"),
        (_line_of(path, "key: [ident]"), "tables.app.invoices.key.0", "column 'ident' does not exist in table app.invoices"),
        (_line_of(path, "{column: customer}"), "tables.app.invoices.customer.column",
         "column 'customer' does not exist in table app.invoices"),
    ]  # fmt: skip
    assert problems[0].fix == "did you mean 'name'? (columns: id, name, state)"
    assert problems[2].fix.startswith("did you mean 'customer_id'?")


def test_echo_column_and_missing_table(tmp_path: Path) -> None:
    text = _text(PG).replace("    customer: {column: id}\n", "    customer: {column: id}\n    echo_column: tm_version\n")
    path = _write(tmp_path, text)
    problems = column_problems(load_connector_file(path), {"app.customers": COLUMNS["app.customers"]})
    assert [(p.line, p.key) for p in problems] == [(_line_of(path, "echo_column"), "tables.app.customers.echo_column"),
                                                  (_line_of(path, "app.invoices:"), "tables.app.invoices")]  # fmt: skip
    assert "does not exist in the database, or the capture user cannot read it" in problems[1].message


# -- every problem of every file, in one run ------------------------------------------------------------
MISTAKES = ["uncaptured_table", "unmapped_include", "bad_case", "no_heartbeat", "shared_server_id", "unknown_key"]


def _inject(template: str, name: str, mistakes: set[str]) -> tuple[str, set[str]]:
    """A file with the given mistakes, and the key path each must be reported at."""
    mysql = template is MYSQL
    include = "app.customers" if "uncaptured_table" in mistakes else INCLUDE
    include += ",app.notes" if "unmapped_include" in mistakes else ""
    text = _text(template, name, include=include, status="'frozen'" if "bad_case" in mistakes else "'suspended'",
                 server_id=999 if "shared_server_id" in mistakes else 1000 + sum(map(ord, name)))  # fmt: skip
    if "unknown_key" in mistakes:  # a file that does not load: its schema problem is all it can report
        return text.replace("    entity: invoice", "    entitty: invoice"), {"tables.app.invoices.entitty",
                                                                            "tables.app.invoices.entity"}  # fmt: skip
    if mysql and "no_heartbeat" in mistakes:
        text = text.replace("  heartbeat.interval.ms: 900\n", "")
    keys = {"uncaptured_table": "tables.app.invoices", "unmapped_include": "debezium.table.include.list",
            "bad_case": "tables.app.customers.fields.erp_status"}  # fmt: skip
    expected = {keys[m] for m in mistakes if m in keys}
    if mysql and "no_heartbeat" in mistakes:
        expected.add("debezium.heartbeat.interval.ms")
    return text, expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.tuples(st.booleans(), st.sets(st.sampled_from(MISTAKES))), min_size=1, max_size=5))
def test_every_problem_of_every_file_is_reported_in_one_run(tmp_path_factory, files) -> None:
    directory = tmp_path_factory.mktemp("connectors")
    expected: set[tuple[str, str]] = set()
    sharing = [f"s{i}" for i, (mysql, m) in enumerate(files) if mysql and "shared_server_id" in m and "unknown_key" not in m]
    for i, (mysql, mistakes) in enumerate(files):
        text, keys = _inject(MYSQL if mysql else PG, f"s{i}", mistakes)
        _write(directory, text, f"s{i}")
        expected |= {(f"s{i}.yaml", k) for k in keys}
    if len(sharing) > 1:
        expected |= {(f"{name}.yaml", "debezium.database.server.id") for name in sharing}
    problems = validate_files(connector_files(directory)).problems
    assert {(p.file.name, p.key) for p in problems} == expected
    for p in problems:  # each points at the line of its key (or of the block that lacks it)
        assert _fragment(p.key) in p.file.read_text().splitlines()[p.line - 1], p


def _fragment(key: str) -> str:
    """What the line a problem of `key` points at must hold."""
    if key == "debezium.heartbeat.interval.ms":  # missing: the block that lacks it
        return "debezium:"
    if key.startswith("debezium."):
        return key.removeprefix("debezium.") + ":"
    table_and_rest = key.removeprefix("tables.").split(".")
    if len(table_and_rest) == 2 or table_and_rest[-1] == "entity":  # a missing `entity`: the table that lacks it
        return ".".join(table_and_rest[:2]) + ":"
    return f"{table_and_rest[-1]}:"


# -- the command ----------------------------------------------------------------------------------------
def test_validate_command_prints_all_problems_and_fails(tmp_path: Path, capsys) -> None:
    good = _write(tmp_path, _text(PG, "good"), "good")
    bad = _write(tmp_path, _text(PG, "bad", include="app.customers", status="'frozen'"), "bad")
    bad2 = _write(tmp_path, _text(MYSQL, "bad2").replace("  heartbeat.interval.ms: 900\n", ""), "bad2")
    assert main(["sources", "validate", str(good), str(bad), str(bad2)]) == 1
    out, err = capsys.readouterr()
    assert out == f"{good}: ok\n"
    assert f"{bad}:{_line_of(bad, 'erp_status')}: tables.app.customers.fields.erp_status: can return 'frozen'" in err
    assert f"{bad}:{_line_of(bad, 'app.invoices:')}: tables.app.invoices: mapped table" in err
    assert f"{bad2}:3: debezium.heartbeat.interval.ms: heartbeat.interval.ms is missing" in err
    assert err.rstrip().endswith("3 problem(s) in 2 file(s)")
    assert main(["sources", "validate", str(good)]) == 0


# -- whatever a loadable file holds, the checks report problems and never raise ------------------------
SQL = ["'x'", "NULL", "1/0", "CAST('abc' AS INT)", "CAST('2020-13-45' AS DATE)", "SUBSTRING('abc', 'x')",
       "CASE WHEN a THEN CAST('x' AS DECIMAL(4, 2)) END", "IF(a, -1, 99999999999999999999)", "COALESCE(NULL, 'ok')",
       "UPPER(CASE a WHEN 1 THEN 2 END)", "TRIM(CASE WHEN a THEN ' active ' ELSE NULL END)", "'2020-01-01'"]  # fmt: skip
PROPERTY_VALUES = st.sampled_from(["", "0", "-5", "abc", "1e3", "[", "(a|", ".*", "app\\..*", "${env:X}", " 7 ", "7"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mysql=st.booleans(), field=st.sampled_from(["display_name", "legal_name", "credit_limit", "country"]),
       sql=st.sampled_from(SQL), props=st.dictionaries(st.sampled_from(
           ["heartbeat.interval.ms", "table.include.list", "database.server.id", "connect.keep.alive.interval.ms",
            "schema.include.list", "database.include.list"]), PROPERTY_VALUES, max_size=4))  # fmt: skip
def test_checks_never_raise(tmp_path_factory, mysql: bool, field: str, sql: str, props: dict[str, str]) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    for name in ("a", "b"):  # two files: the cross-file check runs too
        text = _text(MYSQL if mysql else PG, name).replace("legal_name: TRIM(name)", f'{field}: "{sql}"')
        lines = [line for line in text.splitlines() if line.split(":")[0].strip() not in props]
        at = lines.index("debezium:") + 1
        lines[at:at] = [f"  {k}: {v!r}" for k, v in props.items()]
        _write(directory, "\n".join(lines) + "\n", name)
    for problem in validate_files(connector_files(directory)).problems:
        assert problem.line >= 1 and problem.message
