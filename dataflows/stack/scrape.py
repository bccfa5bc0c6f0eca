"""What `tidemark status` tells about a running process, read from its own /metrics endpoint and log."""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str | None, timeout_s: float = 1.0) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name, or {} when the endpoint does not answer."""
    if not url:
        return {}
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def _total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _, v in samples.get(name, []) if not math.isnan(v))


def capture_detail(url: str | None) -> dict[str, Any]:
    samples = scrape(url)
    if not samples:
        return {}
    lag = [v for _, v in samples.get("tidemark_capture_source_lag_seconds", [])]
    return {
        "source_lag_seconds": round(lag[0], 3) if lag and not math.isnan(lag[0]) else None,
        "changes_captured": int(_total(samples, "tidemark_capture_changes_total")),
        "retained_wal_bytes": int(_total(samples, "tidemark_postgres_slot_retained_wal_bytes")) or None,
    }


def dataflow_detail(url: str | None) -> dict[str, Any]:
    samples = scrape(url)
    if not samples:
        return {}
    return {
        "consumer_lag_messages": int(_total(samples, "tidemark_consumer_lag_messages")),
        "reorder_buffer_depth": int(_total(samples, "tidemark_reorder_buffer_depth")),
        "dead_letters": int(_total(samples, "tidemark_dlq_records_total")),
        "lifecycle_events": int(_total(samples, "tidemark_lifecycle_events_total")),
        "golden_customers": int(_total(samples, "tidemark_golden_customers")),
        "outputs_acknowledged": int(_total(samples, "tidemark_sink_writes_total")),
    }


def drained(detail: dict[str, Any]) -> bool:
    """A dataflow's `dataflow_detail`: it has read every capture record and released its reorder buffer."""
    return bool(detail) and detail["consumer_lag_messages"] == 0 and detail["reorder_buffer_depth"] == 0


def last_error(log: Path, offset: int = 0, tail_bytes: int = 256 * 1024) -> str | None:
    """The newest error of the run whose output starts at byte `offset` of `log` (earlier runs' errors
    are not this run's): an exception's type and message, or an ERROR log line, with the log's path."""
    try:
        with open(log, "rb") as f:
            end = f.seek(0, 2)
            f.seek(max(offset, end - tail_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    message = newest_error(lines)
    return f"{message[:300]} (log: {log})" if message else None


def newest_error(lines: list[str]) -> str | None:
    """The last error in log lines: a traceback counts as the exception line that ends it."""
    found = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Traceback (most recent call last)"):
            j = i + 1
            while j < len(lines) and (not lines[j] or lines[j][0] in " \t"):
                j += 1  # frames and source lines are indented; the exception line is not
            if j < len(lines):
                found = lines[j].strip()
            i = j + 1
            continue
        if " ERROR " in line:
            found = line.split(" ERROR ", 1)[1].strip()
        i += 1
    return found
