"""Settings a user sets in the environment reach the dataflow's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflows.runtime import flow_config
from dataflows.settings import Settings
from dataflows.stack.local import LocalStack


def test_warm_customers_is_set_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEMARK_HOME", str(tmp_path))
    monkeypatch.setenv("TIDEMARK_WARM_CUSTOMERS", "3")
    assert flow_config(LocalStack(Settings())).warm_customers == 3
    monkeypatch.setenv("TIDEMARK_WARM_CUSTOMERS", "-1")
    with pytest.raises(ValueError, match="warm_customers"):
        Settings()
