"""One benchmark figure, as every stage reports it, and its two renderings: a line of the human table
and a JSON object on a line of its own (`tidemark bench STAGE --json`), for scripts.

The JSON line has exactly the keys "stage", "what", "value", "unit", "ceiling", "ratio", "runs" and
"conditions". `ratio` is always value / ceiling (below 1 for a rate under its ceiling, above 1 for a
cost over it) and is null exactly when `ceiling` is null. `conditions` says what the figure was
measured under (machine, sizes, broker, ...); a dataflow figure always says how many processes ran.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STAGES = ("core", "dataflow", "capture", "latency", "memory", "profile")
UNITS = frozenset({
    "changes/s",  # changes (capture records, source rows) per second
    "us/change",  # microseconds of CPU-bound work per change
    "s",  # seconds (latency)
    "bytes/customer",  # resident memory per customer held
    "bytes",  # resident memory of a process
    "ms/1000 changed",  # snapshot milliseconds per 1,000 customers changed since the last snapshot
    "share",  # a fraction of the whole, 0 to 1 (profile)
})  # fmt: skip
KEYS = ("stage", "what", "value", "unit", "ceiling", "ratio", "runs", "conditions")


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Measurement:
    """One figure of one stage, beside its same-run ceiling where the stage has one."""

    stage: str
    what: str
    value: float
    unit: str
    ceiling: float | None = None
    runs: int = 1
    conditions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.stage not in STAGES:
            problems.append(f"stage {self.stage!r} is not one of {', '.join(STAGES)}")
        if self.unit not in UNITS:
            problems.append(f"unit {self.unit!r} is not one of {', '.join(sorted(UNITS))}")
        if not self.what:
            problems.append("what is empty")
        if not _finite(self.value):
            problems.append(f"value {self.value!r} is not a finite number")
        if self.ceiling is not None and not (_finite(self.ceiling) and self.ceiling > 0):
            problems.append(f"ceiling {self.ceiling!r} is not a positive finite number")
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or self.runs < 1:
            problems.append(f"runs {self.runs!r} is not a positive integer")
        if self.stage == "dataflow" and not isinstance(self.conditions.get("processes"), int):
            problems.append("a dataflow measurement needs conditions.processes (an integer)")
        try:
            json.dumps(dict(self.conditions), allow_nan=False)
        except (TypeError, ValueError) as e:
            problems.append(f"conditions are not plain JSON: {e}")
        if problems:
            msg = f"bad measurement {self.stage}/{self.what}: {'; '.join(problems)}"
            raise ValueError(msg)

    @property
    def ratio(self) -> float | None:
        return None if self.ceiling is None else self.value / self.ceiling

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "what": self.what, "value": self.value, "unit": self.unit,
                "ceiling": self.ceiling, "ratio": self.ratio, "runs": self.runs,
                "conditions": dict(self.conditions)}  # fmt: skip

    def json_line(self) -> str:
        """The figure as one line of JSON (no newline inside, no NaN)."""
        return json.dumps(self.as_dict(), allow_nan=False, separators=(", ", ": "))

    def table_row(self) -> str:
        """The figure as one line of the human table."""
        ceiling = f"ceiling {_number(self.ceiling)} {self.unit}" if self.ceiling is not None else ""
        ratio = f"ratio {self.ratio:.3g}" if self.ratio is not None else ""
        return (f"{self.stage:<9} {self.what:<58} {_number(self.value):>12} {self.unit:<16} {ceiling:<32} "
                f"{ratio:<12} runs {self.runs}").rstrip()  # fmt: skip


def _number(x: float | None) -> str:
    if x is None:
        return ""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.3g}"


class Table:
    """The human table, a row per figure as it comes; a row's conditions follow it when they differ from
    the row before (leaving out those in `shown`, e.g. the machine, printed once above the table)."""

    def __init__(self, shown: Mapping[str, Any] | None = None) -> None:
        self.shown = dict(shown or {})
        self.previous: dict[str, Any] | None = None

    def rows(self, m: Measurement) -> list[str]:
        lines = [m.table_row()]
        own = {k: v for k, v in m.conditions.items() if self.shown.get(k, object()) != v}
        if own != self.previous:
            lines.append("          conditions: " + ", ".join(f"{k}={v}" for k, v in own.items()))
            self.previous = own
        return lines


def machine_conditions(quick: bool) -> dict[str, Any]:
    """What every figure was measured on: cores, CPU, memory, Python, when, and whether --quick."""
    return {"cores": os.cpu_count(), "cpu": _cpu_model(), "memory_gib": _memory_gib(), "arch": platform.machine(),
            "python": platform.python_version(), "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": quick}  # fmt: skip


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            models = (line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
            return next(models, platform.processor())
    except OSError:
        return platform.processor()


def _memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return round(pages * size / 2**30, 1)
