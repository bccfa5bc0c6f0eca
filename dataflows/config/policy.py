"""The governance policy as configured: defaults, overridden by the policy file, owners from the connectors."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dataflows.config.connectors import ConnectorConfig
from dataflows.config.yaml_lines import load_yaml
from dataflows.core.policy import Policy


def build_policy(connectors: Iterable[ConnectorConfig], policy_file: Path | None = None) -> Policy:
    """Defaults, overridden by `policy_file`, with owners taken from the connector files."""
    data = load_yaml(policy_file).data if policy_file else {}
    configs = list(connectors)
    owners: dict[str, list[str]] = {}
    for config in configs:
        for field in config.owns:
            owners.setdefault(field, [])
            if config.system not in owners[field]:
                owners[field].append(config.system)
    via = sorted({(c.name, m.customer.via) for c in configs for m in c.tables.values() if m.customer.via})
    return Policy.model_validate({**(data or {}), "owners": {f: sorted(s) for f, s in owners.items()},
                                  "via_tables": via})  # fmt: skip
