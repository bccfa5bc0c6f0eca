"""Reconnect-and-retry for target writers: a database restart is waited out (and logged), not a crash."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_reconnect(what: str, attempt: Callable[[], T], reconnect: Callable[[], None],
                   transient: tuple[type[BaseException], ...], deadline_s: float = 120.0) -> T:  # fmt: skip
    """Run `attempt`; on a transient error reconnect with backoff until `deadline_s`, then re-raise.
    Writes are idempotent (version-guarded), so repeating a batch is safe."""
    start, delay = time.monotonic(), 0.5
    while True:
        try:
            return attempt()
        except transient as e:
            if time.monotonic() - start > deadline_s:
                raise
            log.warning("%s failed (%s); reconnecting in %.1fs", what, type(e).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            try:
                reconnect()
            except transient as again:
                log.warning("%s: reconnect failed (%s)", what, type(again).__name__)
