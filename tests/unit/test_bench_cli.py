"""`tidemark bench core --quick --json` end to end: a real (small) run of the core stage, read as a script
would read it. No stack needed; no figure is asserted, only what a script relies on."""

from __future__ import annotations

import json
import subprocess
import sys

from dataflows.bench.measurement import KEYS, UNITS


def test_bench_core_quick_json_prints_only_measurement_lines() -> None:
    result = subprocess.run([sys.executable, "-m", "dataflows.cli", "bench", "core", "--quick", "--json"],
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines, result.stderr
    docs = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    assert all(tuple(d) == KEYS for d in docs)
    assert {d["stage"] for d in docs} == {"core"}
    assert {d["unit"] for d in docs} == {"changes/s", "us/change"} <= UNITS
    for d in docs:
        assert d["value"] > 0 and d["ceiling"] > 0 and d["ratio"] == d["value"] / d["ceiling"]
        assert d["conditions"]["cores"] >= 1 and d["conditions"]["quick"] is True and d["conditions"]["changes"] > 0
    assert "bench core" in result.stderr  # progress goes to stderr
