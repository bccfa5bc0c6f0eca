from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(check: Callable[[], Any], timeout: float, what: str, explain: Callable[[], str] | None = None) -> Any:
    """Poll `check` until it returns something truthy; return that, or fail naming `what` (and what
    `explain` says then)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f}s waiting for {what}; last: {explain() if explain else repr(result)}"
            raise TimeoutError(msg)
        time.sleep(0.3)
