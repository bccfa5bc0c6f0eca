"""Runtime settings, read from `TIDEMARK_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WARM_CUSTOMERS = 10_000  # decoded customer states a dataflow process keeps by default (flows/partitioned.py)


def project_root() -> Path:
    """The checkout that holds connectors/ and infra/ (the package lives inside it)."""
    return Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where the local stack lives and which loopback ports it uses."""

    # Inputs never in error messages: a misplaced secret must not reach a log through a refusal.
    model_config = SettingsConfigDict(env_prefix="TIDEMARK_", extra="ignore", hide_input_in_errors=True)

    home: Path = Field(Path(".tidemark"), description="State directory: data, logs, pid files, offsets.")
    connectors_dir: Path = Field(
        default_factory=lambda: project_root() / "connectors",
        description="Directory of connector YAML files, one per CDC source.",
    )
    bind_host: str = Field("127.0.0.1", description="Address every local listener binds to.")
    erp_host: str | None = Field(None, description="ERP database host to connect to (default: bind_host).")
    crm_host: str | None = Field(None, description="CRM database host to connect to (default: bind_host).")
    kafka_bootstrap_servers: str | None = Field(None, description="Kafka bootstrap servers (default: local broker).")
    kafka_properties: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Kafka client properties in librdkafka's names, as a JSON object (TLS, SASL, tuning), "
        'e.g. {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "tidemark", '
        '"sasl.password": "${env:KAFKA_PASSWORD}"}. Secrets only as ${env:NAME} or ${file:PATH:KEY} references; '
        "properties that carry the delivery guarantees (acks, idempotence, offsets) are refused.",
    )
    prometheus_port: int = Field(19090, description="Port of the local Prometheus server `up` starts.")
    erp_port: int = Field(15432, description="Port of the local ERP PostgreSQL cluster.")
    crm_port: int = Field(13306, description="Port of the local CRM MariaDB instance.")
    kafka_port: int = Field(19092, description="Port of the local Kafka-protocol broker.")
    broker_storage: Literal["s3", "memory"] = Field(
        "s3",
        description="Where the local broker keeps topics: 's3' (durable: files under home/kafka, through a local "
        "file-backed S3 server) or 'memory' (faster, lost when the broker stops).",
    )
    broker_store_port: int = Field(19094, description="Port of the local S3 server the durable broker stores in.")
    metrics_port: int = Field(
        19100,
        description="First metrics port: dataflow process i serves on metrics_port+i, capture processes on "
        "metrics_port+10+j in the order of their connector files.",
    )
    metrics_host: str = Field("127.0.0.1", description="Address the /metrics endpoints bind to.")
    topic_partitions: int = Field(3, ge=1, description="Partitions of topics Tidemark creates.")
    dataflow_processes: int = Field(1, ge=1, description="Processes of the dataflow cluster `up` starts.")
    cluster_port: int = Field(19200, description="First port of the dataflow cluster's loopback addresses.")
    cluster_addresses: str = Field(
        "",
        description="host:port of every dataflow process, comma-separated, in process-id order, for a cluster "
        "across hosts (each process binds its own entry); empty: loopback ports from cluster_port.",
    )
    supervise: bool = Field(True, description="`up` starts a supervisor restarting a dead capture or dataflow.")
    snapshot_interval_s: float = Field(5.0, gt=0, description="Seconds between recovery snapshots (epochs).")
    warm_customers: int = Field(
        WARM_CUSTOMERS, ge=0, description="Customer states each dataflow process keeps decoded after a snapshot (about "
        "7 KB each), so a customer that changes again is not decoded again; 0 keeps only bytes at rest.",
    )
    max_record_bytes: int = Field(1024 * 1024, ge=1024, description="Larger capture records go to the DLQ.")
    policy_file: Path | None = Field(None, description="YAML overriding the default governance policy.")
    drain_timeout_s: float = Field(
        180.0, ge=0, description="How long `down` waits for the dataflow to drain after stopping the captures "
        "(a source that stopped sending heartbeats holds the reorder buffer up to its stall hold, 60 s by default).",
    )
    source_stuck_after_s: float = Field(
        60.0, gt=0, description="A capture partition behind its end that gets no record nor fetch error for this "
        "long is logged as stuck and sets tidemark_source_stuck (alert TidemarkSourceStuck).",
    )
    reset_policy: Literal["resnapshot", "reread"] = Field(
        "resnapshot",
        description="What the dataflow does when a capture topic was recreated or truncated under it (always "
        "logged and counted): 'resnapshot' asks every capture of that source for a new snapshot and treats rows "
        "absent from it as deleted; 'reread' only reads the partition again from its start.",
    )

    @field_validator("kafka_properties", mode="before")
    @classmethod
    def _as_text_without_owned_or_literal_secrets(cls, value: object) -> object:
        """JSON numbers and booleans as librdkafka's text; guarantee-bearing names and literal secrets refused."""
        from dataflows.io.kafka_client import check_properties  # imports librdkafka: only when given

        if not isinstance(value, dict) or not value:
            return value
        text = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        check_properties(text)
        return text

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_servers or f"{self.bind_host}:{self.kafka_port}"

    @property
    def erp_connect_host(self) -> str:
        return self.erp_host or self.bind_host

    @property
    def crm_connect_host(self) -> str:
        return self.crm_host or self.bind_host

    @property
    def home_dir(self) -> Path:
        return self.home.resolve()
