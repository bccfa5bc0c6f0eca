"""The bytes a customer key rests as: its pickled state, deflated against a preset dictionary.

A key's pickle is about 2.2 KB, and most of it is the same class paths, field names and source names in
every customer. zlib cannot learn those from one small record (1.2 KB compressed); deflate primed with a
dictionary of typical records writes about 0.45 KB for the same CPU (README, "Figures of 2026-12-01").
The dictionary only helps compression: any state packs and unpacks, whatever its names.

A dictionary is frozen data (state_dictionary_v1.bin, made by `python -m dataflows.bench.state_dictionary`):
a blob's first byte names the one it was packed with, so a new dictionary is a new marker and every
snapshot written before still loads.
"""

from __future__ import annotations

import zlib
from functools import cache
from importlib import resources

PICKLED = b"\x80"  # a plain pickle (protocol 2 and later), as the first snapshots were
ZLIB = b"\x78"  # a zlib stream (32 KB window), as snapshots were before the dictionary
DICTIONARIES = {b"\x01": "state_dictionary_v1.bin"}  # marker -> raw deflate against that file
CURRENT = b"\x01"
WINDOW_BITS = -15  # raw deflate, 32 KB window: the dictionary and the record both fit
LEVEL = 1  # higher levels cost more CPU per snapshot for a few percent fewer bytes


@cache
def dictionary(marker: bytes) -> bytes:
    """The preset dictionary of `marker` (read once per process)."""
    return resources.files(__package__).joinpath(DICTIONARIES[marker]).read_bytes()


def pack(raw: bytes) -> bytes:
    """`raw` (a pickle) as the bytes a key rests as."""
    deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, WINDOW_BITS, zdict=dictionary(CURRENT))
    return CURRENT + deflate.compress(raw) + deflate.flush()


def unpack(blob: bytes) -> bytes:
    """The pickle a key's bytes hold, whichever format wrote them."""
    marker = blob[:1]
    if marker == PICKLED:
        return blob
    if marker == ZLIB:
        return zlib.decompress(blob)
    if marker not in DICTIONARIES:
        msg = f"customer state bytes start with {marker!r}, no format this Tidemark knows (a newer one's?)"
        raise ValueError(msg)
    inflate = zlib.decompressobj(WINDOW_BITS, zdict=dictionary(marker))
    raw = inflate.decompress(memoryview(blob)[1:]) + inflate.flush()
    if not inflate.eof:
        msg = "customer state bytes end before their deflate stream does (a truncated snapshot)"
        raise ValueError(msg)
    return raw
