from __future__ import annotations

from pathlib import Path

import pytest

from dataflows.config.secrets import SecretError, is_reference_only, mask, resolve


def test_env_reference_prefers_environment_over_defaults(monkeypatch) -> None:
    monkeypatch.setenv("TM_X", "from-env")
    assert resolve("${env:TM_X}", {"TM_X": "default"}) == "from-env"
    monkeypatch.delenv("TM_X")
    assert resolve("host-${env:TM_X}", {"TM_X": "default"}) == "host-default"


def test_missing_env_reference_is_an_error(monkeypatch) -> None:
    monkeypatch.delenv("TM_MISSING", raising=False)
    with pytest.raises(SecretError, match="TM_MISSING is not set"):
        resolve("${env:TM_MISSING}")


def test_file_reference_reads_a_properties_file(tmp_path: Path) -> None:
    f = tmp_path / "s.properties"
    f.write_text("# comment\ndb.password = p@ss=word\n")
    assert resolve(f"${{file:{f}:db.password}}") == "p@ss=word"
    with pytest.raises(SecretError, match="key 'nope' not found"):
        resolve(f"${{file:{f}:nope}}")
    with pytest.raises(SecretError, match="cannot read secrets file"):
        resolve(f"${{file:{tmp_path / 'absent'}:k}}")


def test_reference_only_and_mask() -> None:
    assert is_reference_only("${env:A}") and not is_reference_only("x${env:A}")
    assert mask("database.password", "hunter2") == "********"
    assert mask("database.password", "${env:A}") == "${env:A}"
    assert mask("database.user", "bob") == "bob"
