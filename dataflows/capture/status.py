"""Progress of one capture process, as a small JSON file `tidemark status` reads."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol


class _Record(Protocol):
    topic: str
    value: bytes | None


class CaptureStatus:
    WRITE_EVERY_S = 1.0

    def __init__(self, source: str, path: Path) -> None:
        self.source = source
        self.path = path
        self.state = "starting"
        self.error: str | None = None
        self.records_by_topic: Counter[str] = Counter()
        self.last_delivery_at: str | None = None
        self._last_write = 0.0

    def set_state(self, state: str, error: str | None = None) -> None:
        self.state = state
        self.error = error
        self._write()

    def batch_delivered(self, records: Sequence[_Record]) -> None:
        self.records_by_topic.update(r.topic for r in records)
        self.last_delivery_at = datetime.now(UTC).isoformat()
        if time.monotonic() - self._last_write >= self.WRITE_EVERY_S:
            self._write()

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "state": self.state,
            "pid": os.getpid(),
            "last_error": self.error,
            "records_delivered": sum(self.records_by_topic.values()),
            "records_by_topic": dict(self.records_by_topic),
            "last_delivery_at": self.last_delivery_at,
            "updated_at": datetime.now(UTC).isoformat(),
        }

    def _write(self) -> None:
        self._last_write = time.monotonic()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2))
        tmp.replace(self.path)
