"""An update maps only the fields that read a changed column, and the change equals mapping every field.

The core reads an update's whole mapped row (`image`: identity's match values, rebuilds after a split, a
late older change dropped because the newer image carries everything), so unchanged fields must still be
in the image, with the values mapping them afresh would give. Rows are generated for every mapped table
of connectors/*.yaml from the column values of the recorded real envelopes.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dataflows.config.connectors import connector_files, load_connector
from dataflows.ingest.decode import ChangeRecord
from dataflows.ingest.mapping import MappingError, TableMapper
from dataflows.settings import project_root
from tests.support.fixtures import recorded

CONFIGS = [load_connector(p) for p in connector_files(project_root() / "connectors")]
TABLES = [(c, t, m) for c in CONFIGS for t, m in c.tables.items()]


def _record(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, table: str) -> ChangeRecord:
    return ChangeRecord("s", table, op, None, before, after, (1, 1), "1", datetime(2026, 1, 1, tzinfo=UTC), None,
                        False)  # fmt: skip


def _pools() -> dict[tuple[str, str], dict[str, list[Any]]]:
    """(source, table) -> column -> the values of the recorded envelopes and variants of them that the
    mapping accepts in an otherwise recorded row."""
    seen: dict[tuple[str, str], tuple[dict[str, Any], dict[str, list[Any]]]] = {}
    for config in CONFIGS:
        for r in recorded(config.name):
            value = r["value"] or {}
            src = value.get("source") or {}
            table = f"{config.dialect.container(src)}.{src.get('table')}"
            for row in (value.get("before"), value.get("after")):
                if not row:
                    continue
                _, columns = seen.setdefault((config.name, table), (row, {}))
                for column, v in row.items():
                    variants = [v, f" {v.upper()} ", v.lower() + "x"] if isinstance(v, str) else [v]
                    pool = columns.setdefault(column, [])
                    pool += [x for x in variants if x not in pool]
    return {(c.name, t): {column: [v for v in values if _maps(TableMapper(c, t, m), {**seen[(c.name, t)][0], column: v})]
                          for column, values in seen[(c.name, t)][1].items()} for c, t, m in TABLES}  # fmt: skip


def _maps(mapper: TableMapper, row: dict[str, Any]) -> bool:
    try:
        mapper.map(_record("c", None, row, mapper.table))
    except MappingError:
        return False
    return True


POOLS = _pools()


@st.composite
def updates(draw: st.DrawFn) -> tuple[TableMapper, dict[str, Any], dict[str, Any]]:
    config, table, mapping = draw(st.sampled_from(TABLES))
    pool = POOLS[(config.name, table)]
    before = {c: draw(st.sampled_from(values)) for c, values in sorted(pool.items())}
    # A key never changes in an update: Debezium sends a primary-key change as a delete and a create.
    edits = draw(st.sets(st.sampled_from(sorted(set(pool) - set(mapping.key))), min_size=1))
    after = {**before, **{c: draw(st.sampled_from(pool[c])) for c in sorted(edits)}}
    return TableMapper(config, table, mapping), before, after


def _fresh(mapper: TableMapper) -> TableMapper:
    """The same compiled mapping, with nothing carried."""
    fresh = copy.copy(mapper)
    fresh._carried = {}
    return fresh


def _full(mapper: TableMapper, before: dict[str, Any], after: dict[str, Any]) -> tuple[dict, dict]:
    """The oracle: every field mapped on both rows; the changed fields are those whose values differ."""
    image = _fresh(mapper).map(_record("c", None, after, mapper.table)).image
    old = _fresh(mapper).map(_record("c", None, before, mapper.table)).image
    return image, {f: v for f, v in image.items() if f not in old or old[f] != v}


def _check(mapper: TableMapper, before: dict[str, Any], after: dict[str, Any]) -> None:
    try:
        expected = _full(mapper, before, after)
    except MappingError:
        assume(False)  # a row the mapping rejects: not what this property is about
    update = _record("u", before, after, mapper.table)
    cold = _fresh(mapper)  # never saw the row: maps every field
    mapper.map(_record("r", None, before, mapper.table))  # saw the row: its image is carried
    evaluated: list[list[str] | None] = []
    evaluate = mapper._evaluate
    mapper._evaluate = lambda row, fallback, only=None: evaluated.append(only) or evaluate(row, fallback, only)  # type: ignore[method-assign]
    warm = mapper.map(update)
    assert evaluated and all(only is not None for only in evaluated), "the update was mapped in full"
    assert (warm.image, warm.fields) == expected
    full = cold.map(update)
    assert (full.image, full.fields) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(updates())
def test_changed_only_update_equals_mapping_every_field(case: tuple[TableMapper, dict, dict]) -> None:
    _check(*case)


def test_the_property_fails_when_a_changed_column_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = TableMapper._changed

    def one_short(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
        columns = changed(before, after)
        return columns - {min(columns)} if columns else columns

    monkeypatch.setattr(TableMapper, "_changed", staticmethod(one_short))
    with pytest.raises(AssertionError):
        test_changed_only_update_equals_mapping_every_field()
