"""Process memory: how much is resident, and handing freed heap back to the OS."""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path
from typing import Any


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process (VmRSS; VmHWM for its peak), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def return_free_memory() -> None:
    """Hand freed heap back to the OS (glibc's malloc_trim; nothing elsewhere). CPython keeps freed
    arenas resident otherwise: after a backlog, 20,000 customers measured 1,348 MiB resident at rest
    in the dataflow without it, 464 MiB with it."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
