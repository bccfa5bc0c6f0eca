"""End-to-end latency: from an ERP commit to its lifecycle event on the output topic, through the whole
local stack (PostgreSQL, Debezium capture, broker, dataflow), at steady rates.

A writer thread flips the credit status of random ERP customers at a fixed rate, in small transactions
every 20 ms; every flip yields a CreditHoldApplied or CreditHoldReleased event whose `occurred_at` is
the commit time (PostgreSQL, millisecond precision). Latency = the event's Kafka timestamp (set when the
dataflow hands it to its producer) minus that commit time. Both clocks are this machine's.

The highest sustained rate is found by steps of rising rate: a step is sustained when the writer kept
its rate and the median latency of the step's last quarter is within 1 s of its first quarter's (lag
not growing). After each step the run waits until the dataflow has read everything and its reorder
buffer is empty, so a step's backlog never weighs on the next. Each step also reports the mean time
its changes waited in the reorder buffer (the dataflow's own histogram): the part of the latency that
is ordering rather than work.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import orjson
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from dataflows.io.kafka_client import build, client_config
from dataflows.outputs import LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack
from dataflows.stack.scrape import dataflow_detail, drained, scrape
from dataflows.stack.scratch import scratch_stack

CUSTOMERS = 5_000
TICK_S = 0.02
CREDIT_EVENTS = {"CreditHoldApplied", "CreditHoldReleased"}


@dataclass
class LatencyStep:
    target_per_s: int
    achieved_per_s: float
    events: int
    p50_s: float
    p95_s: float
    p99_s: float
    growth_s: float  # median latency of the last quarter minus the first quarter's
    reorder_wait_s: float = float("nan")  # mean wall-clock wait in the reorder buffer during the step

    @property
    def sustained(self) -> bool:
        return self.achieved_per_s >= 0.95 * self.target_per_s and self.growth_s < 1.0


@dataclass
class LatencyResult:
    steady: list[LatencyStep]
    ramp: list[LatencyStep]

    @property
    def highest_sustained(self) -> int:
        return max((s.target_per_s for s in self.ramp if s.sustained), default=0)


class Writer(threading.Thread):
    """Flips credit_status of random customers at `rate` changes/s until stopped; counts what it did."""

    def __init__(self, stack: LocalStack, rate: int, seconds: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.rate, self.seconds, self.rnd = stack, rate, seconds, random.Random(seed)
        self.done = 0
        self.started = self.finished = 0.0

    def run(self) -> None:
        per_tick = self.rate * TICK_S
        owed = 0.0
        sql = ("UPDATE erp.customers SET credit_status = CASE credit_status WHEN 'ok' THEN 'hold' ELSE 'ok' END "
               "WHERE id = %s")  # fmt: skip
        with self.stack.erp_admin() as db, db.cursor() as cur:
            self.started = time.monotonic()
            next_tick = self.started
            while time.monotonic() - self.started < self.seconds:
                owed += per_tick
                n, owed = int(owed), owed - int(owed)
                if n:
                    ids = self.rnd.sample(range(CUSTOMERS), n)  # distinct: one change per row per transaction
                    cur.executemany(sql, [(i,) for i in ids])
                    db.commit()
                    self.done += n
                next_tick += TICK_S
                time.sleep(max(0.0, next_tick - time.monotonic()))
            self.finished = time.monotonic()


class EventClock:
    """Reads the lifecycle topic and keeps (commit time, latency) of every credit event, first copy only."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = build(Consumer, client_config(bootstrap, None, group_id="tidemark-latency",
                                                      enable_auto_commit=False, fetch_wait_max_ms=50))  # fmt: skip
        listed = self.consumer.list_topics(LIFECYCLE_TOPIC, timeout=10).topics[LIFECYCLE_TOPIC]
        self.consumer.assign([TopicPartition(LIFECYCLE_TOPIC, p, OFFSET_END) for p in listed.partitions])
        self.seen: dict[str, tuple[float, float]] = {}

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for m in self.consumer.consume(10_000, timeout=0.2):
                if m.error() is not None:
                    continue
                e = orjson.loads(m.value())
                if e["event_type"] in CREDIT_EVENTS and e["event_id"] not in self.seen:
                    committed = datetime.fromisoformat(e["occurred_at"]).timestamp()
                    self.seen[e["event_id"]] = (committed, m.timestamp()[1] / 1000 - committed)

    def wait_for(self, start: float, end: float, count: int, quiet_s: float = 30.0) -> None:
        """Until `count` events committed in [start, end) arrived, or none came for `quiet_s`."""
        seen, last_new = len(self.between(start, end)), time.monotonic()
        while seen < count and time.monotonic() - last_new < quiet_s:
            self.poll(1.0)
            if (now_seen := len(self.between(start, end))) > seen:
                seen, last_new = now_seen, time.monotonic()

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        return sorted(v for v in self.seen.values() if start <= v[0] < end)


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if len(values) > 1 else values[0]


