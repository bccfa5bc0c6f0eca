"""The local stack: ERP PostgreSQL, CRM MariaDB, Kafka broker and one capture process per source."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql

from dataflows.config.connectors import ConnectorConfig, capture_topics, load_connectors
from dataflows.io.sinks import ensure_topics
from dataflows.outputs import OUTPUT_TOPICS
from dataflows.settings import Settings, project_root
from dataflows.stack import secrets_file
from dataflows.stack.broker import IN_MEMORY_WARNING, LocalBroker
from dataflows.stack.mariadb import CAPTURE_USER, WRITEBACK_USER, MariaDBInstance, crm_schema_sql
from dataflows.stack.postgres import CAPTURE_ROLE, OPS_ROLE, PostgresCluster, erp_schema_sql

OPS_DATABASE = "tidemark"
from dataflows.stack.drain import wait_drained
from dataflows.stack.processes import ProcessTable, is_alive, port_open
from dataflows.stack.scrape import capture_detail, dataflow_detail, last_error_line


@dataclass
class ComponentStatus:
    name: str
    kind: str
    state: str  # "up" | "down"
    pid: int | None = None
    endpoint: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


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
        self.kafka = LocalBroker("kafka", host, settings.kafka_port)

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
        self.home.mkdir(parents=True, exist_ok=True)
        passwords = secrets_file.load_or_create(self.home)
        connectors = self.connectors() if capture else {}  # refuse a bad config before starting anything

        if self.table.running("erp"):
            echo(f"erp      already up   {self.erp.url('postgres', 'erp')}")
        else:
            fresh = not self.erp.initialized()
            if fresh:
                self.erp.init()
            self.erp.start(self.table)
            if fresh:
                pw = {"admin": passwords["erp.admin.password"], "capture": passwords["erp.capture.password"]}
                self.erp.bootstrap("erp", erp_schema_sql(), pw, capture_schema="erp")
                self.erp.create_ops_database(OPS_DATABASE, passwords["ops.password"])
            echo(f"erp      started      {self.erp.url('postgres', 'erp')}")

        if self.table.running("crm"):
            echo(f"crm      already up   {self.crm.url('root', 'crm')}")
        else:
            fresh = not self.crm.initialized()
            if fresh:
                self.crm.init()
            self.crm.start(self.table)
            if fresh:
                pw = {"admin": passwords["crm.admin.password"], "capture": passwords["crm.capture.password"],
                      "writeback": passwords["crm.writeback.password"]}
                self.crm.bootstrap("crm", crm_schema_sql(), pw)
            echo(f"crm      started      {self.crm.url('root', 'crm')}")

        if self.table.running("kafka"):
            echo(f"kafka    already up   {self.kafka.bootstrap}")
        else:
            self.kafka.start(self.table)
            echo(f"kafka    started      {self.kafka.bootstrap}")
        echo(f"warning: {IN_MEMORY_WARNING}")
        if capture:
            # Once, before anything produces or consumes: two processes creating the same topic at the
            # same moment left the in-memory broker unable to accept that topic's records.
            ensure_topics(self.settings.kafka_bootstrap, self.all_topics())

        for source in connectors:
            name = capture_process_name(source)
            if self.table.running(name):
                echo(f"{name:<12} already up")
                continue
            self.start_capture(source)
            echo(f"{name:<12} started (logs: {self.table.log_dir / (name + '.log')})")
        if dataflow and capture:
            self.start_dataflow(echo)
        if capture:
            self.write_prometheus_targets()
            self.start_prometheus(echo)

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
        argv = [binary, f"--config.file={directory / 'prometheus.yml'}", f"--web.listen-address={address}",
                f"--storage.tsdb.path={directory / 'data'}", "--storage.tsdb.retention.time=2d"]  # fmt: skip
        self.table.spawn("prometheus", argv, endpoint={"url": f"http://{address}"})
        echo(f"prometheus   started      http://{address}")

    def all_topics(self) -> dict[str, int]:
        """Capture topics of every connector file and Tidemark's output topics, with partition counts."""
        partitions = self.settings.topic_partitions
        return {**capture_topics(self.connectors(), partitions), **dict.fromkeys(OUTPUT_TOPICS, partitions)}

    def dataflow_names(self) -> list[str]:
        return [f"dataflow-{i}" for i in range(self.settings.dataflow_processes)]

    def start_dataflow(self, echo: Callable[[str], None] = print) -> None:
        """Start the dataflow cluster's processes (all of them, or none: a cluster starts whole)."""
        names = self.dataflow_names()
        if all(self.table.running(n) for n in names):
            echo(f"{'dataflow':<12} already up ({len(names)} process(es))")
            return
        for name in names:
            self.table.stop(name)
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
        self.table.spawn(capture_process_name(source), argv, env=env, endpoint=endpoint, cwd=self.home)

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
            "TIDEMARK_METRICS_PORT": str(s.metrics_port),
            "TIDEMARK_METRICS_HOST": s.metrics_host,
            "TIDEMARK_PROMETHEUS_PORT": str(s.prometheus_port),
            "TIDEMARK_TOPIC_PARTITIONS": str(s.topic_partitions),
            "TIDEMARK_DATAFLOW_PROCESSES": str(s.dataflow_processes),
            "TIDEMARK_CLUSTER_PORT": str(s.cluster_port),
            "TIDEMARK_SNAPSHOT_INTERVAL_S": str(s.snapshot_interval_s),
            "TIDEMARK_RESET_POLICY": s.reset_policy,
        }

    def down(self, echo: Callable[[str], None] = print) -> None:
        """Stop exactly the processes this stack started: the captures first (offsets flushed), then,
        once the dataflow has drained (bounded by drain_timeout_s), the dataflow and the services."""
        names = self.table.names()
        for name in [n for n in names if n.startswith("capture-")]:
            echo(f"{name:<12} {'stopped' if self.table.stop(name) else 'was not running'}")
        dataflows = [n for n in names if n.startswith("dataflow")]
        urls = [r.endpoint["metrics"] for n in dataflows if (r := self.table.running(n)) and "metrics" in r.endpoint]
        if urls and not wait_drained(urls, timeout_s=self.settings.drain_timeout_s, echo=echo,
                                     settle_s=max(2.0, 2 * self.settings.snapshot_interval_s)):  # fmt: skip
            echo(f"warning: the dataflow did not drain within {self.settings.drain_timeout_s:.0f}s; stopping it "
                 "anyway: it resumes from its last snapshot, and a broker that loses records is detected as a reset")
        order = dataflows + [n for n in ("prometheus", "kafka", "crm", "erp") if n in names]
        for name in order:
            # PostgreSQL: SIGINT is its "fast" shutdown (SIGTERM waits for clients to leave).
            sig = signal.SIGINT if name == "erp" or name.startswith("dataflow") else signal.SIGTERM
            was_running = self.table.stop(name, sig=sig)
            echo(f"{name:<12} {'stopped' if was_running else 'was not running'}")

    def dead_letter_count(self) -> int | None:
        """Open dead letters in the durable table (None while the ops database is unreachable)."""
        return _open_dead_letters(self.ops_conninfo())

    def status(self) -> list[ComponentStatus]:
        s = self.settings
        rows: list[ComponentStatus] = []
        services = {
            "erp": ("postgresql", s.erp_port, {"url": self.erp.url("postgres", "erp"),
                                               "capture_url": self.erp.url(CAPTURE_ROLE, "erp")}),
            "crm": ("mariadb", s.crm_port, {"url": self.crm.url("root", "crm"),
                                            "capture_url": self.crm.url(CAPTURE_USER, "crm")}),
            "kafka": ("kafka-broker", s.kafka_port, {"bootstrap": self.kafka.bootstrap}),
        }  # fmt: skip
        for name, (kind, port, endpoint) in services.items():
            record = self.table.get(name)
            up = record is not None and is_alive(record) and port_open(s.bind_host, port)
            rows.append(ComponentStatus(name, kind, "up" if up else "down", record.pid if record else None, endpoint))
        try:
            sources = sorted(self.connectors())
        except ValueError:
            sources = sorted(n.removeprefix("capture-") for n in self.table.names() if n.startswith("capture-"))
        for name in self.dataflow_names():
            record = self.table.get(name)
            up = record is not None and is_alive(record)
            detail = dataflow_detail(record.endpoint.get("metrics")) if up and record else {}
            if detail:  # durable: the table, not the counters of a process that may just have started
                detail["dead_letters"] = self.dead_letter_count()
            error = last_error_line(self.table.log_dir / f"{name}.log")
            if error:
                detail["last_error"] = error
            rows.append(ComponentStatus(name, "dataflow", "up" if up else "down", record.pid if record else None,
                                        record.endpoint if record else {}, detail))  # fmt: skip
        for source in sources:
            record = self.table.get(capture_process_name(source))
            up = record is not None and is_alive(record)
            endpoint = record.endpoint if record else {}
            detail = read_capture_status(self.capture_state_dir(source))
            if up and record:
                detail.update(capture_detail(record.endpoint.get("metrics")))
            rows.append(ComponentStatus(capture_process_name(source), "capture", "up" if up else "down",
                                        record.pid if record else None, endpoint, detail))  # fmt: skip
        prometheus = self.table.get("prometheus")
        if prometheus is not None:
            up = is_alive(prometheus) and port_open(s.bind_host, s.prometheus_port)
            rows.append(ComponentStatus("prometheus", "prometheus", "up" if up else "down", prometheus.pid,
                                        prometheus.endpoint))  # fmt: skip
        return rows


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
