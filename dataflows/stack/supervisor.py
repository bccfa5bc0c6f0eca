"""The local stack's supervisor: restarts a dead capture or dataflow with backoff, as Kafka Connect
restarts failed tasks, and counts every restart in a file under $TIDEMARK_HOME.

Our own small loop in a detached process rather than supervisord or circus from PyPI: what it
supervises are processes `up` already starts and records by pid file (with pid-reuse guards, a
cluster that restarts whole, a connector hash); a second process manager would own the same
processes a second way, and `down`, `status` and `restart` would have to talk to it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataflows.stack.processes import is_alive, private_dir, write_private

if TYPE_CHECKING:
    from dataflows.stack.local import LocalStack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff between restarts; a process that ran `stable_s` counts as healthy again."""

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0
    stable_s: float = 60.0

    def delay(self, consecutive: int) -> float:
        """Seconds to wait before restart number `consecutive` (1, 2, ...) of a run of failures."""
        return min(self.max_s, self.initial_s * self.factor ** max(consecutive - 1, 0))


@dataclass
class Backoff:
    """Restart timing of one component (pure: the caller passes the monotonic clock)."""

    policy: RestartPolicy
    consecutive: int = 0
    started_at: float | None = None  # when the current run began (or was first seen running)
    next_attempt_at: float | None = None  # set while the component is dead

    def seen_running(self, now: float) -> None:
        if self.started_at is None:
            self.started_at = now
        self.next_attempt_at = None

    def seen_dead(self, now: float) -> bool:
        """Record the death (once per death); True when the restart is due."""
        if self.next_attempt_at is None:
            ran = now - self.started_at if self.started_at is not None else 0.0
            self.consecutive = 1 if ran >= self.policy.stable_s else self.consecutive + 1
            self.next_attempt_at = now + self.policy.delay(self.consecutive)
            self.started_at = None
        return now >= self.next_attempt_at

    def restarted(self, now: float) -> None:
        self.started_at = now
        self.next_attempt_at = None


class RestartCounts:
    """Restarts per component, in `<home>/supervisor/restarts.json` (0600): survives every restart."""

    def __init__(self, home: Path) -> None:
        self.path = home / "supervisor" / "restarts.json"

    def read(self) -> dict[str, dict[str, Any]]:
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return {}

    def add(self, component: str, reason: str) -> int:
        counts = self.read()
        entry = counts.setdefault(component, {"restarts": 0})
        entry["restarts"] += 1
        entry["last_restart_at"] = datetime.now(UTC).isoformat()
        entry["last_reason"] = reason[:300]
        private_dir(self.path.parent)
        write_private(self.path, json.dumps(counts, indent=2))
        return int(entry["restarts"])


@dataclass
class Supervisor:
    """One pass per `tick`: restart what `up` started and is now dead, when its backoff allows."""

    stack: LocalStack
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    backoffs: dict[str, Backoff] = field(default_factory=dict)

    def tick(self, now: float) -> list[str]:
        """Returns the components restarted in this pass."""
        restarted: list[str] = []
        with self.stack.lock(blocking=False) as held:
            if not held:
                return restarted  # `up`, `down` or `restart` is changing the stack right now
            for component, names in self.stack.supervised().items():
                if self._check(component, names, now):
                    restarted.append(component)
        return restarted

    def _check(self, component: str, names: list[str], now: float) -> bool:
        records = [self.stack.table.get(n) for n in names]
        if all(r is None for r in records):
            return False  # not started by `up`, or stopped on purpose
        backoff = self.backoffs.setdefault(component, Backoff(self.policy))
        dead = [n for n, r in zip(names, records, strict=True) if r is None or not is_alive(r)]
        if not dead:
            backoff.seen_running(now)
            return False
        if not backoff.seen_dead(now):
            return False
        reason = self.stack.exit_reason(dead[0])
        count = RestartCounts(self.stack.home).add(component, reason)
        log.warning("%s is not running (%s): restart %d", component, reason, count)
        try:
            self.stack.restart(component, echo=log.info, locked=True)
        except Exception:  # noqa: BLE001 - a failed start is one more failure: back off and try again
            log.exception("restart of %s failed", component)
            backoff.restarted(now)  # still dead at the next pass: one more failure, a longer wait
            return False
        backoff.restarted(now)
        return True


def run_supervisor(stack: LocalStack, stop: threading.Event, interval_s: float = 1.0) -> None:
    """Tick until `stop` is set (SIGTERM from `tidemark down`)."""
    supervisor = Supervisor(stack)
    log.info("supervising %s; restart counts in %s", ", ".join(stack.supervised()), RestartCounts(stack.home).path)
    while not stop.wait(interval_s):
        try:
            supervisor.tick(time.monotonic())
        except Exception:  # noqa: BLE001 - the supervisor itself must not die of one bad pass
            log.exception("supervisor pass failed")
    log.info("supervisor stopped")
