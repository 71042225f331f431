"""Bad input, everywhere: one line on stderr naming the problem, exit code 2, no traceback, no
password, and nothing half-done. The real CLI in subprocesses, one case per hostile input.

Every case runs against one database holding a finished job, a queued job and a paused queue; after
each, the database must be exactly as it was (no job enqueued, retried, cancelled or pruned).
"""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest

from clitools import PGJOBS, Ran
from dbtools import _create_db, _drop_db

SECRET = "s3cret"
MB = 1_000_000


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    needles: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    file: bytes | None = None  # written to a file that "{FILE}" in args names
    stdin: bytes = b""


def _lines(good: int, bad: bytes) -> bytes:
    """`good` valid JSON lines, then `bad` as the next line, then one more valid line."""
    return b'{"sleep_ms": 1}\n' * good + bad + b'\n{"sleep_ms": 2}\n'


DEEP = b"[" * 100_000 + b"]" * 100_000  # a file line: as one argument it would pass Linux's 128 KiB limit

CASES = {
    # --- payloads: --payload ---------------------------------------------------------------------
    "payload-nul": Case(("enqueue", "noop", "--payload", '{"note": "a\\u0000b"}'), ("--payload", "\\u0000 (NUL)")),
    "payload-nul-in-key": Case(("enqueue", "noop", "--payload", '{"a": {"\\u0000": 1}}'), ("--payload", "NUL")),
    "payload-lone-surrogate": Case(("enqueue", "noop", "--payload", '{"s": "\\ud800"}'), ("lone surrogate",)),
    "payload-deep-nesting": Case(("enqueue", "noop", "--payload", '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"),
                                 ("--payload", "nested deeper than 100 levels")),
    "payload-nested-101-levels": Case(("enqueue", "noop", "--payload", '{"a": ' + "[" * 100 + "]" * 100 + "}"),
                                      ("--payload", "nested deeper than 100 levels")),
    "payload-nan": Case(("enqueue", "noop", "--payload", '{"x": NaN}'), ("--payload", "NaN is not JSON")),
    "payload-infinity": Case(("enqueue", "noop", "--payload", '{"x": Infinity}'), ("Infinity is not JSON",)),
    "payload-minus-infinity": Case(("enqueue", "noop", "--payload", '{"x": [-Infinity]}'), ("-Infinity is not JSON",)),
    "payload-float-overflow": Case(("enqueue", "noop", "--payload", '{"x": 1e400}'), ("1e400", "range of a double")),
    "payload-5000-digit-integer": Case(("enqueue", "noop", "--payload", '{"x": 1' + "0" * 5000 + "}"),
                                       ("integer of 5,001 digits",)),
    "payload-invalid-utf8": Case(("enqueue", "noop", "--payload", '{"x": "\udcff"}'),  # argv byte 0xff
                                 ("the value of --payload is not valid UTF-8 (byte 0xff at offset 7)",)),
    "dedupe-key-invalid-utf8": Case(("enqueue", "noop", "--dedupe-key", "k\udcfe"),
                                    ("the value of --dedupe-key is not valid UTF-8 (byte 0xfe",)),
    "payload-not-json": Case(("enqueue", "noop", "--payload", '{"sleep_ms": '), ("--payload", "not valid JSON")),
    "payload-not-an-object": Case(("enqueue", "noop", "--payload", "[1, 2]"), ("must be a JSON object, got an array",)),
    "payload-fails-the-model": Case(("enqueue", "noop", "--payload", '{"sleep_ms": "soon"}'),
                                    ("--payload", "invalid payload for noop: sleep_ms")),
    "payload-over-the-size-limit": Case(("enqueue", "noop", "--payload", json.dumps({"x": "y" * 120_000})),
                                        ("--payload", "120,009 bytes, over the 100,000-byte limit"),
                                        env={"PGJOBS_MAX_PAYLOAD_BYTES": "100000"}),
    # --- payloads: --from FILE and --from - -----------------------------------------------------------
    "from-invalid-utf8": Case(("enqueue", "noop", "--from", "{FILE}"), ("{FILE}:1", "not valid UTF-8 (byte 0xff"),
                              file=b'{"x": "caf\xff"}\n'),
    "from-nul-on-line-5000": Case(("enqueue", "noop", "--from", "{FILE}"), ("{FILE}:5000", "\\u0000 (NUL)"),
                                  file=_lines(4999, b'{"x": "\\u0000"}')),
    "from-invalid-utf8-on-line-5000": Case(("enqueue", "noop", "--from", "{FILE}"), ("{FILE}:5000", "UTF-8"),
                                           file=_lines(4999, b'{"x": "\xc3\x28"}')),
    "from-raw-nul-byte-on-line-5000": Case(("enqueue", "noop", "--from", "{FILE}"), ("{FILE}:5000", "not valid JSON"),
                                           file=_lines(4999, b'{"x": "\x00"}')),
    "from-100000-levels-on-line-2": Case(("enqueue", "noop", "--from", "{FILE}"),
                                         ("{FILE}:2", "nested deeper than 100 levels"), file=_lines(1, DEEP)),
    "from-nan-on-line-3": Case(("enqueue", "noop", "--from", "{FILE}"), ("{FILE}:3", "NaN is not JSON"),
                               file=_lines(2, b'{"x": NaN}')),
    "from-a-50-mb-line": Case(("enqueue", "noop", "--from", "{FILE}"), ("{FILE}:2", "over the 1,000,000-byte limit"),
                              file=_lines(1, b'{"x": "' + b"y" * (50 * MB) + b'"}')),
    "from-fails-the-model-on-line-3": Case(("enqueue", "noop", "--from", "{FILE}"),
                                           ("{FILE}:3", "invalid payload for noop: sleep_ms"),
                                           file=_lines(2, b'{"sleep_ms": -1}')),
    "from-stdin-a-50-mb-line": Case(("enqueue", "noop", "--from", "-"), ("stdin:1", "over the 1,000,000-byte limit"),
                                    stdin=b'{"x": "' + b"y" * (50 * MB) + b'"}\n'),
    "from-stdin-bad-line": Case(("enqueue", "noop", "--from", "-"), ("stdin:2", "not valid JSON"),
                                stdin=b'{"sleep_ms": 1}\n{"sleep_ms": \n'),
    "from-missing-file": Case(("enqueue", "noop", "--from", "/nonexistent/jobs.jsonl"), ("no such file",)),
    "from-a-directory": Case(("enqueue", "noop", "--from", "/"), ("--from /: cannot read it",)),
    "from-and-payload": Case(("enqueue", "noop", "--from", "{FILE}", "--payload", "{}"), ("not both",),
                             file=b'{"sleep_ms": 1}\n'),
    # --- enqueue options and kinds ------------------------------------------------------------------
    "priority-out-of-range": Case(("enqueue", "noop", "--priority", "99999999999"), ("--priority", "2147483647")),
    "max-attempts-zero": Case(("enqueue", "noop", "--max-attempts", "0"), ("--max-attempts",)),
    "max-attempts-out-of-range": Case(("enqueue", "noop", "--max-attempts", "99999999999"), ("--max-attempts",)),
    "empty-kind": Case(("enqueue", "", "--payload", "{}"), ("job kind must not be empty",)),
    "undeclared-kind": Case(("enqueue", "send_receipt", "--payload", "{}"),
                            ("unknown job kind 'send_receipt'", "known: noop")),
    "empty-queue": Case(("enqueue", "noop", "--queue", ""), ("--queue must not be empty",)),
    "delay-garbage": Case(("enqueue", "noop", "--delay", "soonish"), ("bad --delay 'soonish'",)),
    "delay-negative": Case(("enqueue", "noop", "--delay", "-5s"), ("bad --delay '-5s'",)),
    "delay-beyond-a-century": Case(("enqueue", "noop", "--delay", "99999999999d"), ("at most 100 years",)),
    # --- the database URL: never the password -------------------------------------------------------
    "dsn-url-bad-port": Case(("stats",), ("bad database URL", "port 'notaport' is not a number"),
                             env={"PGJOBS_DSN": f"postgresql://u:{SECRET}@localhost:notaport/db"}),
    "dsn-keywords-bad-port": Case(("enqueue", "noop"), ("bad database URL", "port 'abc'"),
                                  env={"PGJOBS_DSN": f"host=localhost password={SECRET} port=abc"}),
    "dsn-garbage": Case(("jobs", "list"), ("bad database URL", 'missing "="'), env={"PGJOBS_DSN": "garbage"}),
    "dsn-unterminated-quote": Case(("migrate",), ("bad database URL", "unterminated quoted string"),
                                   env={"PGJOBS_DSN": f"host='localhost password={SECRET}"}),
    "dsn-url-that-libpq-quotes": Case(("worker", "--burst"), ("bad database URL", "://u:***@"),
                                      env={"PGJOBS_DSN": f"postgresql://u:{SECRET}@[::1"}),
    "dsn-invalid-utf8": Case(("stats",), ("bad database URL", "not valid UTF-8"),
                             env={"PGJOBS_DSN": f"host=localhost password={SECRET}\udcff"}),
    "database-url-bad-port": Case(("stats",), ("bad database URL", "port"),
                                  env={"PGJOBS_DSN": "", "DATABASE_URL": f"postgresql://:{SECRET}@h:x/db"}),
    # --- jobs, prune ----------------------------------------------------------------------------------
    "show-missing-id": Case(("jobs", "show", "987654"), ("no job with id 987654",)),
    "show-non-integer": Case(("jobs", "show", "abc"), ("Invalid value for 'job_id'",)),
    "show-beyond-bigint": Case(("jobs", "show", "99999999999999999999"), ("no job with id 99999999999999999999",)),
    "retry-missing-id": Case(("jobs", "retry", "987654"), ("no job with id 987654",)),
    "retry-a-queued-job": Case(("jobs", "retry", "{QUEUED}"), ("still queued or running",)),
    "cancel-missing-id": Case(("jobs", "cancel", "987654"), ("no job with id 987654",)),
    "cancel-non-integer": Case(("jobs", "cancel", "1.5"), ("Invalid value for 'job_id'",)),
    "list-bogus-state": Case(("jobs", "list", "--state", "bogus"), ("unknown state 'bogus'",)),
    "list-limit-zero": Case(("jobs", "list", "--limit", "0"), ("--limit",)),
    "prune-nonsense": Case(("prune", "--older-than", "nonsense"), ("bad --older-than 'nonsense'",)),
    "prune-negative": Case(("prune", "--older-than", "-5m"), ("bad --older-than '-5m'",)),
    "prune-beyond-a-century": Case(("prune", "--older-than", "9999999999w"), ("at most 100 years",)),
    # --- queues, workers, stats -----------------------------------------------------------------------
    "pause-empty-queue": Case(("queues", "pause", ""), ("queue name must not be empty",)),
    "pause-invalid-utf8": Case(("queues", "pause", "m\udcc3"), ("argument 3 is not valid UTF-8 (byte 0xc3",)),
    "resume-empty-queue": Case(("queues", "resume", ""), ("queue name must not be empty",)),
    "workers-bad-stale-after": Case(("workers", "--stale-after", "0s"), ("must be positive",)),
    "stats-bad-stale-after": Case(("stats", "--stale-after", "forever"), ("bad --stale-after",)),
    # --- settings, commands, --app --------------------------------------------------------------------
    "setting-not-a-number": Case(("enqueue", "noop"), ("bad setting PGJOBS_LEASE_SECONDS",),
                                 env={"PGJOBS_LEASE_SECONDS": "soon"}),
    "setting-max-payload-bytes": Case(("enqueue", "noop"), ("bad setting PGJOBS_MAX_PAYLOAD_BYTES",),
                                      env={"PGJOBS_MAX_PAYLOAD_BYTES": "lots"}),
    "setting-concurrency-zero": Case(("worker", "--burst"), ("bad setting PGJOBS_CONCURRENCY",),
                                     env={"PGJOBS_CONCURRENCY": "0"}),
    "setting-lease-zero": Case(("worker", "--burst"), ("bad setting PGJOBS_LEASE_SECONDS",),
                               env={"PGJOBS_LEASE_SECONDS": "0"}),
    "setting-log-format": Case(("enqueue", "noop"), ("bad setting PGJOBS_LOG_FORMAT",),
                               env={"PGJOBS_LOG_FORMAT": "xml"}),
    "setting-log-level": Case(("worker", "--burst"), ("bad setting PGJOBS_LOG_LEVEL",),
                              env={"PGJOBS_LOG_LEVEL": "LOUD"}),
    "unknown-command": Case(("frobnicate",), ("No such command 'frobnicate'",)),
    "unknown-option": Case(("jobs", "list", "--colour"), ("No such option: --colour",)),
    "app-no-colon": Case(("--app", "nomodule", "stats"), ("--app 'nomodule'", "module:attribute")),
    "app-a-module-not-an-app": Case(("--app", "os:path", "stats"), ("--app 'os:path'", "not a pgjobs.App")),
    "app-missing-module": Case(("--app", "missing.module:x", "stats"), ("cannot import 'missing.module'",)),
    "app-missing-attribute": Case(("--app", "pgjobs.app:nothing", "stats"), ("has no attribute 'nothing'",)),
    "app-a-factory-of-something-else": Case(("--app", "os:getcwd", "stats"), ("not a pgjobs.App",)),
    "app-without-a-value": Case(("--app",), ("--app needs a value",)),
    "app-from-the-environment": Case(("stats",), ("--app 'nomodule'",), env={"PGJOBS_APP": "nomodule"}),
}


@pytest.fixture(scope="module")
def seeded_dsn(server_dsn, template_db):
    """A database with a finished job, a queued job and a paused queue, shared by every case (each
    must leave it exactly as it was)."""
    name = f"pgjobs_h_{uuid.uuid4().hex[:10]}"
    dsn = _create_db(server_dsn, name, template=template_db)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pgjobs.jobs (id, root_id, kind, payload, state, attempt, finished_at)"
                     " VALUES (1, 1, 'noop', '{}', 'succeeded', 1, now() - interval '400 days'),"
                     "        (2, 2, 'noop', '{}', 'queued', 0, NULL)")
        conn.execute("INSERT INTO pgjobs.queue_pauses (queue, paused_by) VALUES ('mail', 'test')")
    yield dsn
    _drop_db(server_dsn, name)


