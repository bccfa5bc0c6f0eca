"""Field mappings written as SQL expressions, parsed with sqlglot and compiled once into Python closures.

Nothing is evaluated as code: each supported AST node becomes a small closure over its compiled
children. Any other node (an unknown or unsafe function such as `pg_sleep`) is refused at validation,
naming the function. NULL propagates as in SQL; comparisons with NULL are NULL (falsy in CASE/IF).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

Row = Mapping[str, Any]
Fn = Callable[[Row], Any]
EPOCH = date(1970, 1, 1)


class ExpressionError(ValueError):
    """An expression that cannot be parsed or uses something unsupported."""


class MissingColumn(KeyError):
    """A column the expression reads is absent from the row (dropped by DDL?)."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


class ValueConversionError(ValueError):
    """A value that the expression cannot convert (e.g. CAST('abc' AS DECIMAL))."""


@dataclass(frozen=True)
class CompiledExpression:
    sql: str
    columns: frozenset[str]
    fn: Fn

    def __call__(self, row: Row) -> Any:
        return self.fn(row)


def compile_expression(sql: str, dialect: str) -> CompiledExpression:
    """Parse `sql` in `dialect` and compile it; raise ExpressionError naming what is unsupported."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except ParseError as e:
        msg = f"cannot parse {sql!r} as {dialect} SQL: {e.errors[0]['description'] if e.errors else e}"
        raise ExpressionError(msg) from None
    columns = frozenset(c.name for c in tree.find_all(exp.Column))
    return CompiledExpression(sql, columns, _compile(tree))


def _null_safe(fn: Callable[..., Any], *args: Fn) -> Fn:
    if len(args) == 1:
        (a,) = args

        def one(row: Row) -> Any:
            v = a(row)
            return None if v is None else fn(v)

        return one

    def many(row: Row) -> Any:
        values = [f(row) for f in args]
        return None if any(v is None for v in values) else fn(*values)

    return many


def _column(name: str) -> Fn:
    def read(row: Row) -> Any:
        try:
            return row[name]
        except KeyError:
            raise MissingColumn(name) from None

    return read


def _literal(node: exp.Literal) -> Fn:
    if node.is_string:
        value: Any = node.this
    else:
        text = node.this
        value = int(text) if text.lstrip("-").isdigit() else Decimal(text)
    return lambda _row: value


def _to_decimal(v: Any) -> Decimal:
    try:
        return v if isinstance(v, Decimal) else Decimal(str(v))
    except InvalidOperation:
        msg = f"{v!r} is not a number"
        raise ValueConversionError(msg) from None


def _to_date(v: Any) -> date:
    if isinstance(v, date):
        return v
    if isinstance(v, int):  # Debezium io.debezium.time.Date: days since the epoch
        try:
            return EPOCH + timedelta(days=v)
        except OverflowError:
            msg = f"{v} days from 1970-01-01 is outside the calendar"
            raise ValueConversionError(msg) from None
    try:
        return date.fromisoformat(str(v)[:10])
    except ValueError:
        msg = f"{v!r} is not a date"
        raise ValueConversionError(msg) from None


def _to_int(v: Any) -> int:
    try:
        return int(v) if not isinstance(v, str) else int(Decimal(v))
    except (ValueError, InvalidOperation):
        msg = f"{v!r} is not an integer"
        raise ValueConversionError(msg) from None


def _to_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "t", "true", "y", "yes")
    return bool(v)


def _cast(node: exp.Cast, inner: Fn) -> Fn:
    to: exp.DataType = node.to
    t = to.this
    if t in (exp.DataType.Type.DECIMAL, exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT):
        params = [int(p.this.this) for p in to.expressions if isinstance(p.this, exp.Literal)]
        if len(params) == 2:
            quantum = Decimal(1).scaleb(-params[1])
            return _null_safe(lambda v: _to_decimal(v).quantize(quantum, rounding=ROUND_HALF_UP), inner)
        return _null_safe(_to_decimal, inner)
    if t in exp.DataType.INTEGER_TYPES:
        return _null_safe(_to_int, inner)
    if t in exp.DataType.TEXT_TYPES or t == exp.DataType.Type.CHAR:
        return _null_safe(str, inner)
    if t == exp.DataType.Type.DATE:
        return _null_safe(_to_date, inner)
    if t == exp.DataType.Type.BOOLEAN:
        return _null_safe(_to_bool, inner)
    msg = f"CAST to {to.sql()} is not supported (supported: DECIMAL, integer types, text types, DATE, BOOLEAN)"
    raise ExpressionError(msg)


def _trim(node: exp.Trim, inner: Fn) -> Fn:
    chars_node = node.args.get("expression")
    chars = _compile(chars_node) if chars_node is not None else None
    position = (node.args.get("position") or "BOTH").upper()
    method = {"LEADING": str.lstrip, "TRAILING": str.rstrip}.get(position, str.strip)
    if chars is None:
        return _null_safe(method, inner)
    return _null_safe(lambda v, c: method(v, c), inner, chars)


def _case(node: exp.Case) -> Fn:
    subject = _compile(node.this) if node.this is not None else None
    branches = [(_compile(i.this), _compile(i.args["true"])) for i in node.args["ifs"]]
    default = _compile(node.args["default"]) if node.args.get("default") is not None else (lambda _r: None)

    def case(row: Row) -> Any:
        value = subject(row) if subject is not None else None
        for cond, result in branches:
            c = cond(row)
            if (c == value and c is not None) if subject is not None else bool(c):
                return result(row)
        return default(row)

    return case


def _if(node: exp.If) -> Fn:
    cond, true = _compile(node.this), _compile(node.args["true"])
    false = _compile(node.args["false"]) if node.args.get("false") is not None else (lambda _r: None)
    return lambda row: true(row) if cond(row) else false(row)


def _compare(op: Callable[[Any, Any], bool], node: exp.Binary) -> Fn:
    left, right = _compile(node.this), _compile(node.expression)

    def compare(row: Row) -> Any:
        a, b = left(row), right(row)
        if a is None or b is None:
            return None
        if isinstance(a, Decimal | int) and isinstance(b, str) or isinstance(b, Decimal | int) and isinstance(a, str):
            a, b = _to_decimal(a), _to_decimal(b)
        return op(a, b)

    return compare


def _concat(parts: list[Fn]) -> Fn:
    def concat(row: Row) -> Any:
        values = [p(row) for p in parts]
        return None if any(v is None for v in values) else "".join(str(v) for v in values)

    return concat


def _coalesce(parts: list[Fn]) -> Fn:
    def coalesce(row: Row) -> Any:
        for p in parts:
            v = p(row)
            if v is not None:
                return v
        return None

    return coalesce


def _in(node: exp.In) -> Fn:
    subject = _compile(node.this)
    options = [_compile(e) for e in node.expressions]

    def contains(row: Row) -> Any:
        v = subject(row)
        return None if v is None else any(v == o(row) for o in options)

    return contains


def _like(pattern_node: exp.Expression, subject: Fn) -> Fn:
    if not (isinstance(pattern_node, exp.Literal) and pattern_node.is_string):
        msg = "LIKE needs a string literal pattern"
        raise ExpressionError(msg)
    regex = re.compile(
        "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern_node.this), re.DOTALL
    )
    return _null_safe(lambda v: regex.fullmatch(str(v)) is not None, subject)


_BINARY_ARITHMETIC: dict[type[exp.Expression], Callable[[Any, Any], Any]] = {
    exp.Add: lambda a, b: _to_decimal(a) + _to_decimal(b),
    exp.Sub: lambda a, b: _to_decimal(a) - _to_decimal(b),
    exp.Mul: lambda a, b: _to_decimal(a) * _to_decimal(b),
    exp.Div: lambda a, b: None if _to_decimal(b) == 0 else _to_decimal(a) / _to_decimal(b),
}
_COMPARISONS: dict[type[exp.Expression], Callable[[Any, Any], bool]] = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
}


def _compile(node: exp.Expression) -> Fn:
    """The closure of `node`, from the compiler of its SQL construct (or of the construct it specializes)."""
    for cls in type(node).__mro__:
        compiler = _COMPILERS.get(cls)
        if compiler is not None:
            return compiler(node)
    raise _unsupported(node)


def _unsupported(node: exp.Expression) -> ExpressionError:
    name = node.name.upper() if isinstance(node, exp.Anonymous) else node.key.upper()
    kind = "function" if isinstance(node, exp.Func) else "construct"
    return ExpressionError(f"unsupported SQL {kind} {name}")


def _constant(value: Any) -> Fn:
    return lambda _row: value


def _unary(fn: Callable[..., Any]) -> Callable[[Any], Fn]:
    return lambda node: _null_safe(fn, _compile(node.this))


def _binary(fn: Callable[..., Any]) -> Callable[[Any], Fn]:
    return lambda node: _null_safe(fn, _compile(node.this), _compile(node.expression))


def _substring(node: exp.Substring) -> Fn:
    subject, start = _compile(node.this), _compile(node.args["start"])
    if node.args.get("length") is None:
        return _null_safe(lambda s, b: s[max(int(b) - 1, 0) :], subject, start)
    length = _compile(node.args["length"])
    return _null_safe(lambda s, b, n: s[max(int(b) - 1, 0) : max(int(b) - 1, 0) + int(n)], subject, start, length)


def _nullif(node: exp.Nullif) -> Fn:
    a, b = _compile(node.this), _compile(node.expression)
    return lambda row: None if (v := a(row)) == b(row) else v


def _round(node: exp.Round) -> Fn:
    digits = _compile(node.args["decimals"]) if node.args.get("decimals") is not None else _constant(0)
    return _null_safe(lambda v, d: round(_to_decimal(v), int(d)), _compile(node.this), digits)


def _is(node: exp.Is) -> Fn:
    if not isinstance(node.expression, exp.Null):
        raise _unsupported(node)
    subject = _compile(node.this)
    return lambda row: subject(row) is None


def _not(node: exp.Not) -> Fn:
    inner = _compile(node.this)
    return lambda row: None if (v := inner(row)) is None else not v


def _and(node: exp.And) -> Fn:
    left, right = _compile(node.this), _compile(node.expression)
    return lambda row: bool(left(row)) and bool(right(row))


def _or(node: exp.Or) -> Fn:
    left, right = _compile(node.this), _compile(node.expression)
    return lambda row: bool(left(row)) or bool(right(row))


def _in_list(node: exp.In) -> Fn:
    if node.args.get("query"):
        raise _unsupported(node)
    return _in(node)

# One compiler per SQL construct, looked up by the node's class (then its bases), as sqlglot's TRANSFORMS.
_COMPILERS: dict[type[exp.Expression], Callable[[Any], Fn]] = {
    exp.Column: lambda node: _column(node.name),
    exp.Literal: lambda node: _literal(node),
    exp.Null: lambda _node: _constant(None),
    exp.Boolean: lambda node: _constant(bool(node.this)),
    exp.Paren: lambda node: _compile(node.this),
    exp.Upper: _unary(str.upper),
    exp.Lower: _unary(str.lower),
    exp.Trim: lambda node: _trim(node, _compile(node.this)),
    exp.Replace: lambda node: _null_safe(str.replace, _compile(node.this), _compile(node.expression),
                                         _compile(node.args["replacement"])),  # fmt: skip
    exp.Length: _unary(len),
    exp.Substring: _substring,
    exp.Concat: lambda node: _concat([_compile(p) for p in node.expressions]),
    exp.DPipe: lambda node: _concat([_compile(node.this), _compile(node.expression)]),
    exp.Coalesce: lambda node: _coalesce([_compile(node.this), *(_compile(e) for e in node.expressions)]),
    exp.Nullif: _nullif,
    exp.Cast: lambda node: _cast(node, _compile(node.this)),  # and TryCast, a Cast
    exp.Case: lambda node: _case(node),
    exp.If: lambda node: _if(node),
    **{cls: (lambda op: lambda node: _compare(op, node))(op) for cls, op in _COMPARISONS.items()},
    **{cls: _binary(op) for cls, op in _BINARY_ARITHMETIC.items()},
    exp.Neg: _unary(lambda v: -_to_decimal(v)),
    exp.Round: _round,
    exp.Abs: _unary(lambda v: abs(_to_decimal(v))),
    exp.Is: _is,
    exp.Not: _not,
    exp.And: _and,
    exp.Or: _or,
    exp.In: _in_list,
    exp.Like: lambda node: _like(node.expression, _compile(node.this)),
}
