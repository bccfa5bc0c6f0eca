"""The local stack: ERP PostgreSQL, CRM MariaDB, Kafka broker and one capture process per source."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql

from dataflows.config.checks import validate_files
from dataflows.config.connectors import ConnectorConfig, capture_topics, connector_files, load_connectors
from dataflows.config.live import connector_property, validate_against_databases
from dataflows.config.secrets import SecretError
from dataflows.dialects.base import LiveReadError
from dataflows.io.sinks import ensure_topics
from dataflows.outputs import INTERNAL_TOPICS, OUTPUT_TOPICS
from dataflows.stewardship import STEWARDSHIP_PARTITIONS, STEWARDSHIP_TOPIC
from dataflows.settings import Settings, project_root
from dataflows.stack import secrets_file
from dataflows.stack.broker import IN_MEMORY_WARNING, LocalBroker, ObjectStore
from dataflows.stack.mariadb import CAPTURE_USER, WRITEBACK_USER, MariaDBInstance, crm_schema_sql
from dataflows.stack.mariadb import run_as as mariadb_user
from dataflows.stack.postgres import CAPTURE_ROLE, OPS_ROLE, PostgresCluster, erp_schema_sql
from dataflows.stack.postgres import run_as as postgres_user
from dataflows.stack.drain import announce_stopped, wait_captured, wait_drained, wait_sent
from dataflows.stack.processes import (
    ProcessRecord,
    ProcessTable,
    is_alive,
    port_open,
    private_dir,
    refuse_taken_port,
    unreachable_ancestor,
    write_private,
)
from dataflows.stack.scrape import capture_detail, dataflow_detail, last_error
from dataflows.stack.supervisor import RestartCounts


class HomeNotUsableError(RuntimeError):
    """$TIDEMARK_HOME is where the database servers' users cannot reach it."""


@dataclass
class ComponentStatus:
    name: str
    kind: str
    state: str  # "up" | "down"
    pid: int | None = None
    endpoint: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


OPS_DATABASE = "tidemark"
LOG_TIMEOUT_S = 5  # connecting to a source database to compare log positions


def capture_process_name(source: str) -> str:
    return f"capture-{source}"


