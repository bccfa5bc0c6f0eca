"""Which directory keeps a database server's user out of $TIDEMARK_HOME."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflows.stack.processes import unreachable_ancestor


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tidemark-unit-"))  # 0700, like `mktemp -d`
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_private_parent_is_named(private_tmp: Path) -> None:
    home = private_tmp / "home"
    home.mkdir()
    assert unreachable_ancestor(home, "nobody") == private_tmp  # `nobody` is neither its owner nor in its group
    private_tmp.chmod(0o711)  # enterable, not listable
    assert unreachable_ancestor(home, "nobody") is None


def test_a_home_not_created_yet_is_fine_below_an_enterable_parent(private_tmp: Path) -> None:
    private_tmp.chmod(0o755)
    assert unreachable_ancestor(private_tmp / "not" / "yet", "nobody") is None
