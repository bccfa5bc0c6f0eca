"""A private MariaDB instance for the local CRM: ROW binlog with full images, utf8mb4, loopback only."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql

from dataflows.settings import project_root
from dataflows.stack.processes import ProcessRecord, ProcessTable, wait_for_port

CAPTURE_USER = "tidemark_capture"
WRITEBACK_USER = "tidemark_writeback"  # may update only the write-back columns of accounts
# Debezium's MySQL connector refuses a "10.11.x-MariaDB" version string and the bundled engine has no
# MariaDB connector; announcing a 5.7-compatible version makes the MySQL connector snapshot and stream
# correctly (see shared platform notes). Local instance only: production uses Debezium's MariaDB connector.
COMPAT_VERSION = "5.7.19-MariaDB-10.11-compat"
CAPTURE_GRANTS = (
    "SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR, LOCK TABLES"
)


def mariadb_bin(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    msg = f"MariaDB binary {name!r} not found: install the Debian package 'mariadb-server'"
    raise FileNotFoundError(msg)


def run_as() -> str | None:
    return "mysql" if os.geteuid() == 0 else None


@dataclass
class MariaDBInstance:
    """One private MariaDB server under `root` listening on `host:port`."""

    name: str
    root: Path
    host: str
    port: int

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def defaults_file(self) -> Path:
        return self.root / "my.cnf"

    def url(self, user: str, dbname: str) -> str:
        return f"mysql://{user}@{self.host}:{self.port}/{dbname}"

    def initialized(self) -> bool:
        return (self.datadir / "mysql").is_dir()

    def write_config(self) -> None:
        # With --defaults-file Debian's conf.d is skipped, so the charset must be set here (latin1 otherwise).
        self.defaults_file.write_text(
            "[mariadbd]\n"
            f"datadir={self.datadir}\n"
            f"socket={self.socket}\n"
            f"pid-file={self.root / 'mariadbd.pid'}\n"
            f"port={self.port}\n"
            f"bind-address={self.host}\n"
            "skip-name-resolve\n"
            "server_id=1\n"
            f"log_bin={self.root / 'binlog' / 'mariadb-bin'}\n"
            "binlog_format=ROW\n"
            "binlog_row_image=FULL\n"
            "expire_logs_days=2\n"
            "character-set-server=utf8mb4\n"
            "collation-server=utf8mb4_unicode_ci\n"
            f"version={COMPAT_VERSION}\n"
            "innodb_buffer_pool_size=64M\n"
            "innodb_log_file_size=48M\n"
            "max_connections=200\n"
        )

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "binlog").mkdir(exist_ok=True)
        self.write_config()
        user = run_as()
        for path in (self.root, self.root / "binlog"):
            path.chmod(0o700)  # the binlog holds customer data; the socket inside is the server's alone
            if user:
                shutil.chown(path, user)
        argv = [mariadb_bin("mariadb-install-db"), f"--defaults-file={self.defaults_file}",
                "--auth-root-authentication-method=normal", "--skip-test-db"]  # fmt: skip
        if user:
            argv.append(f"--user={user}")
        subprocess.run(argv, check=True, capture_output=True)

    def start(self, table: ProcessTable, timeout: float = 60.0) -> ProcessRecord:
        self.write_config()  # ports may have been overridden since init
        argv = [mariadb_bin("mariadbd"), f"--defaults-file={self.defaults_file}"]
        if run_as():
            argv.append(f"--user={run_as()}")
        self.root.chmod(0o700)  # also for a home made before this was the rule
        record = table.spawn(self.name, argv)
        wait_for_port(self.host, self.port, timeout, record)
        self._wait_accepting(timeout)
        # mariadbd makes its socket 0777 whatever the umask: only its own user (and root) may use it.
        self.socket.chmod(0o600)
        return record

    def _socket_connect(self, password: str = "", database: str | None = None) -> pymysql.Connection:
        return pymysql.connect(unix_socket=str(self.socket), user="root", password=password,
                               database=database, autocommit=True)  # fmt: skip

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                pymysql.connect(host=self.host, port=self.port, user="nobody", connect_timeout=2)
            except pymysql.err.OperationalError as e:
                if e.args[0] == 1045:  # access denied: the server is answering
                    return
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            else:
                return

    def bootstrap(self, dbname: str, schema_sql: Path, passwords: dict[str, str]) -> None:
        """Create the database and schema, a TCP admin login and the least-privilege capture user."""
        conn = self._socket_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{dbname}` CHARACTER SET utf8mb4")
                cur.execute(f"USE `{dbname}`")
                for statement in _split_sql(schema_sql.read_text()):
                    cur.execute(statement)
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'{host}' IDENTIFIED BY %s", (passwords["admin"],))
                    cur.execute(f"ALTER USER 'root'@'{host}' IDENTIFIED BY %s", (passwords["admin"],))
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{host}' WITH GRANT OPTION")
                    cur.execute(f"CREATE USER '{CAPTURE_USER}'@'{host}' IDENTIFIED BY %s", (passwords["capture"],))
                    cur.execute(f"GRANT {CAPTURE_GRANTS} ON *.* TO '{CAPTURE_USER}'@'{host}'")
                    cur.execute(f"CREATE USER '{WRITEBACK_USER}'@'{host}' IDENTIFIED BY %s", (passwords["writeback"],))
                    cur.execute(f"GRANT SELECT, UPDATE (erp_customer_id, credit_status, lifecycle_status, tidemark_version) "
                                f"ON `{dbname}`.accounts TO '{WRITEBACK_USER}'@'{host}'")
        finally:
            conn.close()


def _split_sql(text: str) -> list[str]:
    """Split a schema file into statements (no procedures in our schema files, so ';' is enough)."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def crm_schema_sql() -> Path:
    return project_root() / "infra" / "crm" / "schema.sql"
