"""Soak run (`make soak`, not in CI): steady mixed ERP and CRM traffic through the whole local stack for
a while (15 minutes by default), the resident memory of every process the stack started sampled every
30 s, then the load stops and the run waits for the dataflow's consumer lag and reorder buffer to drain.

Memory is "flat after warm-up" when no process grew by more than 10% (and 32 MiB) between the end of
the warm-up (the first fifth of the run) and the end of the load. The local broker is sampled but not
judged: it keeps every record in memory, so it grows with the data by design.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from dataflows.bench.report import MIB
from dataflows.bench.workload import mixed_statement
from dataflows.memory import rss_bytes
from dataflows.stack.local import LocalStack
from dataflows.stack.scrape import dataflow_detail, drained
from dataflows.stack.scratch import scratch_stack

CUSTOMERS = 2_000
GROWS_BY_DESIGN = {"kafka"}  # the in-memory local broker holds every record
FIRST_ID = 700_000  # clear of the demo rows `tidemark up` seeds


class MixedWriter(threading.Thread):
    """The mixed workload (dataflows.bench.workload.mixed_statement) at `rate` statements/s."""

    def __init__(self, stack: LocalStack, rate: int, seed: int = 11) -> None:
        super().__init__(daemon=True)
        self.stack, self.rate, self.rnd = stack, rate, random.Random(seed)
        self.stop = threading.Event()
        self.done = 0

    def run(self) -> None:
        crm = self.stack.crm_admin()
        with self.stack.erp_admin() as erp, erp.cursor() as cur, crm.cursor() as crm_cur:
            tick, owed, n = 0.05, 0.0, 0
            next_tick = time.monotonic()
            while not self.stop.is_set():
                owed += self.rate * tick
                count, owed = int(owed), owed - int(owed)
                for _ in range(count):
                    n += 1
                    system, sql, params = mixed_statement(self.rnd, FIRST_ID + self.rnd.randrange(CUSTOMERS), n)
                    (cur if system == "erp" else crm_cur).execute(sql, params)
                erp.commit()
                crm.commit()
                self.done += count
                next_tick += tick
                time.sleep(max(0.0, next_tick - time.monotonic()))
        crm.close()


@dataclass
class SoakResult:
    minutes: float
    rate: int
    statements: int
    samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # process -> (minute, RSS)
    drained_after_s: float | None = None
    dead_letters: int = 0

    def growth(self, name: str) -> tuple[int, int]:
        """(RSS at the end of warm-up, RSS at the end of the load) of one process."""
        points = self.samples[name]
        warm = [rss for minute, rss in points if minute >= self.minutes / 5]
        return (warm[0], warm[-1]) if warm else (points[0][1], points[-1][1])

    def flat(self, name: str) -> bool:
        start, end = self.growth(name)
        return end - start <= max(0.1 * start, 32 * MIB)


def seed(stack: LocalStack) -> None:
    with stack.erp_admin() as db, db.cursor() as cur:
        cur.executemany("INSERT INTO erp.customers (id, legal_name, tax_id, country) VALUES (%s, %s, %s, 'DE')",
                        [(i, f"Soak {i} GmbH", f"SOAK{i}") for i in range(FIRST_ID, FIRST_ID + CUSTOMERS)])  # fmt: skip
    crm = stack.crm_admin()
    with crm.cursor() as cur:
        cur.executemany("INSERT INTO accounts (id, name, tax_id, country, erp_customer_id) VALUES (%s, %s, %s, 'DE', %s)",
                        [(i, f"Soak {i}", f"SOAK{i}", i) for i in range(FIRST_ID, FIRST_ID + CUSTOMERS)])  # fmt: skip
    crm.commit()
    crm.close()


def run(minutes: float = 15.0, rate: int = 300, sample_s: float = 30.0, echo=print) -> SoakResult:  # noqa: ANN001
    with scratch_stack("tidemark-soak-") as stack:
        seed(stack)
        result = SoakResult(minutes, rate, 0)
        writer = MixedWriter(stack, rate)
        start = time.monotonic()
        writer.start()
        while True:
            minute = (time.monotonic() - start) / 60
            for name in stack.table.names():
                record = stack.table.running(name)
                result.samples.setdefault(name, []).append((minute, rss_bytes(record.pid) if record else 0))
            echo(f"{minute:5.1f} min: {writer.done:,} statements; " + ", ".join(
                f"{n} {pts[-1][1] / MIB:,.0f} MiB" for n, pts in sorted(result.samples.items())))  # fmt: skip
            if minute >= minutes:
                break
            time.sleep(max(0.0, sample_s - (time.monotonic() - start) % sample_s))
        writer.stop.set()
        writer.join(timeout=30)
        result.statements = writer.done
        stopped = time.monotonic()
        url = stack.dataflow_metrics_url()
        while time.monotonic() - stopped < 300:
            detail = dataflow_detail(url)
            if drained(detail):
                result.drained_after_s = time.monotonic() - stopped
                result.dead_letters = detail["dead_letters"]
                break
            time.sleep(1)
    return result
