"""`tidemark chaos` (not in CI): kill -9 of every component of a local stack at random moments under a
steady mixed workload, then a check against the databases and the fault-free reference.

A scratch stack as `tidemark up` starts it: the durable broker (Tansu on the s3rver store) and the
supervisor on. One fault at a time: after a random pause, kill -9 one component the seed picks (a capture,
a dataflow process, the broker, its store, the ERP or CRM database); the supervisor restarts captures and
the dataflow, the run restarts the others after a random time down (as `tidemark restart` would), and the
next fault waits until every component runs again. Halfway through, rows the workload never touches are
deleted. At the end the workload stops, the pipeline drains, and the run counts:

- lost: source rows missing or different in customer_360 or the CRM write-back (dataflows.bench.truth);
- wrong: customer_360 rows, CRM write-backs or lifecycle event ids that differ from a fault-free
  processing of the very changes captured (dataflows.bench.reference);
- duplicates: extra copies of lifecycle events on the topic (allowed: delivery is at-least-once);
- the broker's offsets: partitions whose end offsets (of fetch answers, of ListOffsets) lie past or below
  the last record a fresh reader gets, and offsets missing below it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataflows.bench.reference import compare, table_topics
from dataflows.bench.topics import PartitionOffsets, TopicReader, broker_offsets
from dataflows.bench.truth import Workload, delete_some, differences, seed
from dataflows.outputs import LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack
from dataflows.stack.processes import is_alive
from dataflows.stack.scrape import dataflow_detail
from dataflows.stack.scratch import scratch_stack

BASE = 800_000  # clear of the demo rows and of the fault tests' ids
CUSTOMERS = 200
DELETED = 20  # childless ERP customers, subscriptions and opportunities deleted halfway
PAUSE_S = (1.0, 5.0)  # between one component running again and the next kill
DOWN_S = (0.5, 5.0)  # how long a broker, store or database stays down
RECOVERY_BOUND_S = 180.0  # the supervisor's backoff reaches 60 s; beyond this the run restarts it itself
SETTLE_BOUND_S = 600.0


def supervised(component: str) -> bool:
    """Captures and dataflow processes come back by the supervisor; the rest by a restart."""
    return component.startswith(("capture-", "dataflow-"))


@dataclass(frozen=True)
class Fault:
    number: int
    component: str
    pause_s: float  # before the kill
    down_s: float  # before the run restarts an unsupervised component (ignored for supervised ones)


def fault_schedule(seed_value: int, components: Sequence[str], pause_s: tuple[float, float] = PAUSE_S,
                   down_s: tuple[float, float] = DOWN_S) -> Iterator[Fault]:  # fmt: skip
    """The endless, reproducible sequence of faults of one seed: a uniform pick of component and timings."""
    rnd = random.Random(seed_value)
    number = 0
    while True:
        number += 1
        yield Fault(number, rnd.choice(list(components)), round(rnd.uniform(*pause_s), 2), round(rnd.uniform(*down_s), 2))


@dataclass
class ChaosSummary:
    """What a chaos run did and found."""

    seed: int
    minutes: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    cycle_s: list[float] = field(default_factory=list)  # kill to everything running again, per fault
    slow_recoveries: list[str] = field(default_factory=list)  # not back within RECOVERY_BOUND_S
    changes: int = 0  # statements committed by the workload, deletes included
    captured: int = 0  # change records on the capture topics, replays included
    events: int = 0  # distinct lifecycle events of the fault-free reference
    lost: list[str] = field(default_factory=list)
    wrong: int = 0
    wrong_detail: str = ""
    duplicates: int = 0
    settled_after_s: float | None = None  # from the workload's stop to results equal (None: never)
    offsets: list[PartitionOffsets] = field(default_factory=list)

    @property
    def fault_count(self) -> int:
        return sum(self.faults.values())

    @property
    def ok(self) -> bool:
        return not self.lost and self.wrong == 0

    def lines(self) -> list[str]:
        cycles = sorted(self.cycle_s) or [0.0]
        settled = "never" if self.settled_after_s is None else f"{self.settled_after_s:.0f} s"
        lines = [
            f"chaos seed {self.seed}: {self.minutes:.1f} min, {self.fault_count} faults injected: "
            + ", ".join(f"{c} {n}" for c, n in sorted(self.faults.items())),
            f"  recovery per fault (kill to all running): median {cycles[len(cycles) // 2]:.1f} s, "
            f"max {cycles[-1]:.1f} s; {len(self.slow_recoveries)} not back within {RECOVERY_BOUND_S:.0f} s",
            f"  changes {self.changes:,} ({self.captured:,} capture records), lifecycle events {self.events:,}; "
            f"settled {settled} after the workload stopped",
            f"  lost {len(self.lost)}, wrong {self.wrong}, duplicates {self.duplicates}",
        ]  # fmt: skip
        lines += self.offset_lines()
        lines += [f"  lost: {p}" for p in self.lost[:10]]
        if self.wrong:
            lines.append(f"  wrong: {self.wrong_detail}")
        return lines


    def offset_lines(self) -> list[str]:
        stuck = [p for p in self.offsets if p.fetch_end_past_readable]
        past = [p for p in self.offsets if p.end_past_readable]
        below = [p for p in self.offsets if p.end_below_readable]
        holed = [p for p in self.offsets if p.missing]
        lines = [f"  broker offsets ({len(self.offsets)} partitions): fetch high watermark past the last readable "
                 f"record in {len(stuck)}; ListOffsets end past it in {len(past)}, below it in {len(below)}; "
                 f"{sum(p.missing for p in holed)} offsets missing in {len(holed)}"]
        lines += [f"    {p.topic}[{p.partition}]: fetch high watermark {p.fetch_end}, ListOffsets end {p.end}, "
                  f"read {p.read} up to {p.next_readable}, missing {p.missing}"
                  for p in list(dict.fromkeys([*stuck, *past, *holed, *below]))[:12]]  # fmt: skip
        return lines


def components(stack: LocalStack) -> list[str]:
    """Every process a fault may hit, by its process-table name."""
    names = [f"capture-{s}" for s in sorted(stack.connectors())] + stack.dataflow_names() + ["kafka"]
    if stack.kafka.store is not None:
        names.append(stack.kafka.store.name)
    return [*names, "erp", "crm"]


def kill(stack: LocalStack, name: str) -> bool:
    """kill -9 a component; False when it was not running."""
    record = stack.table.running(name)
    if record is None:
        return False
    os.kill(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while is_alive(record) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def restart(stack: LocalStack, component: str, deadline: float) -> None:
    """`tidemark restart` until it succeeds: a PostgreSQL killed with -9 refuses to start while its old
    backends still hold the shared memory, for a moment."""
    while True:
        try:
            stack.restart("dataflow" if component.startswith("dataflow-") else component, echo=lambda _l: None)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def wait_running(stack: LocalStack, names: list[str], bound_s: float) -> list[str]:
    """Wait until every component runs; returns those still down after `bound_s`."""
    deadline = time.monotonic() + bound_s
    while True:
        down = [n for n in names if stack.table.running(n) is None]
        if not down or time.monotonic() > deadline:
            return down
        time.sleep(0.2)


def inject(stack: LocalStack, fault: Fault, names: list[str], summary: ChaosSummary) -> None:
    """One fault: the kill, the restart, the wait until every component runs again."""
    time.sleep(fault.pause_s)
    started = time.monotonic()
    if not kill(stack, fault.component):
        return  # not running (cannot happen after wait_running, short of a crash of its own)
    summary.faults[fault.component] += 1
    if not supervised(fault.component):
        time.sleep(fault.down_s)
        restart(stack, fault.component, time.monotonic() + RECOVERY_BOUND_S)
    for name in wait_running(stack, names, RECOVERY_BOUND_S):
        summary.slow_recoveries.append(f"fault {fault.number}: {name} down after {RECOVERY_BOUND_S:.0f} s")
        restart(stack, name, time.monotonic() + RECOVERY_BOUND_S)
    summary.cycle_s.append(time.monotonic() - started)


def retrying(action: Callable[[], Any], bound_s: float = RECOVERY_BOUND_S) -> None:
    """Run `action` until it succeeds (a database may be down at that moment)."""
    deadline = time.monotonic() + bound_s
    while True:
        try:
            action()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def check(stack: LocalStack, summary: ChaosSummary, bound_s: float, echo: Callable[[str], None]) -> None:
    """Compare with the databases and the reference until both agree (or the bound passed), then record
    lost, wrong and duplicates as they are. Not gated on the dataflow's lag reaching zero: a partition the
    broker cannot serve past a hole keeps its lag forever, and the comparison is what users care about."""
    captured = TopicReader(stack.settings.kafka_bootstrap, table_topics(stack.connectors()))
    lifecycle = TopicReader(stack.settings.kafka_bootstrap, [LIFECYCLE_TOPIC])
    urls = [stack.dataflow_metrics_url(i) for i in range(stack.settings.dataflow_processes)]
    stopped = time.monotonic()
    while True:
        empty = 0
        while empty < 5:  # what is there now (the readers keep what they read: later rounds add the rest)
            empty = 0 if captured.poll() + lifecycle.poll() else empty + 1
        summary.lost = differences(stack, BASE)
        result = compare(stack, captured.messages, lifecycle.messages, BASE)
        summary.wrong, summary.wrong_detail = result.wrong, result.describe()
        summary.events, summary.duplicates = result.events, result.duplicates
        summary.captured = sum(1 for m in captured.messages if m.value is not None)
        if summary.ok:
            summary.settled_after_s = time.monotonic() - stopped
            break
        if time.monotonic() - stopped > bound_s:
            break
        lag = [dataflow_detail(u).get("consumer_lag_messages") for u in urls]
        echo(f"not yet equal: lost {len(summary.lost)}, wrong {summary.wrong}; dataflow consumer lag {lag}")
        time.sleep(10)
    captured.close()
    lifecycle.close()
    summary.offsets = broker_offsets(stack.settings.kafka_bootstrap)


def wait_seeded(stack: LocalStack, bound_s: float, echo: Callable[[str], None]) -> None:
    """Until the seeded rows are in customer_360 and the CRM as in the databases: the faults hit a pipeline
    in steady state (a CRM account processed before the ERP customer it names is a case of its own)."""
    deadline = time.monotonic() + bound_s
    while True:
        problems = differences(stack, BASE)
        if not problems:
            return
        if time.monotonic() > deadline:
            echo(f"the seed did not settle within {bound_s:.0f} s ({len(problems)} differences, e.g. {problems[:2]}); "
                 "injecting faults anyway")  # fmt: skip
            return
        time.sleep(2)


def keep_logs(stack: LocalStack, seed_value: int) -> Path:
    """A copy of the stack's logs for a failed run (0700: they hold customer data)."""
    target = Path(tempfile.mkdtemp(prefix=f"tidemark-chaos-{seed_value}-logs-"))
    shutil.copytree(stack.table.log_dir, target / "logs")
    return target


