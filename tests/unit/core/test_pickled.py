"""Fast pickling keeps every field, frozen or not, and loads snapshots written by dataclasses' own pickling."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflows.core.identity import Resolution
from dataflows.core.ownership import FieldVersion
from dataflows.core.pickled import pickled_fast
from dataflows.core.records import Step


@pickled_fast
@dataclass(frozen=True, slots=True)
class Frozen:
    a: object
    b: object = None


@pickled_fast
@dataclass(slots=True)
class One:
    only: object


VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.tuples(st.integers(), st.integers()))


@given(VALUES, VALUES, VALUES)
def test_a_round_trip_keeps_every_field(a: object, b: object, c: object) -> None:
    for obj in (Frozen(a, b), One(c), FieldVersion(a, "erp", "erp", (1, 2), 1.5, True)):
        assert pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)) == obj


def test_a_state_written_by_dataclasses_own_pickling_loads() -> None:
    """dataclasses stored a slotted instance's state as a list of its field values, in field order."""
    old = FieldVersion.__new__(FieldVersion)
    old.__setstate__(["v", "crm", "crm", (3,), 2.0, False])
    assert old == FieldVersion("v", "crm", "crm", (3,), 2.0, False)
    assert [f.name for f in fields(FieldVersion)] == ["value", "system", "source", "position", "commit_ts", "by_owner"]


def test_a_step_pickled_before_it_had_slots_loads() -> None:
    """Step and Resolution had no slots (their pickles hold a __dict__): a journal or a parked message
    written then still loads."""
    resolution = Resolution.__new__(Resolution)
    resolution.__setstate__({"golden_id": "g1", "created": True})
    step = Step.__new__(Step)
    step.__setstate__({"cause": None, "resolution": resolution, "ref": ("erp", "1"), "clusters": {}})
    assert step == Step(None, Resolution("g1", created=True), ("erp", "1"))  # type: ignore[arg-type]


def test_a_field_left_out_of_init_is_refused() -> None:
    with pytest.raises(TypeError, match="every field must be one of its arguments"):

        @pickled_fast
        @dataclass(slots=True)
        class Derived:
            a: int
            b: int = field(init=False, default=0)
