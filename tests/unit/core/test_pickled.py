"""Fast pickling keeps every field, frozen or not, and loads snapshots written by dataclasses' own pickling."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, fields

from hypothesis import given
from hypothesis import strategies as st

from dataflows.core.ownership import FieldVersion
from dataflows.core.pickled import pickled_fast


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
