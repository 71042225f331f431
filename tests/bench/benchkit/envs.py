"""Runtimes for the drivers: the project venv for pgjobs, .bench/ for the peers, Redis for BullMQ.

Peers never touch the project's venv: `.bench/venv` (pgqueuer, procrastinate, their drivers'
psycopg/asyncpg) and `.bench/node` (bullmq, ioredis, pg) are created on first use with the
ordinary clients, pinned to the versions the issue measured. A runtime that cannot be had
(no node, pip refused, no redis-server) makes that peer `Unavailable`, with one line of reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BENCH_DIR = ROOT / ".bench"
DRIVERS = Path(__file__).resolve().parents[1] / "drivers"
PY_PEERS = ("pgqueuer==1.6.*", "procrastinate==3.10.*", "psycopg[binary,pool]>=3.2", "asyncpg>=0.29")
NODE_PEERS = ("bullmq@6", "ioredis@5", "pg@8")


class Unavailable(Exception):
    """This system's runtime is missing; the message is the one line the report prints."""


@dataclass
class Runtime:
    command: list[str]  # interpreter + driver script
    env: dict[str, str]
    versions: dict[str, str]


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    with log.open("a") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise Unavailable(f"`{' '.join(cmd[:4])} …` failed (exit {proc.returncode}); see {log}")


def pgjobs_runtime() -> Runtime:
    env = os.environ | {"PYTHONPATH": f"{ROOT}{os.pathsep}{DRIVERS}"}
    return Runtime([sys.executable, str(DRIVERS / "pgjobs_driver.py")], env, {"pgjobs": "working tree"})


def floor_runtime() -> Runtime:
    """The wake-up floor (raw psycopg, no queue) runs in the project's venv too."""
    import psycopg

    env = os.environ | {"PYTHONPATH": str(DRIVERS)}
    return Runtime([sys.executable, str(DRIVERS / "floor_driver.py")], env, {"psycopg": psycopg.__version__})


def python_peers(say) -> tuple[Path, dict[str, str]]:
    """The bench venv's interpreter (created and filled on first use) and the peers' versions."""
    venv = BENCH_DIR / "venv"
    python = venv / "bin" / "python"
    stamp = venv / "bench-requirements.txt"
    wanted = "\n".join(PY_PEERS)
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        say(f"setting up {venv} (pip install {' '.join(PY_PEERS[:2])} …)")
        BENCH_DIR.mkdir(exist_ok=True)
        log = BENCH_DIR / "setup.log"
        base = shutil.which("python3.11") or sys.executable
        _run([base, "-m", "venv", "--clear", str(venv)], log)
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PY_PEERS], log)
        stamp.write_text(wanted)
    out = subprocess.run([str(python), "-c", "import json, importlib.metadata as m; print(json.dumps("
                          "{p: m.version(p) for p in ('pgqueuer', 'procrastinate', 'asyncpg', 'psycopg')}))"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise Unavailable(f"{venv} is broken: {out.stderr.strip().splitlines()[-1:]}")
    return python, json.loads(out.stdout)


def python_peer_runtime(system: str, say) -> Runtime:
    python, versions = python_peers(say)
    env = os.environ | {"PYTHONPATH": str(DRIVERS)}
    keep = ("asyncpg",) if system == "pgqueuer" else ("psycopg",)
    return Runtime([str(python), str(DRIVERS / f"{system}_driver.py")], env,
                   {system: versions[system]} | {k: versions[k] for k in keep})


def node_runtime(say) -> Runtime:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise Unavailable("node/npm not found on PATH")
    home = BENCH_DIR / "node"
    if not all((home / "node_modules" / name / "package.json").exists() for name in ("bullmq", "ioredis", "pg")):
        say(f"setting up {home} (npm install {' '.join(NODE_PEERS)})")
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text('{"name": "pgjobs-bench-peers", "private": true}\n')
        _run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *NODE_PEERS], BENCH_DIR / "setup.log",
             cwd=home)
    version = json.loads((home / "node_modules" / "bullmq" / "package.json").read_text())["version"]
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    return Runtime([node, str(DRIVERS / "bullmq_driver.mjs")], os.environ | {"BENCH_NODE_DIR": str(home)},
                   {"bullmq": version, "node": node_version})


def redis_command(host: str, port: int, *args: str, timeout: float = 1.0):
    """One command in RESP on a fresh socket (the harness needs PING, INFO and CONFIG GET only)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload.encode())
        with sock.makefile("rb") as reply:
            return _read_reply(reply)


def _read_reply(reply):
    line = reply.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode(errors="replace")
    if kind == b"+":
        return rest
    if kind == b"-":
        raise OSError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        return None if int(rest) < 0 else reply.read(int(rest) + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        return [_read_reply(reply) for _ in range(int(rest))]
    raise OSError(f"unexpected Redis reply {line[:40]!r}")


class Redis:
    """The machine's Redis at 127.0.0.1:6379, or one we start (and stop) when none answers.

    durable=True: always a redis-server of our own, on a free port, with the append-only file
    fsynced on every write (appendfsync always): BullMQ at the durability a committed PostgreSQL
    row has, for the wake-up comparison beside the Redis the app ran on."""

    def __init__(self, say, *, durable: bool = False) -> None:
        self.host, self.port, self.proc, self.say, self.durable = "127.0.0.1", 6379, None, say, durable

    def __enter__(self) -> "Redis":
        if self.durable or not self._answers():
            server = shutil.which("redis-server")
            if not server:
                raise Unavailable("no Redis answers at 127.0.0.1:6379 and redis-server is not installed")
            data = BENCH_DIR / ("redis-durable" if self.durable else "redis")
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)
            args = [server, "--bind", self.host, "--dir", str(data)]
            if self.durable:
                self.port = _free_port()
                args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            else:
                self.say("no Redis at 127.0.0.1:6379: starting redis-server for the run")
            self.proc = subprocess.Popen(args + ["--port", str(self.port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while not self._answers():
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.__exit__()
                    raise Unavailable("redis-server did not start")
                time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def _answers(self) -> bool:
        try:
            return redis_command(self.host, self.port, "PING") == "PONG"
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def describe(self) -> dict[str, str]:
        info = redis_command(self.host, self.port, "INFO", "server")
        version = next((line.split(":", 1)[1] for line in info.splitlines() if line.startswith("redis_version:")), "?")
        config = lambda key: redis_command(self.host, self.port, "CONFIG", "GET", key)[-1]  # noqa: E731
        return {"redis": version, "started_by_bench": str(self.proc is not None).lower(),
                "appendonly": config("appendonly"), "appendfsync": config("appendfsync"),
                "save": config("save") or "''"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pgbench_path() -> str:
    for candidate in (shutil.which("pgbench"), "/usr/lib/postgresql/15/bin/pgbench"):
        if candidate and Path(candidate).exists():
            return candidate
    raise Unavailable("pgbench not found (PATH or /usr/lib/postgresql/15/bin)")
