"""`pgjobs worker --metrics-port`: a real worker process serves /metrics, /healthz and /readyz."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _samples(base: str) -> dict[tuple[str, tuple], float]:
    status, text = _get(base + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _endpoint(proc) -> str | None:
    match = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", proc.stderr)
    return match and match.group(1)


def test_a_worker_serves_metrics_health_and_readiness(cli, fresh_dsn, sql, wait_for):
    env = cli.env(PGJOBS_LOG_FORMAT="json")
    ids = [cli.json("enqueue", "noop", "--payload", json.dumps({"sleep_ms": 2}), env=env)["id"] for _ in range(5)]
    worker = cli.start("worker", "--metrics-port", "0", "--concurrency", "2", env=env)
    try:
        base = wait_for(lambda: _endpoint(worker), 30, "the metrics endpoint's log line")

        finished = ("pgjobs_jobs_finished_total", (("kind", "noop"), ("outcome", "complete")))
        samples = wait_for(lambda: (s := _samples(base)).get(finished) == 5 and s, 30, "5 finished noop jobs")
        assert samples[("pgjobs_jobs_claimed_total", (("kind", "noop"),))] == 5
        assert samples[("pgjobs_attempt_duration_seconds_count", (("kind", "noop"),))] == 5
        assert samples[("pgjobs_group_commit_size_sum", ())] == 5
        assert samples[("pgjobs_listener_reconnects_total", ())] == 0
        # The only worker samples the queue's depth (it holds the sampler lock): nothing left.
        assert samples[("pgjobs_queue_sampler", ())] == 1
        assert sql(fresh_dsn, "SELECT DISTINCT state::text FROM pgjobs.jobs WHERE id = ANY(%s)", (ids,)) == [
            ("succeeded",)]

        assert _get(base + "/healthz") == (200, "ok\n")
        assert _get(base + "/readyz") == (200, "ready\n")
        assert _get(base + "/nope")[0] == 404

        # Migrations no longer current (a ledger row gone, as after a newer release's migrate
        # elsewhere would look the other way round): not ready, and the reason says what to run.
        sql(fresh_dsn, "DELETE FROM pgjobs.migrations WHERE version = (SELECT max(version) FROM pgjobs.migrations)")
        status, text = _get(base + "/readyz")
        assert status == 503 and "pgjobs migrate" in text, text
    finally:
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.stderr[-2000:]

    # Every stderr line is JSON (psycopg's own warnings included), with a start and a stop line.
    lines = [json.loads(line) for line in worker.stderr.splitlines() if line.strip()]
    started = next(line for line in lines if line["msg"] == "worker started")
    assert started["kinds"] == "noop" and started["concurrency"] == 2 and started["version"]
    assert "password" not in started["database"]
    assert any(line["msg"] == "worker stopped" for line in lines)


def test_metrics_port_without_a_free_port_is_one_line_and_exit_2(cli, fresh_dsn):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = cli("worker", "--burst", "--metrics-port", str(taken.getsockname()[1]), check=False)
    assert result.returncode == 2
    assert "cannot serve metrics on 127.0.0.1:" in result.stderr and "Traceback" not in result.stderr
