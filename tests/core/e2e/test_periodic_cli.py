"""Periodic jobs through the real CLI: three `pgjobs worker` processes on a per-second schedule
enqueue exactly one job per slot; a restart after a gap catches up once; `pgjobs schedules`; a bad
cron is one line at load."""

import os
import signal
from datetime import datetime, timedelta

import pytest

TICKER = '''
from pgjobs.app import App

app = App("ticker")


@app.periodic("* * * * * *", name="every_second", payload={"note": "tick"})
@app.task("tick", queue="ticks")
async def tick(note: str) -> None:
    pass
'''

BAD_CRON = '''
from pgjobs.app import App

app = App("bad")


@app.periodic("61 * * * *", name="nightly")
@app.task("sweep")
async def sweep() -> None:
    pass
'''


@pytest.fixture
def app_dir(tmp_path, monkeypatch):
    """A folder on the subprocesses' PYTHONPATH for app modules written by the test."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    return tmp_path


def _slots(sql, dsn) -> dict[datetime, tuple[int, str]]:
    """Each slot the ticks were enqueued for (from the dedupe key naming it) -> (jobs, states)."""
    rows = sql(dsn, "SELECT split_part(dedupe_key, ':every_second:', 2), count(*), string_agg(state::text, ',')"
                    " FROM pgjobs.jobs WHERE kind = 'tick' GROUP BY 1")
    return {datetime.fromisoformat(slot.replace("Z", "+00:00")): (n, states) for slot, n, states in rows}


def _stop(workers) -> None:
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(30) == 0, worker.stderr


def _consecutive(slots) -> bool:
    return all(b - a == timedelta(seconds=1) for a, b in zip(slots, slots[1:]))


@pytest.mark.slow
def test_three_workers_enqueue_exactly_one_job_per_second_and_a_restart_catches_up_once(
        make_cli, fresh_dsn, sql, app_dir, wait_for):
    (app_dir / "ticker_app.py").write_text(TICKER)
    ticker = make_cli(fresh_dsn, "ticker_app:app")
    workers = [ticker.start("worker") for _ in range(3)]
    # Ten seconds of slots (the workload: slots have to pass on the clock), then a graceful stop.
    wait_for(lambda: len(_slots(sql, fresh_dsn)) >= 11, 60, "eleven per-second slots")
    stop_began = sql(fresh_dsn, "SELECT now()")[0][0]
    _stop(workers)

    found = _slots(sql, fresh_dsn)
    slots = sorted(found)
    assert len(slots) >= 11
    assert {n for n, _ in found.values()} == {1}, found  # no slot twice, across the three processes
    assert _consecutive(slots), slots  # and none skipped while workers ran
    # every slot's job ran, but one enqueued just as the stop began may not have (a stopping worker
    # claims nothing new; on a loaded machine a late tick enqueues two slots at once): it is then
    # still queued, never lost or run twice
    rows = sql(fresh_dsn, "SELECT split_part(dedupe_key, ':every_second:', 2), created_at FROM pgjobs.jobs"
                          " WHERE kind = 'tick'")
    late = {datetime.fromisoformat(slot.replace("Z", "+00:00")) for slot, created_at in rows
            if created_at > stop_began - timedelta(seconds=2)}
    assert len(slots) - len(late) >= 8, (found, stop_began)  # 11+ slots a second apart, 2 s of them late
    assert {found[s][1] for s in slots if s not in late} == {"succeeded"}, (found, stop_began)
    assert {found[s][1] for s in late} <= {"succeeded", "queued"}, (found, stop_began)
    enqueued_by = [sum(e.get("msg") == "periodic job enqueued" for e in w.logs()) for w in workers]
    assert sum(enqueued_by) == len(slots)
    (last_slot, last_job_id) = sql(fresh_dsn, "SELECT last_slot, last_job_id FROM pgjobs.schedules")[0]
    assert last_slot == slots[-1]
    assert sql(fresh_dsn, "SELECT dedupe_key FROM pgjobs.jobs WHERE id = %s", (last_job_id,))[0][0].endswith(
        slots[-1].strftime("%Y-%m-%dT%H:%M:%SZ"))

    # No worker for a few slots, then one starts: of the slots missed, only one is enqueued.
    wait_for(lambda: sql(fresh_dsn, "SELECT clock_timestamp() > %s + interval '3.5 seconds'", (last_slot,))[0][0],
             30, "three slots to pass with no worker")
    restarted = ticker.start("worker")
    wait_for(lambda: len(_slots(sql, fresh_dsn)) >= len(slots) + 2, 30, "the restarted worker's slots")
    _stop([restarted])
    after = sorted(set(_slots(sql, fresh_dsn)) - set(slots))
    assert after[0] - last_slot >= timedelta(seconds=3)  # the missed slots were not replayed one by one
    assert _consecutive(after), after
    assert {n for n, _ in _slots(sql, fresh_dsn).values()} == {1}

    listed = ticker.json("schedules")
    assert [(s["name"], s["cron"], s["kind"], s["queue"]) for s in listed] == [
        ("every_second", "* * * * * *", "tick", "ticks")]
    assert datetime.fromisoformat(listed[0]["last_slot"]) == after[-1]
    assert datetime.fromisoformat(listed[0]["next_run"]) > after[-1]


def test_a_bad_cron_fails_when_the_app_loads_in_one_line_naming_the_schedule(make_cli, fresh_dsn, app_dir):
    (app_dir / "bad_cron_app.py").write_text(BAD_CRON)
    ran = make_cli(fresh_dsn, "bad_cron_app:app")("schedules", check=False)
    assert ran.returncode == 2
    assert ran.stderr.strip() == "pgjobs: error: periodic job 'nightly': invalid cron '61 * * * *'"


def test_schedules_of_an_app_without_any(cli):
    assert cli.json("schedules") == []
    assert "0 periodic job(s)" in cli("schedules").stdout
