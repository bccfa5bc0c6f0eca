"""A customer key's bytes: any pickle packs and unpacks; every format snapshots were written in still loads."""

from __future__ import annotations

import hashlib
import pickle
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflows.core.customer import CustomerState, loads
from dataflows.core.state_bytes import DEFLATE_V1, ZSTD_V2, dictionary, pack, unpack

# Packed once against state_dictionary_v1.bin. Nearly all of it refers back into the dictionary, so it
# stops unpacking to these words if the frozen file is ever changed: snapshots written against it would too.
V1_WORDS = b"dataflows.core.golden GoldenRecord customer_id legal_name tax_id credit_status payment_terms"
V1_BLOB = bytes.fromhex("0143cb1690aa5301b9e254802569a0431410d5a302249e1450224101a5ce0100")
# The same words packed against state_dictionary_v2.bin (zstd: it fails without the dictionary), and the
# file's digest: a trained dictionary is mostly entropy tables, which a few words do not all exercise.
V2_BLOB = bytes.fromhex("0228b52ffd205c2501003020202020202009fce4a3583a38ef9bacb4825f910a7a2804482968cac47144810a3f01")
V2_SHA256 = "aaed86a6e9814eac06da121967bd738e29e4746c5df98f19d9909e51f8f434a8"


@given(st.binary(max_size=5000))
def test_any_bytes_unpack_to_what_was_packed(raw: bytes) -> None:
    assert unpack(pack(raw)) == raw


@given(st.text(max_size=40), st.integers(min_value=0), st.integers(min_value=0))
def test_a_state_loads_from_every_format_a_snapshot_was_written_in(gid: str, run: int, n: int) -> None:
    state = CustomerState(gid, done=(run, n), queued=(run, n))
    raw = pickle.dumps(state, pickle.HIGHEST_PROTOCOL)
    for blob in (raw, zlib.compress(raw, 1), pack(raw, DEFLATE_V1), pack(raw), state.dumps()):
        assert loads(blob) == state


def test_the_frozen_dictionaries_still_unpack_what_was_packed_against_them() -> None:
    assert unpack(V1_BLOB) == V1_WORDS
    assert unpack(V2_BLOB) == V1_WORDS
    assert hashlib.sha256(dictionary(ZSTD_V2)).hexdigest() == V2_SHA256


def test_a_truncated_or_unknown_blob_is_refused_with_why() -> None:
    for marker in (DEFLATE_V1, ZSTD_V2):
        blob = pack(b"x" * 4000 + bytes(range(256)), marker)
        with pytest.raises(ValueError, match="truncated"):
            unpack(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="no format this Tidemark knows"):
        unpack(b"\x07" + blob[1:])