def _reorder_wait(url: str) -> tuple[float, float]:
    """(sum, count) of the dataflow's reorder-wait histogram."""
    samples = scrape(url)
    get = lambda name: sum(v for _, v in samples.get(name, []))  # noqa: E731
    return get("tidemark_reorder_wait_seconds_sum"), get("tidemark_reorder_wait_seconds_count")


def settle(url: str, clock: EventClock, limit_s: float = 900.0) -> None:
    """Until the dataflow has read every capture record and released its reorder buffer, then a few
    seconds more for the last events to reach the topic."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if drained(dataflow_detail(url)):
            break
        clock.poll(1.0)
    clock.poll(3.0)


def measure(stack: LocalStack, clock: EventClock, rate: int, seconds: float) -> LatencyStep:
    url = stack.dataflow_metrics_url()
    waited_before = _reorder_wait(url)
    writer = Writer(stack, rate, seconds, seed=rate)
    start = time.time()
    writer.start()
    while writer.is_alive():
        clock.poll(1.0)
    # The capture may still be behind (the dataflow alone looks drained then): wait for the step's events.
    clock.wait_for(start, start + seconds + 1, writer.done)
    settle(url, clock)
    waited = [a - b for a, b in zip(_reorder_wait(url), waited_before, strict=True)]
    samples = clock.between(start, start + seconds + 1)
    latencies = [lat for _, lat in samples]
    quarter = max(len(samples) // 4, 1)
    growth = statistics.median(latencies[-quarter:]) - statistics.median(latencies[:quarter]) if samples else 0.0
    achieved = writer.done / max(writer.finished - writer.started, 1e-9)
    if not latencies:
        return LatencyStep(rate, achieved, 0, float("nan"), float("nan"), float("nan"), float("nan"))
    return LatencyStep(rate, achieved, len(latencies), _quantile(latencies, 0.5), _quantile(latencies, 0.95),
                       _quantile(latencies, 0.99), growth, waited[0] / waited[1] if waited[1] else float("nan"))  # fmt: skip


def run(steady: tuple[int, ...] = (2000,), seconds: float = 60.0, ramp: tuple[int, ...] = (500, 1000, 1500, 2000, 3000, 4000, 6000),
        ramp_seconds: float = 20.0, warm_up_s: float = 10.0) -> LatencyResult:  # fmt: skip
    with scratch_stack("tidemark-bench-") as stack:
        with stack.erp_admin() as db, db.cursor() as cur:
            cur.executemany("INSERT INTO erp.customers (id, legal_name, tax_id, country) VALUES (%s, %s, %s, 'DE')",
                            [(i, f"Latency {i} GmbH", f"LAT{i}") for i in range(CUSTOMERS)])  # fmt: skip
        clock = EventClock(stack.settings.kafka_bootstrap)
        settle(stack.dataflow_metrics_url(), clock)
        # The creates are through; the warm-up below is not measured.
        measure(stack, clock, 200, warm_up_s)
        steady_steps = [measure(stack, clock, rate, seconds) for rate in steady]
        ramp_steps = []
        for rate in ramp:
            step = measure(stack, clock, rate, ramp_seconds)
            ramp_steps.append(step)
            if not step.sustained:
                break
        clock.consumer.close()  # before the broker stops, or it logs a reconnect storm
    return LatencyResult(steady_steps, ramp_steps)
