"""One home each: the queue's defaults (JobSpec, Worker, Settings read them) and the outcome names."""

import inspect
import re

from pgjobs.queue import Complete, Discard, HandBack, JobSpec, Retry, Snooze, Worker, defaults
from pgjobs.queue.jobs import Q
from pgjobs.settings import Settings
from pgjobs.sqlfiles import sql_dir


def test_jobspec_worker_and_settings_take_their_defaults_from_one_module(monkeypatch):
    for name in ("PGJOBS_LEASE_SECONDS", "PGJOBS_POLL_INTERVAL", "PGJOBS_SHUTDOWN_GRACE_SECONDS",
                 "PGJOBS_CONCURRENCY", "PGJOBS_HANDOFF"):
        monkeypatch.delenv(name, raising=False)
    spec = JobSpec(kind="k")
    assert (spec.max_attempts, spec.backoff_base_ms, spec.backoff_cap_ms) == (
        defaults.MAX_ATTEMPTS, defaults.BACKOFF_BASE_MS, defaults.BACKOFF_CAP_MS)
    worker = inspect.signature(Worker).parameters
    settings = Settings()
    for knob, setting, value in [("lease_seconds", "lease_seconds", defaults.LEASE_SECONDS),
                                 ("poll_interval", "poll_interval", defaults.POLL_INTERVAL),
                                 ("shutdown_grace", "shutdown_grace_seconds", defaults.SHUTDOWN_GRACE),
                                 ("concurrency", "concurrency", defaults.CONCURRENCY),
                                 ("handoff", "handoff", defaults.HANDOFF)]:
        assert worker[knob].default == value == getattr(settings, setting), knob


def test_hand_offs_can_be_switched_off_from_the_environment(monkeypatch):
    monkeypatch.setenv("PGJOBS_HANDOFF", "false")
    assert Settings().handoff is False


def test_each_outcome_carries_the_one_name_the_sql_knows_it_by():
    outcomes = [Complete(), Retry("e"), Snooze(5), Discard("d"), HandBack("h")]
    assert [o.name for o in outcomes] == ["complete", "retry", "snooze", "discard", "hand_back"]
    # Every name the function behind apply_outcomes (queue migration 0013; its current text in the
    # schema snapshot) compares an outcome with: `o.outcome = 'x'` or `e.outcome IN ('x', 'y')`.
    assert "pgjobs.apply_outcomes(" in Q["apply_outcomes"]
    schema = (sql_dir() / "queue" / "schema.sql").read_text(encoding="utf-8")
    body = schema[schema.index("CREATE FUNCTION pgjobs.apply_outcomes("):]
    body = body[:body.index("\n$$;")]
    compared = re.findall(r"\b[eo]\.outcome (?:= '\w+'|IN \([^)]*\))", body)
    sql_names = {name for text in compared for name in re.findall(r"'(\w+)'", text)}
    assert sql_names == {o.name for o in outcomes}, sql_names
    assert [o.error for o in outcomes] == [None, "e", "snoozed", "d", "h"]