class LocalStack:
    """Everything under one `$TIDEMARK_HOME`, on loopback ports from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home_dir
        self.table = ProcessTable(self.home)
        host = settings.bind_host
        self.erp = PostgresCluster("erp", self.home / "erp", host, settings.erp_port)
        self.crm = MariaDBInstance("crm", self.home / "crm", host, settings.crm_port)
        store = (ObjectStore("kafka-store", self.home / "kafka" / "store", host, settings.broker_store_port)
                 if settings.broker_storage == "s3" else None)  # fmt: skip
        self.kafka = LocalBroker("kafka", host, settings.kafka_port, store)

    # -- configuration handed to capture processes -------------------------------------------
    def connectors(self) -> dict[str, ConnectorConfig]:
        return load_connectors(self.settings.connectors_dir)

    def runtime_defaults(self) -> dict[str, str]:
        """Values connector references fall back to when the environment does not set them."""
        values = {
            "TIDEMARK_ERP_HOST": self.settings.erp_connect_host,
            "TIDEMARK_ERP_PORT": str(self.settings.erp_port),
            "TIDEMARK_CRM_HOST": self.settings.crm_connect_host,
            "TIDEMARK_CRM_PORT": str(self.settings.crm_port),
        }
        if secrets_file.secrets_path(self.home).exists():
            values.update(secrets_file.as_environment(secrets_file.load_or_create(self.home)))
        return values

    def erp_admin(self, dbname: str = "erp") -> psycopg.Connection:
        """An autocommit admin connection to the local ERP over loopback TCP."""
        password = secrets_file.load_or_create(self.home)["erp.admin.password"]
        return psycopg.connect(host=self.settings.erp_connect_host, port=self.settings.erp_port, user="postgres",
                               password=password, dbname=dbname, autocommit=True)  # fmt: skip

    def crm_admin(self, dbname: str = "crm") -> pymysql.Connection:
        """An autocommit admin connection to the local CRM over loopback TCP."""
        password = secrets_file.load_or_create(self.home)["crm.admin.password"]
        return pymysql.connect(host=self.settings.crm_connect_host, port=self.settings.crm_port, user="root",
                               password=password, database=dbname, autocommit=True)  # fmt: skip

    def ops_conninfo(self) -> str:
        """libpq conninfo of the operational database (customer_360), password included: never log it."""
        password = os.environ.get("TIDEMARK_OPS_PASSWORD") or secrets_file.load_or_create(self.home)["ops.password"]
        return psycopg.conninfo.make_conninfo(host=self.settings.erp_connect_host, port=self.settings.erp_port,
                                              dbname=OPS_DATABASE, user=OPS_ROLE, password=password)  # fmt: skip

    def crm_writeback_params(self) -> dict[str, Any]:
        password = (os.environ.get("TIDEMARK_CRM_WRITEBACK_PASSWORD")
                    or secrets_file.load_or_create(self.home)["crm.writeback.password"])  # fmt: skip
        return {"host": self.settings.crm_connect_host, "port": self.settings.crm_port, "user": WRITEBACK_USER,
                "password": password, "database": "crm"}  # fmt: skip

    def capture_metrics_port(self, source: str) -> int:
        names = sorted(self.connectors())
        return self.settings.metrics_port + 10 + names.index(source)

    def dataflow_metrics_port(self, process_id: int) -> int:
        return self.settings.metrics_port + process_id

    def dataflow_metrics_url(self, process_id: int = 0) -> str:
        return f"http://{self.settings.metrics_host}:{self.dataflow_metrics_port(process_id)}/metrics"

    def capture_state_dir(self, source: str) -> Path:
        return self.home / "capture" / source

    # -- lifecycle ----------------------------------------------------------------------------
    def up(self, *, capture: bool = True, dataflow: bool = True, echo: Callable[[str], None] = print) -> None:
        """Start what is not running; initialise databases on first use. Safe to run twice."""
        self.check_home()
        if capture:  # refuse a bad config before starting anything
            validate_files(connector_files(self.settings.connectors_dir)).raise_if_problems()
        connectors = self.connectors() if capture else {}
        with self.lock():
            passwords = secrets_file.load_or_create(self.home)
            self.start_erp(passwords, echo)
            self.start_crm(passwords, echo)
            if capture:  # the databases are up: every mapped column must exist before anything captures
                self.check_sources_against_databases()
            self.write_admin_logins(passwords)
            self.start_broker(echo)
            if capture:
                # Once, before anything produces or consumes: two processes creating the same topic at the
                # same moment left the in-memory broker unable to accept that topic's records.
                ensure_topics(self.settings.kafka_bootstrap, self.all_topics(), self.settings.kafka_properties)
            for source in connectors:
                self.ensure_capture(source, echo)
            if dataflow and capture:
                self.start_dataflow(echo)
            if capture:
                self.write_prometheus_targets()
                self.start_prometheus(echo)
        if capture and self.settings.supervise:
            self.start_supervisor(echo)

    def check_home(self) -> None:
        """Create $TIDEMARK_HOME enterable (0711: not listable) for the users the databases run as, or fail
        at once, saying what to do, when one of its parents keeps them out (e.g. a `mktemp -d`)."""
        if not self.home.exists():
            self.home.mkdir(parents=True)
            self.home.chmod(0o711)
        for user in sorted({u for u in (postgres_user(), mariadb_user()) if u}):
            blocked = unreachable_ancestor(self.home, user)
            if blocked is not None:
                msg = (f"TIDEMARK_HOME={self.home} cannot be used: the database servers run as user '{user}', "
                       f"who may not enter {blocked} (mode {oct(blocked.stat().st_mode & 0o777)}). Choose a "
                       f"TIDEMARK_HOME outside it (e.g. TIDEMARK_HOME=/var/tmp/tidemark), or allow entering "
                       f"without listing: chmod o+x {blocked}")  # fmt: skip
                raise HomeNotUsableError(msg)

    def write_admin_logins(self, passwords: dict[str, str]) -> None:
        """Client files for the README's admin logins, so no password goes on a command line (0600)."""
        directory = private_dir(self.home / "admin")
        s = self.settings
        write_private(directory / "pgpass", f"{s.erp_connect_host}:{s.erp_port}:*:postgres:"
                                            f"{passwords['erp.admin.password']}\n")  # fmt: skip
        write_private(directory / "my.cnf", f"[client]\nhost={s.crm_connect_host}\nport={s.crm_port}\nuser=root\n"
                                            f"password={passwords['crm.admin.password']}\n"
                                            "default-character-set=utf8mb4\n")  # fmt: skip

    @contextmanager
    def lock(self, *, blocking: bool = True) -> Iterator[bool]:
        """The stack's change lock: `up`, `down`, `restart` and the supervisor change it one at a time.
        Yields False, without waiting, when `blocking` is off and someone else holds it."""
        private_dir(self.table.run_dir)
        fd = os.open(self.table.run_dir / "stack.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True

    def start_erp(self, passwords: dict[str, str], echo: Callable[[str], None] = print) -> None:
        if self.table.running("erp"):
            echo(f"erp      already up   {self.erp.url('postgres', 'erp')}")
            return
        fresh = not self.erp.initialized()
        if fresh:
            self.erp.init()
        refuse_taken_port("erp", self.erp.host, self.erp.port, "erp_port")
        self.erp.start(self.table)
        if fresh:
            pw = {"admin": passwords["erp.admin.password"], "capture": passwords["erp.capture.password"]}
            self.erp.bootstrap("erp", erp_schema_sql(), pw, capture_schema="erp")
            self.erp.create_ops_database(OPS_DATABASE, passwords["ops.password"])
        self.erp.grant_capture_stats()
        echo(f"erp      started      {self.erp.url('postgres', 'erp')}")

    def start_crm(self, passwords: dict[str, str], echo: Callable[[str], None] = print) -> None:
        if self.table.running("crm"):
            echo(f"crm      already up   {self.crm.url('root', 'crm')}")
            return
        fresh = not self.crm.initialized()
        if fresh:
            self.crm.init()
        refuse_taken_port("crm", self.crm.host, self.crm.port, "crm_port")
        self.crm.start(self.table)
        if fresh:
            pw = {"admin": passwords["crm.admin.password"], "capture": passwords["crm.capture.password"],
                  "writeback": passwords["crm.writeback.password"]}  # fmt: skip
            self.crm.bootstrap("crm", crm_schema_sql(), pw)
        echo(f"crm      started      {self.crm.url('root', 'crm')}")

    def connector_hash(self, source: str) -> str:
        """SHA-256 of the connector file a capture runs with: `up` restarts a capture whose file changed."""
        path = self.settings.connectors_dir / f"{source}.yaml"
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""

    def ensure_capture(self, source: str, echo: Callable[[str], None] = print) -> None:
        """Start the capture unless it runs with its connector file as it is now (else restart it)."""
        name = capture_process_name(source)
        record = self.table.running(name)
        if record is not None and record.config_hash == self.connector_hash(source):
            echo(f"{name:<12} already up")
            return
        if record is not None:
            echo(f"{name:<12} connector file changed since it started: restarting")
            self.table.stop(name)
        self.start_capture(source)
        echo(f"{name:<12} started (logs: {self.table.log_dir / (name + '.log')})")

    def start_supervisor(self, echo: Callable[[str], None] = print) -> None:
        if self.table.running("supervisor"):
            echo(f"{'supervisor':<12} already up")
            return
        env = {**os.environ, **self.settings_environment()}
        argv = [sys.executable, "-m", "dataflows.cli", "supervise"]
        self.table.spawn("supervisor", argv, env=env, cwd=self.home)
        echo(f"{'supervisor':<12} started (restarts a dead capture or dataflow; `tidemark status` counts restarts)")

    def supervised(self) -> dict[str, list[str]]:
        """What the supervisor restarts: each capture, and the dataflow cluster as a whole."""
        components = {capture_process_name(s): [capture_process_name(s)] for s in self.capture_sources()}
        components["dataflow"] = self.dataflow_names()
        return components

    def capture_sources(self) -> list[str]:
        try:
            return sorted(self.connectors())
        except ValueError:  # an edited, broken connector file: the captures that run still count
            return sorted(n.removeprefix("capture-") for n in self.table.names() if n.startswith("capture-"))

    def exit_reason(self, name: str) -> str:
        """Why a recorded process is gone: the error of its last run, else its capture status."""
        error = run_error(self.table.get(name)).get("last_error")
        if error is None and name.startswith("capture-"):
            error = read_capture_status(self.capture_state_dir(name.removeprefix("capture-"))).get("last_error")
        return error or "exited without an error message"

    def restart(self, component: str, echo: Callable[[str], None] = print, *, locked: bool = False) -> None:
        """Stop `component` (a capture, `dataflow`, or kafka, kafka-store, erp, crm, prometheus) and start it."""
        if not locked:
            with self.lock():
                return self.restart(component, echo, locked=True)
        starters: dict[str, Callable[[], None]] = {
            capture_process_name(s): (lambda s=s: self.start_capture(s)) for s in self.capture_sources()
        }
        starters.update({
            "dataflow": lambda: self.start_dataflow(echo), "kafka": lambda: self.start_broker(echo),
            "kafka-store": lambda: self.start_broker(echo), "prometheus": lambda: self.start_prometheus(echo),
            "erp": lambda: self.start_erp(secrets_file.load_or_create(self.home), echo),
            "crm": lambda: self.start_crm(secrets_file.load_or_create(self.home), echo),
        })  # fmt: skip
        if component not in starters:
            msg = f"unknown component {component!r}: one of {', '.join(sorted(starters))}"
            raise ValueError(msg)
        names = self.dataflow_names() if component == "dataflow" else [component]
        self.table.stop_together(names, sig=stop_signal(names[0]))
        starters[component]()
        echo(f"{component:<12} restarted")
        return None

    def start_broker(self, echo: Callable[[str], None] = print) -> None:
        """The broker's object store first (durable mode), then the broker."""
        store = self.kafka.store
        if store is not None and self.table.running(store.name):
            echo(f"{store.name:<12} already up   {store.endpoint}")
        elif store is not None:
            refuse_taken_port(store.name, store.host, store.port, "broker_store_port")
            store.start(self.table)
            echo(f"{store.name:<12} started      {store.endpoint} (data in {store.root})")
        if self.table.running("kafka"):
            echo(f"kafka    already up   {self.kafka.bootstrap}")
        else:
            refuse_taken_port("kafka", self.kafka.host, self.kafka.port, "kafka_port")
            self.kafka.start(self.table)
            echo(f"kafka    started      {self.kafka.bootstrap} (storage: {self.kafka.storage})")
        if store is None:
            echo(f"warning: {IN_MEMORY_WARNING}")

    def check_sources_against_databases(self) -> None:
        """Every connector check, mapped columns read from the tables themselves; raises with all problems."""
        files = connector_files(self.settings.connectors_dir)
        validate_against_databases(files, self.runtime_defaults()).raise_if_problems()

    def prometheus_dir(self) -> Path:
        return self.home / "prometheus"

    def write_prometheus_targets(self) -> Path:
        """File-discovered scrape targets of this stack (Prometheus re-reads the file when it changes)."""
        directory = self.prometheus_dir()
        (directory / "rules").mkdir(parents=True, exist_ok=True)
        host = self.settings.metrics_host
        groups = [{"targets": [f"{host}:{self.dataflow_metrics_port(i)}"],
                   "labels": {"job": "tidemark-dataflow", "component": f"dataflow-{i}"}}
                  for i in range(self.settings.dataflow_processes)]  # fmt: skip
        groups += [{"targets": [f"{host}:{self.capture_metrics_port(source)}"],
                    "labels": {"job": "tidemark-capture", "component": capture_process_name(source), "source": source}}
                   for source in sorted(self.connectors())]  # fmt: skip
        target_file = directory / "targets.json"
        target_file.write_text(json.dumps(groups, indent=2))
        return target_file

    def start_prometheus(self, echo: Callable[[str], None] = print) -> None:
        """A real Prometheus scraping this stack, with Tidemark's alert rules (skipped if not installed)."""
        binary = shutil.which("prometheus")
        if binary is None:
            echo("prometheus   not installed (Debian package 'prometheus'): skipped")
            return
        if self.table.running("prometheus"):
            echo("prometheus   already up")
            return
        directory = self.prometheus_dir()
        infra = project_root() / "infra" / "prometheus"
        shutil.copy(infra / "prometheus.local.yml", directory / "prometheus.yml")
        for rules in (infra / "rules").glob("*.rules.yml"):
            shutil.copy(rules, directory / "rules" / rules.name)
        address = f"{self.settings.bind_host}:{self.settings.prometheus_port}"
        refuse_taken_port("prometheus", self.settings.bind_host, self.settings.prometheus_port, "prometheus_port")
        argv = [binary, f"--config.file={directory / 'prometheus.yml'}", f"--web.listen-address={address}",
                f"--storage.tsdb.path={directory / 'data'}", "--storage.tsdb.retention.time=2d"]  # fmt: skip
        self.table.spawn("prometheus", argv, endpoint={"url": f"http://{address}"})
        echo(f"prometheus   started      http://{address}")

    def all_topics(self) -> dict[str, int]:
        """Capture topics of every connector file and Tidemark's output topics, with partition counts."""
        partitions = self.settings.topic_partitions
        return {**capture_topics(self.connectors(), partitions), **dict.fromkeys((*OUTPUT_TOPICS, *INTERNAL_TOPICS), partitions),
                STEWARDSHIP_TOPIC: STEWARDSHIP_PARTITIONS}

    def dataflow_names(self) -> list[str]:
        return [f"dataflow-{i}" for i in range(self.settings.dataflow_processes)]

    def start_dataflow(self, echo: Callable[[str], None] = print) -> None:
        """Start the dataflow cluster's processes (all of them, or none: a cluster starts whole)."""
        names = self.dataflow_names()
        if all(self.table.running(n) for n in names):
            echo(f"{'dataflow':<12} already up ({len(names)} process(es))")
            return
        self.table.stop_together(names)  # what is left of a cluster that lost a process
        env = {**os.environ, **self.settings_environment()}
        for i, name in enumerate(names):
            argv = [sys.executable, "-m", "dataflows.cli", "run", "--process-id", str(i), "--processes", str(len(names))]
            self.table.spawn(name, argv, env=env, cwd=self.home, endpoint={"metrics": self.dataflow_metrics_url(i)})
        echo(f"{'dataflow':<12} started ({len(names)} process(es); logs: {self.table.log_dir / 'dataflow-0.log'})")

    def start_capture(self, source: str) -> None:
        env = {**os.environ, **self.settings_environment()}
        argv = [sys.executable, "-m", "dataflows.cli", "capture", source]
        port = self.capture_metrics_port(source)
        endpoint = {"metrics": f"http://{self.settings.metrics_host}:{port}/metrics"}
        self.table.spawn(capture_process_name(source), argv, env=env, endpoint=endpoint, cwd=self.home,
                         config_hash=self.connector_hash(source))  # fmt: skip

    def settings_environment(self) -> dict[str, str]:
        """The settings as TIDEMARK_* variables, so a child process sees the same stack."""
        s = self.settings
        return {
            "TIDEMARK_HOME": str(self.home),
            "TIDEMARK_CONNECTORS_DIR": str(s.connectors_dir.resolve()),
            "TIDEMARK_BIND_HOST": s.bind_host,
            "TIDEMARK_ERP_PORT": str(s.erp_port),
            "TIDEMARK_CRM_PORT": str(s.crm_port),
            "TIDEMARK_KAFKA_PORT": str(s.kafka_port),
            "TIDEMARK_BROKER_STORAGE": s.broker_storage,
            "TIDEMARK_BROKER_STORE_PORT": str(s.broker_store_port),
            "TIDEMARK_METRICS_PORT": str(s.metrics_port),
            "TIDEMARK_METRICS_HOST": s.metrics_host,
            "TIDEMARK_PROMETHEUS_PORT": str(s.prometheus_port),
            "TIDEMARK_TOPIC_PARTITIONS": str(s.topic_partitions),
            "TIDEMARK_DATAFLOW_PROCESSES": str(s.dataflow_processes),
            "TIDEMARK_CLUSTER_PORT": str(s.cluster_port),
            "TIDEMARK_SNAPSHOT_INTERVAL_S": str(s.snapshot_interval_s),
            "TIDEMARK_SUPERVISE": str(s.supervise).lower(),
            "TIDEMARK_RESET_POLICY": s.reset_policy,
            "TIDEMARK_SOURCE_STUCK_AFTER_S": str(s.source_stuck_after_s),
            # References only (literal secrets are refused), so the environment holds no secret.
            "TIDEMARK_KAFKA_PROPERTIES": json.dumps(s.kafka_properties),
        }

    def down(self, echo: Callable[[str], None] = print) -> None:
        """Stop exactly the processes this stack started: the supervisor first (so it restarts nothing that
        is being stopped), the captures (offsets flushed), then, once the dataflow has drained (bounded by
        drain_timeout_s), the dataflow and the services they use."""
        if not self.table.run_dir.exists():
            return  # nothing was ever started here
        if self.table.get("supervisor") is not None:
            was_running = self.table.stop("supervisor")
            echo(f"{'supervisor':<12} {'stopped' if was_running else 'was not running'}")
        with self.lock():
            names = self.table.names()
            captures = [n for n in names if n.startswith("capture-")]
            self._catch_up(captures, echo)
            stopped = [name for name in captures if self.table.stop(name)]
            for name in captures:
                echo(f"{name:<12} {'stopped' if name in stopped else 'was not running'}")
            self._announce_stopped(stopped, echo)
            dataflows = [n for n in names if n.startswith("dataflow")]
            self._drain(dataflows, echo)
            stopped_flow = self.table.stop_together(dataflows, sig=signal.SIGINT)  # a cluster stops whole
            for name in dataflows:
                echo(f"{name:<12} {'stopped' if name in stopped_flow else 'was not running'}")
            for name in [n for n in ("prometheus", "kafka", "kafka-store", "crm", "erp") if n in names]:
                was_running = self.table.stop(name, sig=stop_signal(name))
                echo(f"{name:<12} {'stopped' if was_running else 'was not running'}")

    def _catch_up(self, captures: list[str], echo: Callable[[str], None]) -> None:
        """Before the captures stop: each running one is sent all that its database committed before `down`
        began (bounded by drain_timeout_s), then no change arrives for 2 s, the time Debezium takes to
        convert the last ones and the broker to acknowledge them. What is left is captured on `up`."""
        running = {n: r for n in captures if (r := self.table.running(n)) is not None}
        behind = wait_sent(self._sent_checks(list(running), echo), timeout_s=self.settings.drain_timeout_s, echo=echo)
        if behind:
            echo(f"{'captures':<12} {', '.join(behind)} still behind their databases after "
                 f"{self.settings.drain_timeout_s:.0f}s: stopping them (the rest is captured on `up`)")  # fmt: skip
        urls = [r.endpoint["metrics"] for r in running.values() if "metrics" in r.endpoint]
        if urls and not wait_captured(urls, quiet_s=2.0, timeout_s=15.0):
            echo(f"{'captures':<12} still capturing after 15s: stopping them (the rest is captured on `up`)")

    def _announce_stopped(self, stopped: list[str], echo: Callable[[str], None]) -> None:
        """The stop marker on the heartbeat topic of each capture that stopped cleanly (its status says so once
        its last records are acknowledged): without it the dataflow takes their silence for a stall."""
        try:
            connectors = self.connectors()
        except ValueError:
            return  # an edited, broken connector file: the dataflow holds for the stall hold instead
        topics = [c.heartbeat_topic for name in stopped
                  if (c := connectors.get(name.removeprefix("capture-"))) is not None and c.heartbeat_topic
                  and read_capture_status(self.capture_state_dir(c.name)).get("state") == "stopped"]  # fmt: skip
        if topics and (why := announce_stopped(self.settings.kafka_bootstrap, topics, self.settings.kafka_properties)):
            echo(f"{'captures':<12} could not mark them stopped ({why}): the dataflow may hold its reorder "
                 "buffer for the stall hold while it drains")  # fmt: skip

    def _sent_checks(self, captures: list[str], echo: Callable[[str], None]) -> dict[str, Callable[[], bool]]:
        """For each capture, whether its database has sent it everything committed up to now (the mark)."""
        checks: dict[str, Callable[[], bool]] = {}
        try:
            connectors, defaults = self.connectors(), self.runtime_defaults()
        except ValueError as e:  # an edited, broken connector file: stop the captures as they are
            echo(f"{'captures':<12} connector files unreadable ({type(e).__name__}): not waiting for them")
            return checks
        for name in captures:
            config = connectors.get(name.removeprefix("capture-"))
            if config is None:
                continue  # its connector file was removed: nothing to compare against
            prop = connector_property(config, defaults)
            try:
                mark = config.dialect.log_end(prop, LOG_TIMEOUT_S)
            except (LiveReadError, OSError, SecretError) as e:
                reason = str(e) if isinstance(e, LiveReadError) else type(e).__name__  # never a password
                echo(f"{name:<12} cannot read its database's log position ({reason}): not waiting for it")
                continue
            checks[name] = functools.partial(config.dialect.sent_to_capture, prop, mark, LOG_TIMEOUT_S)
        return checks

    def _drain(self, dataflows: list[str], echo: Callable[[str], None]) -> None:
        urls = [r.endpoint["metrics"] for n in dataflows if (r := self.table.running(n)) and "metrics" in r.endpoint]
        if urls and not wait_drained(urls, timeout_s=self.settings.drain_timeout_s, echo=echo,
                                     settle_s=max(2.0, 2 * self.settings.snapshot_interval_s)):  # fmt: skip
            echo(f"warning: the dataflow did not drain within {self.settings.drain_timeout_s:.0f}s; stopping it "
                 "anyway: it resumes from its last snapshot, and a broker that loses records is detected as a reset")

    def dead_letter_count(self) -> int | None:
        """Open dead letters in the durable table (None while the ops database is unreachable)."""
        return _open_dead_letters(self.ops_conninfo())

    def status(self) -> list[ComponentStatus]:
        rows = self._service_rows() + self._dataflow_rows() + self._capture_rows()
        restarts = RestartCounts(self.home).read()
        for row in rows:
            component = "dataflow" if row.kind == "dataflow" else row.name
            if row.kind in ("dataflow", "capture") and component in restarts:
                row.detail["restarts"] = restarts[component]["restarts"]
                row.detail["last_restart_reason"] = restarts[component].get("last_reason")
        supervisor = self.table.get("supervisor")
        if supervisor is not None:
            rows.append(ComponentStatus("supervisor", "supervisor", "up" if is_alive(supervisor) else "down",
                                        supervisor.pid, {"restarts": str(RestartCounts(self.home).path)}))  # fmt: skip
        prometheus = self.table.get("prometheus")
        if prometheus is not None:
            up = is_alive(prometheus) and port_open(self.settings.bind_host, self.settings.prometheus_port)
            rows.append(ComponentStatus("prometheus", "prometheus", "up" if up else "down", prometheus.pid,
                                        prometheus.endpoint))  # fmt: skip
        return rows

    def _service_rows(self) -> list[ComponentStatus]:
        s = self.settings
        services = {
            "erp": ("postgresql", s.erp_port, {"url": self.erp.url("postgres", "erp"),
                                               "capture_url": self.erp.url(CAPTURE_ROLE, "erp")}),
            "crm": ("mariadb", s.crm_port, {"url": self.crm.url("root", "crm"),
                                            "capture_url": self.crm.url(CAPTURE_USER, "crm")}),
            "kafka": ("kafka-broker", s.kafka_port, {"bootstrap": self.kafka.bootstrap, "storage": self.kafka.storage}),
        }  # fmt: skip
        if self.kafka.store is not None:
            services["kafka-store"] = ("s3rver", s.broker_store_port, {"url": self.kafka.store.endpoint,
                                                                       "data": str(self.kafka.store.root)})  # fmt: skip
        rows = []
        for name, (kind, port, endpoint) in services.items():
            record = self.table.get(name)
            up = record is not None and is_alive(record) and port_open(s.bind_host, port)
            rows.append(ComponentStatus(name, kind, "up" if up else "down", record.pid if record else None, endpoint))
        return rows

    def _dataflow_rows(self) -> list[ComponentStatus]:
        rows = []
        for name in self.dataflow_names():
            record = self.table.get(name)
            up = record is not None and is_alive(record)
            detail = dataflow_detail(record.endpoint.get("metrics")) if up and record else {}
            if detail:  # durable: the table, not the counters of a process that may just have started
                detail["dead_letters"] = self.dead_letter_count()
            detail.update(run_error(record))
            rows.append(ComponentStatus(name, "dataflow", "up" if up else "down", record.pid if record else None,
                                        record.endpoint if record else {}, detail))  # fmt: skip
        return rows

    def _capture_rows(self) -> list[ComponentStatus]:
        try:
            sources = sorted(self.connectors())
        except ValueError:
            sources = sorted(n.removeprefix("capture-") for n in self.table.names() if n.startswith("capture-"))
        rows = []
        for source in sources:
            record = self.table.get(capture_process_name(source))
            up = record is not None and is_alive(record)
            detail = read_capture_status(self.capture_state_dir(source))
            if up and record:
                detail.update(capture_detail(record.endpoint.get("metrics")))
            elif detail.get("state") in ("starting", "running"):
                detail["state"] = "dead"  # killed before it could say so: never "running"
            if record is None:
                detail.pop("last_error", None)  # stopped cleanly by `down`: an old run's error is not news
            else:
                detail.update(run_error(record))
            rows.append(ComponentStatus(capture_process_name(source), "capture", "up" if up else "down",
                                        record.pid if record else None, record.endpoint if record else {},
                                        detail))  # fmt: skip
        return rows


def stop_signal(name: str) -> int:
    """PostgreSQL: SIGINT is its "fast" shutdown (SIGTERM waits for clients to leave); the dataflow
    treats SIGINT as its clean stop."""
    return signal.SIGINT if name == "erp" or name.startswith("dataflow") else signal.SIGTERM


def run_error(record: ProcessRecord | None) -> dict[str, str]:
    """`{"last_error": ...}` from the log of the process's current run, or {} (no record: a clean stop)."""
    if record is None:
        return {}
    error = last_error(Path(record.log), record.log_offset)
    return {"last_error": error} if error else {}


def _open_dead_letters(conninfo: str) -> int | None:
    from dataflows.dlq import counts

    try:
        return counts(conninfo)["open"]
    except psycopg.Error:
        return None


def read_capture_status(state_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state_dir / "status.json").read_text()))
    except (OSError, ValueError):
        return {}
