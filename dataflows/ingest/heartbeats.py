"""A source's heartbeat topic: Debezium's heartbeats, and the marker `tidemark down` adds after it stopped
the source's capture.

A heartbeat (`{"ts_ms": ...}`) says the capture is alive and has read its database up to its time. A
capture that stops sends nothing more, which the dataflow would otherwise take for a stall and hold the
reorder buffer for the stall hold (see core/reorder.py). So once a capture stopped cleanly, with its
last records acknowledged, `down` writes the marker: a heartbeat that also says `"tidemark_stopped": true`.
It follows everything that capture wrote, and the capture's next heartbeat, after `up`, undoes it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

STOPPED = "tidemark_stopped"
MARKER_KEY = b'{"tidemark":"stopped"}'
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stop_marker(at: datetime) -> bytes:
    """The marker's value, written at `at`."""
    return orjson.dumps({"ts_ms": (at - _EPOCH) // timedelta(milliseconds=1), STOPPED: True})


def read_heartbeat(value: bytes | None) -> tuple[datetime | None, bool]:
    """(when the heartbeat was sent, None if it does not say; whether it is the stop marker). Forgiving:
    an unreadable heartbeat is a sign of life at an unknown time, never an error."""
    try:
        document = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(document, dict):
        return None, False
    return _sent_at(document.get("ts_ms")), document.get(STOPPED) is True


def _sent_at(ms: object) -> datetime | None:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        return None
