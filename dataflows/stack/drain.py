"""`tidemark down` drains before it stops: the captures are stopped first (their offsets flushed, every
captured record acknowledged by the broker), then the dataflow is given time to consume every captured
record, empty its reorder buffer and have every output acknowledged, read from its own /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dataflows.dialects.base import LiveReadError
from dataflows.stack.scrape import capture_detail, dataflow_detail, drained


@dataclass(frozen=True)
class DrainState:
    answering: int  # dataflow processes whose /metrics answered
    lag: int
    buffered: int
    outputs: int  # records acknowledged by the targets so far (sum of tidemark_sink_writes_total)

    @property
    def empty(self) -> bool:
        return self.answering > 0 and self.lag == 0 and self.buffered == 0


def observe(urls: Sequence[str]) -> DrainState:
    details = [dataflow_detail(u) for u in urls]
    answering = [d for d in details if d]
    return DrainState(len(answering) if len(answering) == len(urls) else 0,
                      sum(d["consumer_lag_messages"] for d in answering),
                      sum(d["reorder_buffer_depth"] for d in answering),
                      sum(d.get("outputs_acknowledged", 0) for d in answering))  # fmt: skip


def wait_drained(urls: Sequence[str], *, timeout_s: float, settle_s: float, echo: Callable[[str], None],
                 probe: Callable[[Sequence[str]], DrainState] = observe, every_s: float = 0.5) -> bool:  # fmt: skip
    """True once lag and reorder buffer are 0 and no output was acknowledged for `settle_s` (the sinks
    answer per batch, and a batch in flight moves the counter): outputs of everything consumed are
    written. Prints a progress line every few seconds; False after `timeout_s`."""
    start = time.monotonic()
    quiet_since: float | None = None
    last: DrainState | None = None
    shown = 0.0
    while (now := time.monotonic()) - start < timeout_s:
        state = probe(urls)
        if state.empty and last is not None and last.empty and state.outputs == last.outputs:
            quiet_since = quiet_since or now
            if now - quiet_since >= settle_s:
                echo(f"{'dataflow':<12} drained: every captured record consumed, reorder buffer empty, "
                     f"{state.outputs} outputs acknowledged")  # fmt: skip
                return True
        else:
            quiet_since = None
        if now - shown >= 3.0:
            echo(f"{'dataflow':<12} draining: consumer lag {state.lag}, reorder buffer {state.buffered}, "
                 f"{now - start:.0f}s of at most {timeout_s:.0f}s")  # fmt: skip
            shown = now
        last = state
        time.sleep(every_s)
    return False


def wait_sent(checks: Mapping[str, Callable[[], bool]], *, timeout_s: float, echo: Callable[[str], None],
              every_s: float = 0.25) -> list[str]:  # fmt: skip
    """Before the captures stop: wait until every capture's check says its replication connection has been
    sent all that its database committed before `down` began (a capture that is restarting or taking a
    snapshot is waited for). A check that cannot read its database counts as not yet. Prints a progress
    line every few seconds; returns the captures still behind after `timeout_s`."""
    start = shown = time.monotonic()
    behind = list(checks)
    while True:
        behind = [name for name in behind if not _holds(checks[name])]  # a mark once passed stays passed
        now = time.monotonic()
        if not behind or now - start >= timeout_s:
            return behind
        if now - shown >= 3.0:
            echo(f"{'captures':<12} catching up with their databases: {', '.join(behind)} behind, "
                 f"{now - start:.0f}s of at most {timeout_s:.0f}s")  # fmt: skip
            shown = now
        time.sleep(every_s)


def _holds(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (LiveReadError, OSError):
        return False


def wait_captured(urls: Sequence[str], *, quiet_s: float, timeout_s: float, every_s: float = 0.25,
                  count: Callable[[str], int | None] | None = None) -> bool:  # fmt: skip
    """Before the captures stop: True once no capture has delivered a change for `quiet_s`, so changes
    committed just before `down` are captured (streaming them takes well under a second) rather than left
    for the next `up`. A heuristic, bounded by `timeout_s`: a source that never goes quiet is stopped anyway."""
    count = count or (lambda url: capture_detail(url).get("changes_captured"))
    start = time.monotonic()
    last, quiet_since = None, time.monotonic()
    while (now := time.monotonic()) - start < timeout_s:
        seen = [count(u) for u in urls]
        if seen != last:
            last, quiet_since = seen, now
        elif now - quiet_since >= quiet_s:
            return True
        time.sleep(every_s)
    return False


def announce_stopped(bootstrap: str, topics: Sequence[str], properties: Mapping[str, str]) -> str | None:
    """Write the stop marker (ingest/heartbeats.py) on each heartbeat topic of a capture `down` stopped
    cleanly, so the dataflow drains without holding for their stall. None when acknowledged; else why not
    (nothing is lost then: the dataflow holds for the stall hold first, as it would without the marker)."""
    from datetime import UTC, datetime

    from confluent_kafka import KafkaException, Producer

    from dataflows.ingest.heartbeats import MARKER_KEY, stop_marker
    from dataflows.io.kafka_client import Outgoing, build, deliver, producer_config

    marker = stop_marker(datetime.now(UTC))
    try:
        config = producer_config(bootstrap, properties, client_id="tidemark-down", delivery_timeout_s=10)
        producer = build(Producer, config)
        delivery = deliver(producer, [Outgoing(topic, MARKER_KEY, marker) for topic in topics], 15)
    except KafkaException as e:
        return str(e)
    return None if not delivery.failed else str(delivery.first_error)


__all__ = ["DrainState", "announce_stopped", "drained", "observe", "wait_captured", "wait_drained", "wait_sent"]
