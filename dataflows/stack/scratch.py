"""Throw-away stacks for tests, benchmarks and the soak run: a private home, free ports, torn down and
removed afterwards. Every service runs as a local process (no Docker engine on these machines)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataflows.settings import Settings
from dataflows.stack.local import LocalStack, read_capture_status
from dataflows.stack.processes import free_port


def new_home(prefix: str = "tidemark-scratch-") -> Path:
    # Not pytest's tmp_path: it is mode 0700 under /tmp/pytest-of-root, which the `postgres` and
    # `mysql` users the databases run as cannot traverse.
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(home, 0o755)
    return home


def make_settings(home: Path, **overrides: object) -> Settings:
    """Settings for a stack in `home` whose listeners take free ports, so it runs beside any other.

    Scratch stacks keep the broker in memory unless asked (`broker_storage="s3"`): most tests are about
    the pipeline, not the broker's durability, and memory is faster. The tests of `up`/`down` and of
    broker kills run the durable broker `tidemark up` starts by default. Likewise no supervisor unless
    asked (`supervise=True`): tests that kill processes restart them on their own schedule."""
    values: dict[str, object] = {
        "home": home,
        "broker_storage": "memory",
        "supervise": False,  # tests that kill processes restart them themselves, unless a test asks
        "erp_port": free_port(),
        "crm_port": free_port(),
        "kafka_port": free_port(),
        "broker_store_port": free_port(),
        "metrics_port": free_port(),
        "prometheus_port": free_port(),
        "cluster_port": free_port(),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def wait_capture_running(stack: LocalStack, source: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_capture_status(stack.capture_state_dir(source))
        if status.get("state") == "running":
            return
        if status.get("state") == "failed":
            msg = f"capture {source} failed: {status.get('last_error')}"
            raise RuntimeError(msg)
        time.sleep(0.2)
    msg = f"capture {source} not running after {timeout}s"
    raise TimeoutError(msg)


@contextmanager
def scratch_stack(prefix: str, *, capture: bool = True, dataflow: bool = True, **overrides: object) -> Iterator[LocalStack]:
    """A whole stack as `tidemark up` starts it (captures running unless `capture=False`)."""
    home = new_home(prefix)
    stack = LocalStack(make_settings(home, **overrides))
    try:
        stack.up(capture=capture, dataflow=dataflow, echo=lambda _l: None)
        if capture:
            for source in stack.connectors():
                wait_capture_running(stack, source)
        yield stack
    finally:
        stack.down(echo=lambda _l: None)  # every recorded process, extra dataflow processes too
        shutil.rmtree(home, ignore_errors=True)
