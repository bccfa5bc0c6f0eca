"""A private PostgreSQL cluster for the local ERP: logical WAL, loopback only, its own socket."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from dataflows.settings import project_root
from dataflows.stack.processes import ProcessRecord, ProcessTable, wait_for_port

CAPTURE_ROLE = "tidemark_capture"
OPS_ROLE = "tidemark_ops"  # owns the operational database holding customer_360


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary: Debian keeps them off PATH under /usr/lib/postgresql/N/bin."""
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True):
        if (bindir / name).exists():
            return str(bindir / name)
    found = shutil.which(name)
    if found is None:
        msg = f"PostgreSQL binary {name!r} not found: install the Debian package 'postgresql'"
        raise FileNotFoundError(msg)
    return found


def run_as() -> str | None:
    """PostgreSQL refuses to run as root: drop to the `postgres` user when we are root."""
    return "postgres" if os.geteuid() == 0 else None


@dataclass
class PostgresCluster:
    """One private cluster under `root` listening on `host:port`."""

    name: str
    root: Path
    host: str
    port: int

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        # Over the private socket (trust): bootstrap must work before any password exists.
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def url(self, user: str, dbname: str) -> str:
        """A connection URL without password, for status output."""
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb a new cluster: trust on the private socket, passwords (scram) over TCP."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        user = run_as()
        if user:
            shutil.chown(self.root, user)
            shutil.chown(self.socket_dir, user)
        subprocess.run(
            [pg_bin("initdb"), "-D", str(self.datadir), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
             "--auth-local=trust", "--auth-host=scram-sha-256"],
            check=True, user=user, capture_output=True,
        )  # fmt: skip
        conf = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "wal_level": "logical",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "fsync": "on",
        }
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write("\n# tidemark local stack\n")
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        with open(self.datadir / "pg_hba.conf", "a") as f:
            f.write(f"host replication all {self.host}/32 scram-sha-256\n")

    def start(self, table: ProcessTable, timeout: float = 30.0) -> ProcessRecord:
        # Port and socket passed on the command line too, so an overridden port wins over the conf file.
        argv = [pg_bin("postgres"), "-D", str(self.datadir), "-p", str(self.port), "-k", str(self.socket_dir)]
        record = table.spawn(self.name, argv, user=run_as(), endpoint={})
        wait_for_port(self.host, self.port, timeout, record)
        self._wait_accepting(timeout)
        return record

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_conninfo(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def bootstrap(self, dbname: str, schema_sql: Path, passwords: dict[str, str], capture_schema: str) -> None:
        """Create the database, load its schema and the least-privilege capture role."""
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(passwords["admin"])))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                    sql.Identifier(CAPTURE_ROLE), sql.Literal(passwords["capture"])
                )
            )
        with psycopg.connect(self.admin_conninfo(dbname), autocommit=True) as conn:
            conn.execute(schema_sql.read_text())
            ident = sql.Identifier(capture_schema)
            role = sql.Identifier(CAPTURE_ROLE)
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident, role))
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(ident, role))

    def grant_capture_stats(self) -> None:
        """Let the capture role read pg_stat_replication, so `down` sees how far its walsender has sent.

        Granted on every start, not only at creation, so a home made before the grant existed gets it too;
        granting a role membership twice is a notice, not an error.
        """
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(CAPTURE_ROLE)))

    def create_ops_database(self, dbname: str, password: str) -> None:
        """The operational database the dataflow writes customer_360 into, owned by its own role."""
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(OPS_ROLE), sql.Literal(password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(OPS_ROLE)))
        with psycopg.connect(self.admin_conninfo(dbname), autocommit=True) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(OPS_ROLE)))  # so the role owns the table
            conn.execute((project_root() / "infra" / "ops" / "customer_360.sql").read_text())


def erp_schema_sql() -> Path:
    return project_root() / "infra" / "erp" / "schema.sql"