def _snapshot(sql, dsn: str) -> list:
    return [sql(dsn, "SELECT to_jsonb(j) FROM pgjobs.jobs j ORDER BY id"),
            sql(dsn, "SELECT to_jsonb(p) FROM pgjobs.queue_pauses p ORDER BY queue"),
            sql(dsn, "SELECT last_value FROM pgjobs.job_id_seq")]


def run(cli, args, *, env: dict[str, str] | None = None, stdin: bytes = b"", timeout: float = 60) -> Ran:
    """`pgjobs ARGS` with bytes on stdin (clitools' runner gives it none)."""
    done = subprocess.run([*PGJOBS, *args], env=env or cli.env(), input=stdin, capture_output=True,
                          timeout=timeout)
    return Ran(tuple(args), done.returncode, done.stdout.decode(errors="replace"),
               done.stderr.decode(errors="replace"))


def assert_one_line_error(ran: Ran, *needles: str) -> str:
    """Exit code 2, exactly one line on stderr holding each needle, no traceback, no password."""
    assert ran.returncode == 2, (ran.returncode, ran.stdout, ran.stderr[-3000:])
    assert "Traceback" not in ran.stdout + ran.stderr, ran.stderr[-3000:]
    assert SECRET not in ran.stdout + ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgjobs: error: "), ran.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_input_is_one_line_exit_2_and_changes_nothing(make_cli, seeded_dsn, sql, tmp_path, case):
    cli = make_cli(seeded_dsn)
    path = str(tmp_path / "jobs.jsonl")
    if case.file is not None:
        (tmp_path / "jobs.jsonl").write_bytes(case.file)

    def fill(text: str) -> str:
        return text.replace("{FILE}", path).replace("{QUEUED}", "2")

    before = _snapshot(sql, seeded_dsn)
    env = cli.env(**case.env)
    if env.get("PGJOBS_DSN") == "":  # the case sets DATABASE_URL instead
        del env["PGJOBS_DSN"]
    ran = run(cli, [fill(a) for a in case.args], env=env, stdin=case.stdin)
    assert_one_line_error(ran, *(fill(n) for n in case.needles))
    assert _snapshot(sql, seeded_dsn) == before


def test_there_are_at_least_the_33_hostile_inputs_of_the_fault_probe():
    assert len(CASES) >= 33


# --- cases that need a database of their own --------------------------------------------------------


def test_an_unreachable_database_is_one_line_and_exit_2(make_cli):
    with socket.socket() as sock:  # a port that was free a moment ago; nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cli = make_cli(f"postgresql://pgjobs:{SECRET}@127.0.0.1:{port}/pgjobs?connect_timeout=5")
    for args in (["enqueue", "noop", "--payload", "{}"], ["stats"], ["queues", "pause", "mail"], ["workers"]):
        assert_one_line_error(cli(*args, check=False, timeout=30), "cannot connect to the database", f"port {port}")


def test_an_unmigrated_database_names_pgjobs_migrate_and_is_left_alone(make_cli, empty_dsn, sql):
    cli = make_cli(empty_dsn)
    for args in (["enqueue", "noop", "--payload", "{}"], ["worker", "--burst"], ["stats"], ["queues", "list"],
                 ["workers"], ["jobs", "show", "1"]):
        assert_one_line_error(cli(*args, check=False, timeout=30), "`pgjobs migrate`")
    assert sql(empty_dsn, "SELECT to_regclass('pgjobs.jobs')") == [(None,)]  # nothing created behind our back


def test_a_file_of_good_lines_goes_in_whole_and_a_file_with_one_bad_line_not_at_all(cli, fresh_dsn, sql, tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_bytes(b"\xef\xbb\xbf" + b'{"sleep_ms": 1}\r\n' * 4999 + b'{"sleep_ms": 2}\n\n')  # BOM, CRLF
    assert cli.json("enqueue", "noop", "--from", str(good)) == {"enqueued": 5000}
    assert sql(fresh_dsn, "SELECT count(*) FROM pgjobs.jobs")[0][0] == 5000
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_lines(4999, b'{"x": "\\u0000"}'))
    assert_one_line_error(cli("enqueue", "noop", "--from", str(bad), check=False), f"{bad}:5000")
    assert sql(fresh_dsn, "SELECT count(*) FROM pgjobs.jobs")[0][0] == 5000


def test_stdin_payloads_go_in_too(cli, fresh_dsn, sql):
    ran = run(cli, ["enqueue", "noop", "--from", "-", "--json"], stdin=b'{"sleep_ms": 1}\n{"sleep_ms": 2}\n')
    assert (ran.returncode, json.loads(ran.stdout)) == (0, {"enqueued": 2}), ran.stderr
    assert sorted(sql(fresh_dsn, "SELECT payload->>'sleep_ms' FROM pgjobs.jobs")) == [("1",), ("2",)]


STORE_APP = '''
from pgjobs.app import App

app = App("ops_probe")


@app.task("store")
async def store(ctx) -> None:
    """Keeps whatever payload it is given (no model)."""
'''


def test_integers_beyond_64_bits_and_unicode_are_stored_exactly(make_cli, fresh_dsn, sql, tmp_path):
    (tmp_path / "ops_probe.py").write_text(STORE_APP)
    cli = make_cli(fresh_dsn, "ops_probe:app")
    env = cli.env(PYTHONPATH=str(tmp_path))
    payload = '{"big": 123456789012345678901234567890, "neg": -98765432109876543210, "text": "Björk 😀", "f": 0.1}'
    job = json.loads(cli("enqueue", "store", "--payload", payload, "--json", env=env).stdout)
    stored = sql(fresh_dsn, "SELECT payload::text FROM pgjobs.jobs WHERE id = %s", (job["id"],))[0][0]
    assert json.loads(stored) == {"big": 123456789012345678901234567890, "neg": -98765432109876543210,
                                  "text": "Björk 😀", "f": 0.1}
    shown = json.loads(cli("jobs", "show", str(job["id"]), "--json", env=env).stdout)
    assert shown["payload"]["big"] == 123456789012345678901234567890
