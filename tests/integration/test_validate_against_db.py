"""`tidemark sources validate --against-db` and `tidemark up` read the mapped tables' columns from the real
ERP PostgreSQL and CRM MariaDB, and name a misspelt column with its file, line and the column meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflows.cli import main
from dataflows.config.connectors import ConnectorConfigError, connector_files
from dataflows.config.live import validate_against_databases
from dataflows.settings import project_root
from dataflows.stack.local import LocalStack, capture_process_name

SHIPPED = project_root() / "connectors"


def _misspelt(directory: Path, suffix: str = "") -> tuple[Path, Path]:
    """erp.yaml with a misspelt mapped column, crm.yaml with a misspelt mapped column and key column."""
    erp = (SHIPPED / "erp.yaml").read_text().replace("legal_name: TRIM(legal_name)", "legal_name: TRIM(legal_nme)")
    crm = (SHIPPED / "crm.yaml").read_text().replace("industry: industry", "industry: industy")
    crm = crm.replace("    key: [id]\n    customer: {column: account_id}\n    fields:\n      first_name",
                      "    key: [contact_id]\n    customer: {column: account_id}\n    fields:\n      first_name")  # fmt: skip
    if suffix:  # sources of their own, so no capture of the shared stack is involved
        erp = erp.replace("\nname: erp\n", f"\nname: erp{suffix}\n")
        crm = crm.replace("\nname: crm\n", f"\nname: crm{suffix}\n").replace("184054", "184099")
    paths = (directory / f"erp{suffix}.yaml", directory / f"crm{suffix}.yaml")
    paths[0].write_text(erp)
    paths[1].write_text(crm)
    return paths


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_shipped_connectors_match_the_real_tables(stack: LocalStack) -> None:
    result = validate_against_databases(connector_files(SHIPPED), stack.runtime_defaults())
    assert [str(p) for p in result.problems] == []


def test_misspelt_columns_found_in_postgres_and_mariadb(stack: LocalStack, tmp_path: Path) -> None:
    erp, crm = _misspelt(tmp_path)
    problems = validate_against_databases([erp, crm], stack.runtime_defaults()).problems
    assert [(p.file, p.line, p.key, p.message) for p in problems] == [
        (crm, _line(crm, "industry: industy"), "tables.crm.accounts.fields.industry",
         "column 'industy' does not exist in table crm.accounts"),
        (crm, _line(crm, "key: [contact_id]"), "tables.crm.contacts.key.0",
         "column 'contact_id' does not exist in table crm.contacts"),
        (erp, _line(erp, "TRIM(legal_nme)"), "tables.erp.customers.fields.legal_name",
         "column 'legal_nme' does not exist in table erp.customers"),
    ]  # fmt: skip
    assert problems[0].fix.startswith("did you mean 'industry'? (columns: country, credit_status, domain, ")
    assert problems[2].fix.startswith("did you mean 'legal_name'?")


def test_validate_command_against_db(stack: LocalStack, tmp_path: Path, monkeypatch, capsys) -> None:
    erp, crm = _misspelt(tmp_path)
    for name, value in {"TIDEMARK_HOME": stack.home, "TIDEMARK_ERP_PORT": stack.settings.erp_port,
                        "TIDEMARK_CRM_PORT": stack.settings.crm_port}.items():  # fmt: skip
        monkeypatch.setenv(name, str(value))
    assert main(["sources", "validate", "--against-db", str(erp), str(crm)]) == 1
    err = capsys.readouterr().err
    assert f"{erp}:{_line(erp, 'TRIM(legal_nme)')}: tables.erp.customers.fields.legal_name: column 'legal_nme'" in err
    assert f"{crm}:{_line(crm, 'industy')}: tables.crm.accounts.fields.industry: column 'industy'" in err
    assert err.rstrip().endswith("3 problem(s) in 2 file(s)")
    assert main(["sources", "validate", "--against-db", *map(str, connector_files(SHIPPED))]) == 0


def test_unreachable_database_is_a_problem_not_a_crash(stack: LocalStack, tmp_path: Path) -> None:
    defaults = {**stack.runtime_defaults(), "TIDEMARK_CRM_PORT": "1"}  # nothing listens on port 1
    (problem,) = validate_against_databases([SHIPPED / "crm.yaml"], defaults).problems
    assert problem.key == "debezium.database.hostname" and problem.message.startswith("cannot read the tables' columns")
    assert defaults["TIDEMARK_CRM_CAPTURE_PASSWORD"] not in str(problem)


def test_up_refuses_to_start_captures_on_a_missing_column(stack: LocalStack, tmp_path: Path) -> None:
    erp, crm = _misspelt(tmp_path, suffix="bad")
    local = LocalStack(stack.settings.model_copy(update={"connectors_dir": tmp_path}))
    lines: list[str] = []
    with pytest.raises(ConnectorConfigError) as e:
        local.up(capture=True, dataflow=False, echo=lines.append)
    assert {(p.file, p.key) for p in e.value.problems} == {
        (erp, "tables.erp.customers.fields.legal_name"), (crm, "tables.crm.accounts.fields.industry"),
        (crm, "tables.crm.contacts.key.0")}  # fmt: skip
    assert f"{erp}:{_line(erp, 'TRIM(legal_nme)')}: tables.erp.customers.fields.legal_name" in str(e.value)
    assert any(line.startswith("erp      already up") for line in lines)  # checked once the databases were up
    for source in ("erpbad", "crmbad"):
        assert local.table.get(capture_process_name(source)) is None  # and no capture was started
