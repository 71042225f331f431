"""Helpers for end-to-end tests: the real `pgjobs` CLI in subprocesses, against a real PostgreSQL.

`cli` runs commands on the test's fresh database (`make_cli(dsn)` on any other); `procs` starts
long-running processes and makes sure none outlives the test; `wait_for` polls a condition with a
deadline (tests never sleep to synchronise); `sql` runs one statement on a database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import psycopg
import pytest

PGJOBS = [sys.executable, "-m", "pgjobs"]


def _json_lines(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"a log line is not JSON: {line!r}\n--- stderr ---\n{text}")
    return entries


STACKS_GRACE = 2.0  # seconds a hung CLI gets to log its tasks' stacks before it is killed


def _stacks_then_kill(popen: subprocess.Popen) -> str:
    """A CLI past its deadline: SIGUSR1 (a worker logs what each task awaits: pgjobs.stacks), then
    SIGKILL; returns all it wrote to stderr, so the failure names where it hung."""
    popen.send_signal(signal.SIGUSR1)  # it ends a command that does not handle it
    try:
        return popen.communicate(timeout=STACKS_GRACE)[1]  # retried after a timeout: nothing is lost
    except subprocess.TimeoutExpired:
        popen.kill()
        return popen.communicate()[1]


class _Logs:
    stderr: str

    def logs(self) -> list[dict[str, Any]]:
        """The structured log lines on stderr (PGJOBS_LOG_FORMAT=json); fails on any other line."""
        return _json_lines(self.stderr)

    def outcomes(self) -> list[dict[str, Any]]:
        """The worker's one-line-per-outcome records."""
        return [entry for entry in self.logs() if entry.get("msg") == "outcome"]


@dataclass
class Ran(_Logs):
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Proc(_Logs):
    """A running process; threads collect its output, so a chatty worker never blocks on a pipe."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._err: list[str] = []
        self._out: list[str] = []
        self._readers = [threading.Thread(target=self._collect, args=(stream, into), daemon=True)
                         for stream, into in ((self.popen.stderr, self._err), (self.popen.stdout, self._out))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test (showing stderr) if the process is still running at the deadline."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGUSR1)  # a worker logs what each task awaits (pgjobs.stacks)
            try:
                self.popen.wait(timeout=STACKS_GRACE)  # SIGUSR1 ends a process that does not handle it
            except subprocess.TimeoutExpired:
                pass
            pytest.fail(f"{self.argv} still running after {timeout}s\n--- stderr ---\n{self.stderr}")
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.popen.stdout, self.popen.stderr):
            stream.close()


class Procs:
    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, argv: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(argv, env)
        self.started.append(proc)
        return proc


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Start processes; one still running when the test ends is killed, and the test errors."""
    tracker = Procs()
    yield tracker
    leaked = [p.argv for p in tracker.started if p.popen.poll() is None]
    for proc in tracker.started:
        proc.kill()
    assert not leaked, f"the test left processes running: {leaked}"


class Cli:
    def __init__(self, dsn: str, procs: Procs, app: str | None = None) -> None:
        self.dsn = dsn
        self._procs = procs
        self.app = app  # PGJOBS_APP for every command; None: pgjobs' built-in app

    def env(self, **settings: str) -> dict[str, str]:
        """The caller's environment minus its own PGJOBS_* knobs, plus this database and `settings`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_") and k != "DATABASE_URL"}
        app = {"PGJOBS_APP": self.app} if self.app else {}
        return env | {"PGJOBS_DSN": self.dsn, "PGJOBS_LOG_FORMAT": "json"} | app | settings

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60,
                 check: bool = True) -> Ran:
        """Run `pgjobs ARGS` to completion; with `check`, a non-zero exit fails the test."""
        with subprocess.Popen([*PGJOBS, *args], env=env or self.env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as popen:
            try:
                stdout, stderr = popen.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                stderr = _stacks_then_kill(popen)
                pytest.fail(f"pgjobs {' '.join(args)} still running after {timeout}s\n--- stderr ---\n{stderr}")
        ran = Ran(args, popen.returncode, stdout, stderr)
        if check and ran.returncode != 0:
            pytest.fail(f"pgjobs {' '.join(args)} exited {ran.returncode}\n--- stdout ---\n{ran.stdout}\n"
                        f"--- stderr ---\n{ran.stderr}")
        return ran

    def json(self, *args: str, **kwargs: Any) -> Any:
        """Run `pgjobs ARGS --json` and parse what it printed."""
        return json.loads(self(*args, "--json", **kwargs).stdout)

    def start(self, *args: str, env: dict[str, str] | None = None) -> Proc:
        """Start `pgjobs ARGS` in the background (killed at the end of the test if still running)."""
        return self._procs.start([*PGJOBS, *args], env or self.env())


@pytest.fixture
def make_cli(procs: Procs) -> Callable[..., Cli]:
    return lambda dsn, app=None: Cli(dsn, procs, app)


@pytest.fixture
def cli(make_cli: Callable[[str], Cli], fresh_dsn: str) -> Cli:
    return make_cli(fresh_dsn)


def run_sql(dsn: str, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple]:
    """One statement in its own committed transaction; its rows, or [] when it returns none."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def sql() -> Callable[..., list[tuple]]:
    return run_sql


def poll(predicate: Callable[[], Any], timeout: float, what: str, *, every: float = 0.025) -> Any:
    """Call `predicate` every `every` s until it returns something truthy, and return that; fail
    naming `what` (and the last value seen) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        time.sleep(every)  # the polling cadence, not a guess at how long something takes


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    return poll
