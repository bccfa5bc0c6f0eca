"""Re-snapshot requests to a capture process (the local stack's file channel; no JVM needed to send one).

The dataflow asks for a re-snapshot when its broker lost records (see io/kafka_source.py): it writes a
request file into the capture's state directory. The capture, seeing it, stops its engine (offsets
flushed), forgets its offsets (and, for the MySQL family, its schema history) and starts the engine
again: Debezium's `snapshot.mode: initial` then reads every captured table afresh, marks the rows
`snapshot=first/true/last`, and streams on from where the snapshot stood. Chosen over the signal-driven
incremental snapshot because that needs a signal table in every source database; this needs nothing
from the databases and is Debezium's documented way to take a new initial snapshot.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

REQUEST_FILE = "resnapshot.request"
STATE_FILES = ("offsets.dat", "schema-history.dat")  # see config.connectors.embedded_properties


def request_resnapshot(state_dir: Path, reason: str) -> bool:
    """Ask the capture whose state is in `state_dir` to re-snapshot. False when one is already pending
    (several partitions of one source notice the same reset: one snapshot serves them all)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / REQUEST_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{datetime.now(UTC).isoformat()} {reason}\n")
    return True


def take_request(state_dir: Path) -> str | None:
    """The pending request's reason (and it is consumed), or None."""
    path = state_dir / REQUEST_FILE
    try:
        reason = path.read_text().strip()
        path.unlink()
    except FileNotFoundError:
        return None
    return reason or "requested"


def forget_offsets(state_dir: Path) -> list[str]:
    """Remove the engine's offsets and schema history, so its next start takes an initial snapshot."""
    removed = []
    for name in STATE_FILES:
        try:
            (state_dir / name).unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed
