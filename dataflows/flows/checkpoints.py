"""Where the sequencer's incremental checkpoints live: numbered files beside Bytewax's recovery partitions.

Bytewax keeps one snapshot per key (the newest at or before the epoch it resumes from), so a base and its
deltas cannot all be the sequencer key's snapshot. They are files here instead, and the key's snapshot
names the newest one (its generation). A file is durable (fsync, rename, fsync of the directory) before
the snapshot naming it is returned to Bytewax, so every snapshot Bytewax holds names files that exist.

Bytewax may resume from an epoch before the newest snapshot (one not yet committed by every worker): the
files of later generations are then removed, and the resumed run writes its own. Bases are kept with their
deltas for KEEP_BASES compactions, so an epoch Bytewax may still resume from always has its chain.

Compaction (a new base once the deltas outweigh the last one) runs in a process of its own, from the files
alone (sequencer.merge): a snapshot never costs in proportion to the state held. Its result is written under
a temporary name and put in place by the sequencer's process, which alone decides what the files hold.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KEEP_BASES = 3
MIN_BASE_EVERY = 8  # generations between two bases at least: a resume's lag is a few epochs at most


class CheckpointFiles:
    """Generations 1, 2, ...: `<gen>.base` (full) or `<gen>.delta` (entries changed since the one before)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory  # made at first use: building the flow does no I/O
        self.compacting: tuple[subprocess.Popen[bytes], int, Path] | None = None

    def _files(self) -> list[tuple[int, bool, Path]]:
        """(generation, full, path), oldest first."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = []
        for path in self.directory.iterdir():
            stem, _, kind = path.name.partition(".")
            if stem.isdigit() and kind in ("base", "delta"):
                found.append((int(stem), kind == "base", path))
        return sorted(found)

    def clear(self) -> None:
        """A run that starts afresh (no snapshot to resume): another run's files must never be read."""
        for _, _, path in self._files():
            path.unlink()
        self._drop_unfinished()

    def _drop_unfinished(self) -> None:
        for path in [*self.directory.glob("*.merging"), *self.directory.glob("*.tmp")]:
            path.unlink(missing_ok=True)

    def write(self, gen: int, blob: bytes, full: bool) -> None:
        path = self.directory / f"{gen:012d}.{'base' if full else 'delta'}"
        tmp = path.with_suffix(".tmp")
        _durable(tmp, blob)
        self._put(tmp, path, full)

    def _put(self, tmp: Path, path: Path, full: bool) -> None:
        os.replace(tmp, path)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if full:
            self._prune()

    def chain(self, gen: int) -> list[bytes]:
        """The newest base at or before `gen` and every delta after it up to `gen`; removes later files."""
        self._drop_unfinished()
        for later in [p for g, _, p in self._files() if g > gen]:
            later.unlink()
        return self.read(gen)

    def compact_beside(self, gen: int) -> None:
        """Start merging the chain up to `gen` into a base, in a process of its own (unless one runs)."""
        if self.compacting is None:
            out = self.directory / f"{gen:012d}.merging"
            args = [sys.executable, "-m", "dataflows.flows.checkpoints", str(self.directory), str(gen), str(out)]
            self.compacting = (subprocess.Popen(args), gen, out)  # noqa: S603 - our own interpreter and module

    def adopt(self, wait: bool = False) -> tuple[int, int] | None:
        """A finished compaction's base put in place: (its generation, its size); None when none is ready.
        A failed one is dropped (the next snapshot starts another)."""
        if self.compacting is None:
            return None
        process, gen, out = self.compacting
        if (process.wait() if wait else process.poll()) is None:
            return None
        self.compacting = None
        if process.returncode != 0 or not out.exists():
            out.unlink(missing_ok=True)
            return None
        size = out.stat().st_size
        self._put(out, self.directory / f"{gen:012d}.base", full=True)
        return gen, size

    def read(self, gen: int) -> list[bytes]:
        """The chain up to `gen`, as read: nothing removed."""
        mine = [(g, full, p) for g, full, p in self._files() if g <= gen]
        start = max((i for i, (_, full, _) in enumerate(mine) if full), default=None)
        if start is None or [g for g, _, _ in mine[start:]] != list(range(mine[start][0], gen + 1)):
            msg = f"sequencer checkpoints in {self.directory} do not reach generation {gen} from a base"
            raise FileNotFoundError(msg)
        return [p.read_bytes() for _, _, p in mine[start:]]

    def _prune(self) -> None:
        files = self._files()
        bases = [g for g, full, _ in files if full]
        if len(bases) > KEEP_BASES:
            oldest_kept = bases[-KEEP_BASES]
            for g, _, p in files:
                if g < oldest_kept:
                    p.unlink()


def _durable(path: Path, blob: bytes) -> None:
    with open(path, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


def _merge_main(directory: str, gen: str, out: str) -> None:
    """The compaction process: the chain up to `gen` merged into one base, written to `out`."""
    from dataflows.core.sequencer import merge

    _durable(Path(out), merge(CheckpointFiles(Path(directory)).read(int(gen))))


if __name__ == "__main__":
    _merge_main(*sys.argv[1:4])
