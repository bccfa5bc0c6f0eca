"""Start, find and stop the processes of the local stack by pid file, never by name."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    """What `up` remembers about a process it started."""

    name: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: guards against pid reuse
    argv: list[str]
    log: str
    endpoint: dict[str, str] = field(default_factory=dict)
    log_offset: int = 0  # where this run's output starts in `log`: status reads errors of this run only
    config_hash: str = ""  # of the file the process was started with (a connector file), to notice edits


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(record: ProcessRecord) -> bool:
    """True only when the recorded process itself is still running (not a zombie, not a reused pid)."""
    return _start_ticks(record.pid) == record.start_ticks


def unreachable_ancestor(path: Path, user: str) -> Path | None:
    """The first directory on the way to `path` that `user` may not enter (no search permission), or None."""
    import grp
    import pwd

    entry = pwd.getpwnam(user)
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None  # not created yet: `up` creates it enterable
        if entry.pw_uid == 0:
            continue
        if st.st_uid == entry.pw_uid:
            allowed = st.st_mode & 0o100
        elif st.st_gid in gids:
            allowed = st.st_mode & 0o010
        else:
            allowed = st.st_mode & 0o001
        if not allowed:
            return directory
    return None


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700: logs, offsets and snapshots hold customer data."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


class ProcessTable:
    """Pid files of one stack, under `<home>/run`."""

    def __init__(self, home: Path) -> None:
        self.run_dir = home / "run"
        self.log_dir = home / "logs"

    def path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def get(self, name: str) -> ProcessRecord | None:
        try:
            data = json.loads(self.path(name).read_text())
        except (OSError, ValueError):
            return None
        return ProcessRecord(**data)

    def running(self, name: str) -> ProcessRecord | None:
        record = self.get(name)
        return record if record is not None and is_alive(record) else None

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.run_dir.glob("*.json")) if self.run_dir.exists() else []

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
        endpoint: dict[str, str] | None = None,
        config_hash: str = "",
    ) -> ProcessRecord:
        """Start a detached process logging to `<home>/logs/<name>.log` (0600) and record it."""
        private_dir(self.run_dir)
        private_dir(self.log_dir)
        log_path = self.log_dir / f"{name}.log"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "ab") as log:
            offset = log.seek(0, os.SEEK_END)
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                user=user,
                start_new_session=True,  # a Ctrl-C in the shell that ran `up` must not stop the stack
                umask=0o077,  # offsets, schema history, snapshots, logs, sockets: private to the owner
            )
        ticks = None
        for _ in range(50):
            ticks = _start_ticks(proc.pid)
            if ticks is not None:
                break
            time.sleep(0.01)
        record = ProcessRecord(name, proc.pid, ticks or -1, argv, str(log_path), endpoint or {}, offset, config_hash)
        write_private(self.path(name), json.dumps(asdict(record), indent=2))
        return record

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
        """Stop a recorded process; SIGKILL after `timeout`. True if it was running."""
        return name in self.stop_together([name], sig=sig, timeout=timeout)

    def stop_together(self, names: list[str], *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> set[str]:
        """Signal every recorded process of `names` at once, then wait for each (SIGKILL after `timeout`);
        returns those that were running. The processes of one cluster stop together: one that outlives its
        peer by more than a moment finds their connection gone and dies of that instead of the stop."""
        records = {name: record for name in names if (record := self.get(name)) is not None}
        running = {name for name, record in records.items() if is_alive(record)}
        for name in running:
            os.kill(records[name].pid, sig)
        deadline = time.monotonic() + timeout
        for name, record in records.items():
            if name in running:
                _await_exit(record, deadline)
            _reap(record.pid)
            self.path(name).unlink(missing_ok=True)
        return running


def _await_exit(record: ProcessRecord, deadline: float) -> None:
    """Wait for a signalled process until `deadline`, then SIGKILL it and wait until it is gone."""
    while is_alive(record) and time.monotonic() < deadline:
        _reap(record.pid)
        time.sleep(0.05)
    if is_alive(record):
        os.kill(record.pid, signal.SIGKILL)
        while is_alive(record):
            _reap(record.pid)
            time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect a child we started ourselves (tests run the stack as children of pytest)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


PORT_RELEASE_S = 5.0  # see refuse_taken_port


class StartupError(RuntimeError):
    """A local component did not start; the message says why and what to do."""


def exited_during_start(record: ProcessRecord) -> StartupError:
    """The error for a process that died before it served, pointing at its log."""
    return StartupError(f"{record.name} exited during start-up; see {record.log}")


def refuse_taken_port(name: str, host: str, port: int, setting: str, release_s: float = PORT_RELEASE_S) -> None:
    """Before `name` starts listening: a port that still accepts connections after `release_s` is another
    process's, which `wait_for_port` could not tell from ours (and ours would fail to bind). The wait is
    for our own process just killed: its main thread counts as exited (a zombie) while its other threads
    still hold its sockets, for a few milliseconds."""
    deadline = time.monotonic() + release_s
    while port_open(host, port):
        if time.monotonic() > deadline:
            msg = (f"{name} cannot listen on {host}:{port}: another process has listened there for "
                   f"{release_s:.0f}s. Stop that process, or give {name} a free port: "
                   f"TIDEMARK_{setting.upper()}=<port>")  # fmt: skip
            raise StartupError(msg)
        time.sleep(0.05)


def wait_for_port(host: str, port: int, timeout: float, record: ProcessRecord | None = None) -> None:
    """Wait until a TCP port accepts connections; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if record is not None and not is_alive(record):
            raise exited_during_start(record)
        time.sleep(0.1)
    msg = f"{host}:{port} did not open within {timeout:.0f}s" + (f"; see {record.log}" if record else "")
    raise StartupError(msg)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, from below Linux's ephemeral range (32768-60999): a port the kernel hands to
    outgoing connections may be taken by one before the listener that was promised it starts."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    msg = "no free port found in 20000-32000"
    raise RuntimeError(msg)
