"""The services tests run against: throw-away local stacks (dataflows.stack.scratch)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dataflows.stack.local import LocalStack
from dataflows.stack.scratch import make_settings, new_home, scratch_stack, wait_capture_running

__all__ = ["make_settings", "new_home", "running_stack", "wait_capture_running"]


@contextmanager
def running_stack(prefix: str, **overrides: object) -> Iterator[LocalStack]:
    """A whole stack as `tidemark up` starts it, captures running, torn down and removed afterwards."""
    with scratch_stack(prefix, **overrides) as stack:
        yield stack
