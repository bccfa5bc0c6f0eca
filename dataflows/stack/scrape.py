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


def last_error_line(log: Path, tail_bytes: int = 64 * 1024) -> str | None:
    """The newest ERROR or exception line of a log (only its tail is read)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(f.seek(0, 2) - tail_bytes, 0))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if " ERROR " in line or line.startswith(("Traceback", "RuntimeError", "Exception")):
            return line.strip()[:300]
    return None
