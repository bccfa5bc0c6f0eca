"""`tidemark run`: the long-lived dataflow process, with Bytewax recovery under $TIDEMARK_HOME.

Scaling out is by processes: N processes form one Bytewax cluster, each runs
`tidemark run --process-id I --processes N` (loopback ports) or `--addresses h0:p0,h1:p1,...` (across hosts). All must be up for the cluster to start; if one dies the
cluster stops and is restarted whole, resuming from the last snapshot.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from dataflows import metrics
from dataflows.capture.resnapshot import request_resnapshot
from dataflows.config.policy import build_policy
from dataflows.flows.consistency import FlowConfig, build_flow
from dataflows.memory import tune_gc
from dataflows.io.sinks import ensure_topics
from dataflows.stack.local import LocalStack
from dataflows.stack.processes import private_dir

log = logging.getLogger(__name__)
REQUEST_WINDOW_S = 30.0  # resets noticed within it share one re-snapshot request
RECOVERY_PARTITIONS = 4  # fixed at first start; enough for up to 4 processes resuming each other's state


def flow_config(stack: LocalStack) -> FlowConfig:
    s = stack.settings
    connectors = stack.connectors()
    return FlowConfig(
        bootstrap=s.kafka_bootstrap,
        connectors=connectors,
        policy=build_policy(connectors.values(), s.policy_file),
        partitions=s.topic_partitions,
        group="tidemark-dataflow",
        ops_conninfo=stack.ops_conninfo(),
        crm=stack.crm_writeback_params(),
        max_record_bytes=s.max_record_bytes,
        on_reset=resnapshot_policy(stack) if s.reset_policy == "resnapshot" else None,
        kafka_properties=s.kafka_properties,
        checkpoints=stack.home / "recovery" / "sequencer",
        stuck_after_s=s.source_stuck_after_s,
        warm_customers=s.warm_customers,
    )


def resnapshot_policy(stack: LocalStack) -> Callable[[str, int, str], None]:
    """The `resnapshot` reset policy on the local stack: ask the capture of the reset topic's source for a
    new snapshot (one pending request per source serves every partition that noticed)."""
    sources = {c.topic_prefix: c.name for c in stack.connectors().values()}
    sources.update({c.heartbeat_topic: c.name for c in stack.connectors().values() if c.heartbeat_topic})

    asked: dict[str, float] = {}  # source -> monotonic time of this process's last request

    def request(topic: str, partition: int, reason: str) -> None:
        source = sources.get(topic) or sources.get(topic.split(".", 1)[0])
        if source is None:
            return
        # Readers notice one wipe over several seconds (metadata refresh): one snapshot serves them all,
        # and a second request would restart the capture in the middle of it.
        if time.monotonic() - asked.get(source, -REQUEST_WINDOW_S) < REQUEST_WINDOW_S:
            return
        asked[source] = time.monotonic()
        if request_resnapshot(stack.capture_state_dir(source), f"{topic}[{partition}] {reason}"):
            log.warning("reset policy resnapshot: asked capture %s for a new snapshot (%s[%d] %s)",
                        source, topic, partition, reason)  # fmt: skip

    return request


def cluster_addresses(stack: LocalStack, processes: int) -> list[str]:
    base = stack.settings.cluster_port
    return [f"{stack.settings.bind_host}:{base + i}" for i in range(processes)]


def parse_addresses(text: str) -> list[str]:
    """`host:port,host:port,...` (a cluster across hosts, in process-id order) -> the list; empty -> []."""
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = f"cluster address {address!r} is not host:port (e.g. 10.0.0.5:19200)"
            raise ValueError(msg)
    if len(set(addresses)) != len(addresses):
        msg = f"cluster addresses repeat an entry: {text!r}; every process needs its own host:port"
        raise ValueError(msg)
    return addresses


def _init_recovery(directory: Path) -> None:
    os.umask(0o077)  # snapshots hold customer state: 0700 directories, 0600 files
    private_dir(directory)
    with open(directory.parent / "recovery.lock", "w") as lock:  # processes of one cluster start together
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not any(directory.glob("part-*")):
            init_db_dir(directory, RECOVERY_PARTITIONS)


def run_dataflow(stack: LocalStack, process_id: int = 0, processes: int = 1, addresses: list[str] | None = None) -> int:
    """One process of the dataflow cluster: `addresses` (one per process) for a cluster across hosts,
    else loopback ports from the settings' cluster_port."""
    s = stack.settings
    recovery = stack.home / "recovery"
    _init_recovery(recovery)
    config = flow_config(stack)
    # Capture topics too: a partition that exists from the start is read from the start, so its first
    # change is not delayed (and made late) by waiting for the topic to appear.
    ensure_topics(s.kafka_bootstrap, stack.all_topics(), s.kafka_properties)
    flow = build_flow(config)
    tune_gc()
    metrics.serve(stack.dataflow_metrics_port(process_id), s.metrics_host)
    if processes > 1 and addresses is None:
        addresses = cluster_addresses(stack, processes)
    signal.signal(signal.SIGINT, _stop_quietly)
    log.info("dataflow process %d/%d starting; recovery in %s, snapshot every %ss",
             process_id, processes, recovery, s.snapshot_interval_s)  # fmt: skip
    try:
        cli_main(
            flow,
            workers_per_process=1,
            process_id=process_id if processes > 1 else None,
            addresses=addresses if processes > 1 else None,
            epoch_interval=timedelta(seconds=s.snapshot_interval_s),
            recovery_config=RecoveryConfig(str(recovery)),
        )
    except BaseException as e:
        if not is_stop_signal(e):
            raise
    log.info("dataflow process %d/%d stopped", process_id, processes)
    return 0


def _stop_quietly(_signum: int, _frame: object) -> None:
    """The stop signal from `tidemark down`: raise KeyboardInterrupt as Python would, but first point fd 2
    at /dev/null and keep Python's own stderr (our log lines) on a duplicate of it. The interrupt lands
    inside a Python callback, and Bytewax's Rust side prints it as a panic with a backtrace on fd 2:
    in the log that reads as a crash, while it is the requested stop."""
    if not isinstance(sys.stderr, _QuietStderr):
        sys.stderr.flush()
        kept = _QuietStderr(os.dup(2), "w", buffering=1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = kept
        for handler in logging.root.handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(kept)
    raise KeyboardInterrupt


class _QuietStderr(io.TextIOWrapper):
    """Python's stderr after the stop signal (marks that fd 2 was already silenced)."""

    def __init__(self, fd: int, mode: str, buffering: int) -> None:
        super().__init__(io.FileIO(fd, mode), line_buffering=buffering == 1)


def is_stop_signal(error: BaseException) -> bool:
    """True when `error` is the stop signal `tidemark down` sends (SIGINT), not a failure.

    The SIGINT usually lands inside a Python callback (the Kafka poll); Bytewax then raises a
    BytewaxRuntimeError whose cause chain holds the KeyboardInterrupt."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
