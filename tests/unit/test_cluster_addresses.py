"""A dataflow cluster across hosts: `tidemark run --addresses` is parsed or refused with what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflows.runtime import parse_addresses

hosts = st.sampled_from(["10.0.0.5", "dataflow-1.internal", "127.0.0.1", "[::1]"])
ports = st.integers(1, 65535)


@given(st.lists(st.tuples(hosts, ports), unique=True, max_size=6))
def test_addresses_come_back_in_process_id_order(entries: list[tuple[str, int]]) -> None:
    text = " , ".join(f"{h}:{p}" for h, p in entries)
    assert parse_addresses(text) == [f"{h}:{p}" for h, p in entries]


@pytest.mark.parametrize("text", ["10.0.0.5", "10.0.0.5:", ":19200", "10.0.0.5:0", "10.0.0.5:70000",
                                  "10.0.0.5:port", "a:1,a:1"])
def test_a_bad_address_list_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="host:port|repeat"):
        parse_addresses(text)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--addresses", "10.0.0.5:19200,10.0.0.6:19200", "--process-id", "2"], "outside the cluster of 2"),
        (["--addresses", "10.0.0.5:19200,10.0.0.6:19200", "--processes", "3"], "one address per process"),
        (["--addresses", "10.0.0.5"], "not host:port"),
    ],
)
def test_run_refuses_a_cluster_that_cannot_form(tmp_path: object, args: list[str], says: str) -> None:
    # Refused before anything starts: no stack, no broker needed.
    done = subprocess.run([sys.executable, "-m", "dataflows.cli", "run", *args], capture_output=True, text=True,
                          env={"TIDEMARK_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=60, check=False)
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr
