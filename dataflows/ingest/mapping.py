"""Change records -> canonical changes: entity, canonical key, customer link and only the fields that changed.

The core needs each change's whole mapped row (`image`: identity reads its match fields, a split rebuilds
from it, and a late older change is dropped because the newer image carries everything). An update with a
before image therefore evaluates only the fields that read a changed column and carries the others over
from the row's previous image, kept per row key while the mapped columns of `before` are exactly the ones
it was mapped from; otherwise (first sight of a row, pushed out of the bounded carry, unavailable TOAST
values) it maps every field. The result is the same either way (tests/unit/ingest/test_changed_only.py).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import TypeAdapter, ValidationError

from dataflows.config.connectors import ConnectorConfig, TableMapping
from dataflows.core.change import CanonicalChange, stable_id
from dataflows.ingest.decode import UNAVAILABLE, ChangeRecord
from dataflows.ingest.expressions import (
    CompiledExpression,
    MissingColumn,
    ValueConversionError,
    _to_date,
    _to_decimal,
    compile_expression,
)
from schemas.v1.entities import ENTITY_MODELS, FIELD_ENTITY

_UNKNOWN = object()  # a value we do not know (unchanged TOAST without a before image)
# Rows per table whose last image is carried (about 1 KB each): a row pushed out maps in full next time.
CARRY_ROWS = 20_000


class MappingError(ValueError):
    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


def correlation_id(source: str, tx_id: str | None, position_text: str) -> str:
    """All changes of one source transaction share it; without a transaction id, the position stands in."""
    return stable_id(f"{source}:tx:{tx_id}" if tx_id else f"{source}:pos:{position_text}")


# Debezium hands a PostgreSQL BC date over as the same day AD ('0044-03-15 BC' arrives as 0044-03-15), and a
# MySQL zero date as year 0 or null: a business date this far back is a broken row, not a fact to publish.
EARLIEST_BUSINESS_DATE = date(1900, 1, 1)


def _business_date(value: Any) -> date:
    day = _to_date(value)
    if day < EARLIEST_BUSINESS_DATE:
        msg = (f"{day.isoformat()} is before {EARLIEST_BUSINESS_DATE.isoformat()}: not a business date "
               "(a BC or zero date in the source arrives like this); fix the row")  # fmt: skip
        raise ValueConversionError(msg)
    return day


def _coercer(field: str) -> Callable[[Any], Any]:
    info = ENTITY_MODELS[FIELD_ENTITY[field]].model_fields[field]
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[info.annotation, info])  # type: ignore[name-defined]
    inner = info.annotation
    if get_origin(inner) in (Union, types.UnionType):
        inner = next(a for a in get_args(inner) if a is not type(None))
    if inner is str and not info.metadata:
        # The common case, kept off pydantic's path: a plain optional string.
        return lambda value: value if value is None or isinstance(value, str) else str(value)
    if get_origin(inner) is Literal:
        allowed = frozenset(get_args(inner))

        def literal(value: Any) -> Any:
            if value is None or value in allowed:
                return value
            return adapter.validate_python(value)  # raises the model's own error

        return literal
    pre: Callable[[Any], Any] | None = {date: _business_date, Decimal: _to_decimal}.get(inner)  # type: ignore[call-overload]

    def coerce(value: Any) -> Any:
        if value is None:
            return None
        if pre is not None:
            value = pre(value)
        elif inner is str and not isinstance(value, str):
            value = str(value)
        return adapter.validate_python(value)

    return coerce


class TableMapper:
    """The compiled mapping of one captured table."""

    def __init__(self, config: ConnectorConfig, table: str, mapping: TableMapping,
                 carry_rows: int = CARRY_ROWS) -> None:  # fmt: skip
        self.source = config.name
        self.system = config.system
        self.table = table
        self.entity = mapping.entity
        self.key_columns = mapping.key
        self.link_column = mapping.customer.column
        self.via_table = mapping.customer.via
        self.customer_system = mapping.customer.system or config.system
        self.echo_column = mapping.echo_column
        self.fields: dict[str, CompiledExpression] = {
            f: compile_expression(sql, config.dialect.name) for f, sql in mapping.fields.items()
        }
        self.coercers = {f: _coercer(f) for f in self.fields}
        self.columns = tuple(sorted({c for expr in self.fields.values() for c in expr.columns}))
        self.carry_rows = carry_rows
        # row key -> (values of the mapped columns, the image mapped from them), oldest first
        self._carried: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def _evaluate(self, row: dict[str, Any], fallback: dict[str, Any] | None,
                  only: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        unknown = {c for c, v in row.items() if v == UNAVAILABLE}
        if unknown:
            row = dict(row)
            for column in unknown:
                prior = fallback.get(column, UNAVAILABLE) if fallback else UNAVAILABLE
                row[column] = prior if prior != UNAVAILABLE else _UNKNOWN
        out: dict[str, Any] = {}
        for field in only if only is not None else self.fields:
            expr = self.fields[field]
            if unknown and any(row.get(c) is _UNKNOWN for c in expr.columns):
                continue  # never let an unavailable TOAST value overwrite a known one
            try:
                value = expr(row)
            except MissingColumn as e:
                msg = (f"column {e.column!r} used by field {field!r} ({expr.sql}) is missing from {self.table}: "
                       f"dropped or renamed by DDL? Update tables.{self.table}.fields in connectors/{self.source}.yaml")  # fmt: skip
                raise MappingError("mapped_column_missing", msg) from None
            except (ValueConversionError, TypeError, ArithmeticError) as e:
                msg = f"field {field!r} ({expr.sql}) on {self.table}: {e}"
                raise MappingError("invalid_value", msg) from None
            try:
                out[field] = self.coercers[field](value)
            except (ValidationError, ValueConversionError) as e:
                detail = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
                msg = f"field {field!r} = {value!r} from {self.table} violates the canonical model: {detail}"
                raise MappingError("invalid_value", msg) from None
        return out

    def _key(self, row: dict[str, Any]) -> str:
        try:
            return "|".join(str(row[c]) for c in self.key_columns)
        except KeyError as e:
            msg = f"key column {e.args[0]!r} missing from {self.table}"
            raise MappingError("mapped_column_missing", msg) from None

    def _inputs(self, row: dict[str, Any]) -> tuple[Any, ...] | None:
        """The mapped columns' values of `row`; None if one is missing or unavailable (never carried)."""
        try:
            values = tuple([row[c] for c in self.columns])
        except KeyError:
            return None
        return None if UNAVAILABLE in values else values

    def _carry(self, key: str, inputs: tuple[Any, ...] | None, image: dict[str, Any]) -> None:
        self._carried.pop(key, None)  # re-inserted last, so the least recently changed row goes first
        if inputs is None:
            return
        self._carried[key] = (inputs, dict(image))  # a copy: what the core does with the change's image is its own
        if len(self._carried) > self.carry_rows:
            del self._carried[next(iter(self._carried))]

    @staticmethod
    def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
        """Columns whose value differs between the row images (equal values of a column map alike)."""
        return {c for c, v in after.items() if before.get(c, UNAVAILABLE) != v}

    def _update(self, before: dict[str, Any], after: dict[str, Any], key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(image, changed fields) of an update: only fields reading a changed column can differ."""
        changed = self._changed(before, after)
        candidates = [f for f, expr in self.fields.items() if expr.columns & changed]
        carried, inputs = self._carried.get(key), self._inputs(after)
        if carried is not None and inputs is not None and carried[0] == self._inputs(before):
            old = carried[1]  # what mapping `before` gives, kept from the change that produced it
            image = {**old, **self._evaluate(after, before, candidates)}
        else:
            image = self._evaluate(after, before)
            old = self._evaluate(before, None, candidates) if candidates else {}
        fields = {f: image[f] for f in candidates if f in image and (f not in old or old[f] != image[f])}
        self._carry(key, inputs, image)
        return image, fields

    def map(self, record: ChangeRecord, origin: Any = None, replayed: bool = False) -> CanonicalChange:
        """`origin` and `replayed`: see CanonicalChange (set here, not copied in afterwards: a copy per change)."""
        if record.op == "t":
            msg = (f"TRUNCATE of {self.table} at {record.position_text}: removed rows cannot be attributed to "
                   "customers; re-snapshot the table (Debezium incremental snapshot signal) to reconcile")  # fmt: skip
            raise MappingError("truncate", msg)
        row = record.after if record.op != "d" else record.before
        if row is None:
            msg = f"{record.op!r} change on {self.table} without a row image"
            raise MappingError("missing_row_image", msg)
        entity_key = self._key(row)
        if record.op == "d":
            fields: dict[str, Any] = {}
            image: dict[str, Any] = {}
            self._carried.pop(entity_key, None)
        elif record.op == "u" and record.before is not None:
            image, fields = self._update(record.before, row, entity_key)
        else:
            image = fields = self._evaluate(row, record.before)
            self._carry(entity_key, self._inputs(row), image)
        echo = (self.echo_column is not None and record.op == "u" and record.before is not None
                and record.before.get(self.echo_column) != row.get(self.echo_column))  # fmt: skip
        link = row.get(self.link_column)
        customer = link if self.via_table is None else None
        via = (self.via_table, str(link)) if self.via_table is not None and link is not None else None
        return CanonicalChange(
            change_id=stable_id(f"{self.source}/{self.table}/{entity_key}@{record.position_text}/{record.op}"),
            source=self.source,
            system=self.system,
            table=self.table,
            entity=self.entity,
            entity_key=entity_key,
            customer_system=self.customer_system,
            customer_ref=None if customer is None else str(customer),
            via=via,
            deleted=record.op == "d",
            fields=fields,
            image=image,
            position=record.position,
            position_text=record.position_text,
            commit_time=record.commit_time,
            correlation_id=correlation_id(self.source, record.tx_id, record.position_text),
            snapshot=record.snapshot,
            echo=echo,
            commit_resolution_us=record.commit_resolution_us,
            snapshot_last=record.snapshot_last,
            origin=origin,
            replayed=replayed,
        )  # fmt: skip


class SourceMapper:
    """All table mappings of one source."""

    def __init__(self, config: ConnectorConfig, carry_rows: int = CARRY_ROWS) -> None:
        self.config = config
        self.tables = {t: TableMapper(config, t, m, carry_rows) for t, m in config.tables.items()}

    def map(self, record: ChangeRecord, origin: Any = None, replayed: bool = False) -> CanonicalChange:
        mapper = self.tables.get(record.table)
        if mapper is None:
            msg = (f"table {record.table} is captured by source {self.config.name!r} but not mapped: add it under "
                   f"tables: in connectors/{self.config.name}.yaml or drop it from table.include.list")  # fmt: skip
            raise MappingError("unknown_table", msg)
        return mapper.map(record, origin, replayed)
