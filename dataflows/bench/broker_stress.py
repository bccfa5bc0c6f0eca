"""`python -m dataflows.bench.broker_stress [SEED] [MINUTES]` (not in CI): the durable local broker under
kill -9 of itself and of its object store, while a producer writes and a consumer group commits.

After each fault it prints how long until the consumer read and committed again, and the running counts;
a consumer that falls ever further behind shows a store that cannot keep up (the listing wedge the README's
"How the local broker stores data" describes: run this with the old `serve.js` to see it)."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from dataflows.stack.local import LocalStack
from dataflows.stack.scratch import scratch_stack

TOPIC = "stress"
PROGRESS_BOUND_S = 120.0


class Traffic:
    """A producer of small batches and a committing consumer group, each in a thread of its own."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap, self.stop = bootstrap, threading.Event()
        self.counts = {"produced": 0, "consumed": 0, "commits": 0, "commit_errors": 0}
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._produce, self._consume)]

    def _produce(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 5, "log_level": 2})

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                self.counts["produced"] += 1

        n = 0
        while not self.stop.is_set():
            try:
                producer.produce(TOPIC, key=str(n % 50).encode(), value=b"x" * 600, on_delivery=delivered)
                n += 1
            except BufferError:
                pass
            producer.poll(0.001)
            if n % 20 == 0:
                time.sleep(0.01)
        producer.flush(10)

    def _consume(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "tidemark-stress", "log_level": 2,
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})  # fmt: skip
        consumer.subscribe([TOPIC])
        while not self.stop.is_set():
            messages = consumer.consume(200, 0.5)
            self.counts["consumed"] += sum(1 for m in messages if m.error() is None)
            if messages:
                try:
                    consumer.commit(asynchronous=False)
                    self.counts["commits"] += 1
                except KafkaException:
                    self.counts["commit_errors"] += 1
        consumer.close()


def _fault(stack: LocalStack, rng: random.Random) -> str:
    """kill -9 of the broker, its store or both, then both running again; returns what was killed."""
    store = stack.kafka.store.name  # type: ignore[union-attr]
    which = rng.choice(["kafka", store, "kafka", store, "both"])
    names = ["kafka", store] if which == "both" else [which]
    for name in names:
        if (record := stack.table.running(name)) is not None:
            os.kill(record.pid, signal.SIGKILL)
    time.sleep(rng.uniform(0.1, 3.0))
    for name in sorted(names, key=lambda n: n == "kafka"):  # the store before the broker
        for _ in range(30):
            try:
                stack.restart(name, echo=lambda _l: None)
                break
            except Exception:  # noqa: BLE001 - a process just killed may hold its port for a moment
                time.sleep(1.0)
    return which


def run(seed: int, minutes: float) -> None:
    rng = random.Random(seed)
    with scratch_stack("stress-", capture=False, dataflow=False, broker_storage="s3") as stack:
        bootstrap = stack.settings.kafka_bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(TOPIC, 4, 1)])[TOPIC].result()
        traffic = Traffic(bootstrap)
        for t in traffic.threads:
            t.start()
        end, n = time.monotonic() + minutes * 60, 0
        while time.monotonic() < end:
            time.sleep(rng.uniform(1.0, 8.0))
            n, which = n + 1, _fault(stack, rng)
            consumed, commits, started = traffic.counts["consumed"], traffic.counts["commits"], time.monotonic()
            while time.monotonic() - started < PROGRESS_BOUND_S and not (
                    traffic.counts["commits"] > commits + 2 and traffic.counts["consumed"] > consumed):
                time.sleep(0.5)
            print(f"fault {n} {which}: reading and committing again after {time.monotonic() - started:.1f} s; "
                  f"{traffic.counts}", flush=True)  # fmt: skip
        traffic.stop.set()
        for t in traffic.threads:
            t.join(20)


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 1, float(sys.argv[2]) if len(sys.argv) > 2 else 6.0)
