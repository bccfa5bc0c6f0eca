"""The SQL-expression language of field mappings: each supported construct, NULL semantics, refusals."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from dataflows.ingest.expressions import ExpressionError, compile_expression

ROW = {"a": " Ada Lovelace ", "b": None, "n": "2.345", "d": "2026-01-02", "s": "ok"}


@pytest.mark.parametrize(("sql", "value"), [
    ("a", " Ada Lovelace "), ("'x'", "x"), ("NULL", None), ("TRUE", True), ("(s)", "ok"),
    ("UPPER(s)", "OK"), ("LOWER(TRIM(a))", "ada lovelace"), ("REPLACE(a, ' ', '')", "AdaLovelace"),
    ("LENGTH(s)", 2), ("SUBSTRING(s, 2)", "k"), ("SUBSTRING(a, 2, 3)", "Ada"), ("CONCAT(s, s)", "okok"),
    ("s || 'x'", "okx"), ("CONCAT(s, b)", None), ("COALESCE(b, s)", "ok"), ("NULLIF(s, 'ok')", None),
    ("CAST(n AS DECIMAL(14, 2))", Decimal("2.35")), ("CAST(d AS DATE)", date(2026, 1, 2)),
    ("CASE WHEN n > 2 THEN 'big' ELSE 'small' END", "big"), ("CASE s WHEN 'ok' THEN 1 END", 1),
    ("IF(b IS NULL, 'none', 'some')", "none"), ("n = 2", False), ("n <> 2", True), ("n + 1", Decimal("3.345")),
    ("n / 0", None), ("-n", Decimal("-2.345")), ("ROUND(n, 1)", Decimal("2.3")), ("ABS(-n)", Decimal("2.345")),
    ("NOT (n > 1)", False), ("b > 1", None), ("n > 1 AND s = 'ok'", True), ("b = 1 OR s = 'ok'", True),
    ("s IN ('ok', 'hold')", True), ("a LIKE '%Love%'", True), ("b LIKE 'x%'", None),
])  # fmt: skip
def test_construct(sql: str, value: Any) -> None:
    assert compile_expression(sql, "postgres")(ROW) == value


def test_columns_are_those_the_expression_reads() -> None:
    assert compile_expression("COALESCE(TRIM(a), b, 'x')", "mysql").columns == {"a", "b"}


@pytest.mark.parametrize(("sql", "message"), [
    ("pg_sleep(1)", "unsupported SQL function PG_SLEEP"), ("s IS TRUE", "unsupported SQL construct IS"),
    ("s IN (SELECT 1)", "unsupported SQL construct IN"), ("s LIKE b", "LIKE needs a string literal pattern"),
])  # fmt: skip
def test_unsupported_constructs_are_refused_by_name(sql: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        compile_expression(sql, "postgres")
