"""The bytes a customer key rests as: its pickled state, compressed against a preset dictionary.

A key's pickle is about 2.1 KB, and most of it is the same class paths, field names and source names in
every customer. A compressor cannot learn those from one small record (zlib alone: 1.2 KB); primed with a
dictionary of typical records it writes a fraction. Since v2 that is zstd with a dictionary zstd trained:
about 0.43 KB a state for 3-4 us, where v1 (deflate against two raw states) wrote 0.73 KB for 24 us, the
larger part of a customer key's snapshot (README, "Figures of 2026-12-01, afternoon").
The dictionary only helps compression: any state packs and unpacks, whatever its names.

A dictionary is frozen data (state_dictionary_v*.bin, made by `python -m dataflows.bench.state_dictionary`):
a blob's first byte names the one it was packed with, so a new dictionary is a new marker and every
snapshot written before still loads.
"""

from __future__ import annotations

import zlib
from functools import cache
from importlib import resources

import zstandard

PICKLED = b"\x80"  # a plain pickle (protocol 2 and later), as the first snapshots were
ZLIB = b"\x78"  # a zlib stream (32 KB window), as snapshots were before the dictionary
DEFLATE_V1 = b"\x01"  # raw deflate (32 KB window) against state_dictionary_v1.bin
ZSTD_V2 = b"\x02"  # a zstd frame against the dictionary state_dictionary_v2.bin (trained)
FILES = {DEFLATE_V1: "state_dictionary_v1.bin", ZSTD_V2: "state_dictionary_v2.bin"}
CURRENT = ZSTD_V2
LEVEL = 1  # higher levels cost more CPU per snapshot for a few percent fewer bytes


@cache
def dictionary(marker: bytes) -> bytes:
    """The preset dictionary of `marker` (read once per process)."""
    return resources.files(__package__).joinpath(FILES[marker]).read_bytes()


@cache
def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    """One compressor and decompressor per process: a dataflow process runs its customer keys on one
    worker thread, and neither object may be used by two threads at once."""
    trained = zstandard.ZstdCompressionDict(dictionary(ZSTD_V2))
    # The marker names the dictionary (no id in the frame); no checksum, as v1's raw deflate had none.
    compressor = zstandard.ZstdCompressor(level=LEVEL, dict_data=trained, write_checksum=False, write_dict_id=False)
    return compressor, zstandard.ZstdDecompressor(dict_data=trained)


def pack(raw: bytes, marker: bytes = CURRENT) -> bytes:
    """`raw` (a pickle) as the bytes a key rests as (`marker`: an earlier format, for tests)."""
    if marker == ZSTD_V2:
        return ZSTD_V2 + _zstd()[0].compress(raw)
    deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, zdict=dictionary(DEFLATE_V1))
    return DEFLATE_V1 + deflate.compress(raw) + deflate.flush()


def unpack(blob: bytes) -> bytes:
    """The pickle a key's bytes hold, whichever format wrote them."""
    marker = blob[:1]
    if marker == PICKLED:
        return blob
    if marker == ZLIB:
        return zlib.decompress(blob)
    if marker == ZSTD_V2:
        try:
            return _zstd()[1].decompress(memoryview(blob)[1:])
        except zstandard.ZstdError as e:
            msg = f"customer state bytes do not decompress (a truncated or damaged snapshot): {e}"
            raise ValueError(msg) from None
    if marker == DEFLATE_V1:
        return _inflate(blob)
    msg = f"customer state bytes start with {marker!r}, no format this Tidemark knows (a newer one's?)"
    raise ValueError(msg)


def _inflate(blob: bytes) -> bytes:
    inflate = zlib.decompressobj(-15, zdict=dictionary(DEFLATE_V1))
    raw = inflate.decompress(memoryview(blob)[1:]) + inflate.flush()
    if not inflate.eof:
        msg = "customer state bytes end before their deflate stream does (a truncated snapshot)"
        raise ValueError(msg)
    return raw
