"""A customer key's bytes: any pickle packs and unpacks; every format snapshots were written in still loads."""

from __future__ import annotations

import pickle
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflows.core.customer import CustomerState, loads
from dataflows.core.state_bytes import pack, unpack

# Packed once against state_dictionary_v1.bin. Nearly all of it refers back into the dictionary, so it
# stops unpacking to these words if the frozen file is ever changed: snapshots written against it would too.
V1_WORDS = b"dataflows.core.golden GoldenRecord customer_id legal_name tax_id credit_status payment_terms"
V1_BLOB = bytes.fromhex("0143cb1690aa5301b9e254802569a0431410d5a302249e1450224101a5ce0100")


@given(st.binary(max_size=5000))
def test_any_bytes_unpack_to_what_was_packed(raw: bytes) -> None:
    assert unpack(pack(raw)) == raw


@given(st.text(max_size=40), st.integers(min_value=0), st.integers(min_value=0))
def test_a_state_loads_from_every_format_a_snapshot_was_written_in(gid: str, run: int, n: int) -> None:
    state = CustomerState(gid, done=(run, n), queued=(run, n))
    raw = pickle.dumps(state, pickle.HIGHEST_PROTOCOL)
    for blob in (raw, zlib.compress(raw, 1), pack(raw), state.dumps()):  # plain, zlib, then packed
        assert loads(blob) == state


def test_the_frozen_dictionary_still_unpacks_what_was_packed_against_it() -> None:
    assert unpack(V1_BLOB) == V1_WORDS


def test_a_truncated_or_unknown_blob_is_refused_with_why() -> None:
    blob = pack(b"x" * 4000 + bytes(range(256)))
    with pytest.raises(ValueError, match="truncated"):
        unpack(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="no format this Tidemark knows"):
        unpack(b"\x07" + blob[1:])
