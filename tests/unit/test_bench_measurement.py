"""A benchmark figure as a script reads it: one JSON object per line with a fixed schema."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflows.bench.measurement import KEYS, STAGES, UNITS, Measurement, Table

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), finite, st.text(max_size=20))
conditions = st.dictionaries(st.text(min_size=1, max_size=12), scalars | st.lists(scalars, max_size=3), max_size=5)


@st.composite
def measurements(draw: st.DrawFn) -> Measurement:
    stage = draw(st.sampled_from(STAGES))
    cond = draw(conditions)
    if stage == "dataflow":
        cond = {**cond, "processes": draw(st.integers(1, 8))}
    what, unit = draw(st.text(min_size=1, max_size=40)), draw(st.sampled_from(sorted(UNITS)))
    return Measurement(stage, what, draw(finite), unit, draw(st.none() | positive), draw(st.integers(1, 50)), cond)


@given(measurements())
def test_a_measurement_is_one_line_of_json_with_exactly_the_schema_keys(m: Measurement) -> None:
    line = m.json_line()
    assert "\n" not in line
    doc = json.loads(line)
    assert tuple(doc) == KEYS
    assert doc["stage"] == m.stage and doc["what"] == m.what and doc["unit"] in UNITS
    assert isinstance(doc["value"], int | float) and isinstance(doc["runs"], int) and doc["runs"] >= 1
    assert isinstance(doc["conditions"], dict)
    if m.stage == "dataflow":
        assert isinstance(doc["conditions"]["processes"], int)


@given(measurements())
def test_ratio_is_value_over_ceiling_and_null_exactly_when_the_ceiling_is(m: Measurement) -> None:
    doc = json.loads(m.json_line())
    if doc["ceiling"] is None:
        assert doc["ratio"] is None
    else:
        assert math.isclose(doc["ratio"], doc["value"] / doc["ceiling"])


def test_units_are_spelled_as_the_issue_spells_them() -> None:
    assert {"changes/s", "us/change", "bytes/customer", "ms/1000 changed"} <= UNITS
    assert all(" per " not in u and u == u.strip() for u in UNITS)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"unit": "changes per second"}, "unit"),
        ({"unit": "us/changes"}, "unit"),
        ({"stage": "throughput"}, "stage"),
        ({"what": ""}, "what is empty"),
        ({"value": float("nan")}, "value"),
        ({"value": float("inf")}, "value"),
        ({"ceiling": 0.0}, "ceiling"),
        ({"ceiling": float("nan")}, "ceiling"),
        ({"runs": 0}, "runs"),
        ({"runs": True}, "runs"),
        ({"conditions": {"started": object()}}, "conditions"),
        ({"conditions": {"rate": float("nan")}}, "conditions"),
    ],
)
def test_a_figure_a_script_could_not_read_is_refused(change: dict, problem: str) -> None:
    fields = {"stage": "core", "what": "keyed step, per change", "value": 52.0, "unit": "us/change", "ceiling": 6.0,
              "runs": 3, "conditions": {"changes": 10_000}} | change  # fmt: skip
    with pytest.raises(ValueError, match=problem):
        Measurement(**fields)


def test_every_dataflow_figure_says_how_many_processes_ran() -> None:
    with pytest.raises(ValueError, match="processes"):
        Measurement("dataflow", "capture topics to every output acknowledged", 500.0, "changes/s", 70_000.0)
    with pytest.raises(ValueError, match="processes"):
        Measurement("dataflow", "x", 500.0, "changes/s", None, 1, {"processes": "2"})
    Measurement("dataflow", "x", 500.0, "changes/s", None, 1, {"processes": 2})


def test_the_human_table_shows_each_figure_and_its_conditions_once() -> None:
    cond = {"cores": 2, "changes": 10_000}
    human = Table(shown={"cores": 2})
    rows = human.rows(Measurement("core", "decode and map, per change", 112.4, "us/change", 6.3, 3, cond))
    rows += human.rows(Measurement("core", "keyed step, per change", 528.0, "us/change", 6.3, 3, cond))
    assert len(rows) == 3  # two figures, their shared conditions once
    assert "112 us/change" in rows[0] and "ratio 17.8" in rows[0] and "runs 3" in rows[0]
    assert rows[1] == "          conditions: changes=10000"