def run_chaos(minutes: float, seed_value: int, max_faults: int | None = None,
              echo: Callable[[str], None] = print) -> ChaosSummary:  # fmt: skip
    """Faults until `minutes` passed or `max_faults` were injected, then the check."""
    summary = ChaosSummary(seed_value)
    with scratch_stack("tidemark-chaos-", broker_storage="s3", supervise=True) as stack:
        seed(stack, BASE, CUSTOMERS)
        wait_seeded(stack, 300.0, echo)
        names = components(stack)
        workload = Workload(stack, BASE, CUSTOMERS, seed_value)
        workload.start()
        start, deleted = time.monotonic(), False
        for fault in fault_schedule(seed_value, names):
            elapsed = (time.monotonic() - start) / 60
            if elapsed >= minutes or (max_faults is not None and summary.fault_count >= max_faults):
                break
            if not deleted and elapsed >= minutes / 2:
                retrying(lambda: delete_some(stack, BASE, list(range(DELETED))))
                deleted = True
            inject(stack, fault, names, summary)
            echo(f"{elapsed:5.1f} min: fault {summary.fault_count} kill -9 {fault.component}, all running again "
                 f"after {summary.cycle_s[-1] if summary.cycle_s else 0:.1f} s; {workload.done:,} changes")  # fmt: skip
        summary.minutes = (time.monotonic() - start) / 60
        summary.changes = workload.finish() + (3 * DELETED if deleted else 0)
        for name in wait_running(stack, names, RECOVERY_BOUND_S):
            restart(stack, name, time.monotonic() + RECOVERY_BOUND_S)
        echo(f"workload stopped after {summary.changes:,} changes; waiting for the pipeline to drain and settle")
        check(stack, summary, SETTLE_BOUND_S, echo)
        if not summary.ok:
            echo(f"logs kept in {keep_logs(stack, seed_value)}")
    return summary


def add_chaos_parser(sub: Any) -> None:
    p = sub.add_parser("chaos", help="kill -9 every component at random under load, then check (see README)")
    p.add_argument("--minutes", type=float, default=10.0, help="stop injecting after this long")
    p.add_argument("--seed", type=int, default=1, help="picks components and moments: a run is reproducible")
    p.add_argument("--faults", type=int, default=None, help="stop injecting after this many faults")

    def _run(args: argparse.Namespace) -> int:
        # A plain SIGTERM would skip the teardown of the scratch stack: exit through it instead.
        signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(143))
        summary = run_chaos(args.minutes, args.seed, args.faults)
        print("\n".join(summary.lines()))
        return 0 if summary.ok else 1

    p.set_defaults(func=_run)
