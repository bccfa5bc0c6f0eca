"""docker-compose.yml cannot run here (no Docker engine): check that it is consistent instead."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from dataflows.config.connectors import connector_files, load_connector
from dataflows.config.secrets import REFERENCE
from dataflows.settings import project_root

ROOT = project_root()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_image_is_pinned() -> None:
    for name, service in SERVICES.items():
        image = service.get("image")
        assert image, f"{name} has no image"
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


def test_dependencies_and_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for dep in service.get("depends_on", {}):
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()


def test_published_ports_are_loopback_and_match_local_defaults() -> None:
    published = {}
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            host, host_port, _container = port.split(":")
            assert host == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published[name] = int(host_port)
    assert published["erp-db"] == 15432 and published["crm-db"] == 13306 and published["kafka"] == 19092


def test_connect_registers_the_connector_files_and_can_resolve_their_references() -> None:
    register = SERVICES["connect-register"]
    assert register["command"][:3] == ["tidemark", "sources", "register"]
    assert "connect" in register["depends_on"]
    connect_env = SERVICES["connect"]["environment"]
    assert connect_env["CONNECT_CONFIG_PROVIDERS"] == "env,file"
    for path in connector_files(ROOT / "connectors"):
        config = load_connector(path)
        for value in config.debezium.values():
            for kind, name in REFERENCE.findall(str(value)):
                if kind == "env":
                    assert name in connect_env, f"{path.name} references {name}, which Connect does not set"


def test_databases_load_the_same_schema_files_as_the_local_stack() -> None:
    assert "./infra/erp/schema.sql:/schema/erp-schema.sql:ro" in SERVICES["erp-db"]["volumes"]
    assert "./infra/crm/schema.sql:/schema/crm-schema.sql:ro" in SERVICES["crm-db"]["volumes"]
    assert "wal_level=logical" in SERVICES["erp-db"]["command"]
    assert "--binlog-row-image=FULL" in SERVICES["crm-db"]["command"]


def test_observability_is_wired() -> None:
    dataflow = SERVICES["dataflow"]
    assert dataflow["command"] == ["tidemark", "run"]
    prometheus = yaml.safe_load((ROOT / "infra/prometheus/prometheus.compose.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert f"dataflow:{dataflow['environment']['TIDEMARK_METRICS_PORT']}" in targets
    assert "./infra/prometheus/rules:/etc/prometheus/rules:ro" in SERVICES["prometheus"]["volumes"]
    assert "./infra/grafana/dashboards:/var/lib/grafana/dashboards:ro" in SERVICES["grafana"]["volumes"]
    assert all(Path(ROOT / v.split(":")[0]).exists() for s in SERVICES.values() for v in s.get("volumes", [])
               if v.startswith("./"))  # fmt: skip
