"""A user's app end to end: the shop (tests/core/e2e/shop_app) through `pgjobs --app shop_app:app`
migrate / place-order / enqueue / worker --burst / jobs / schedules, in subprocesses, on a database
that already has a `track` table of its own."""

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CATALOG = {"album", "artist", "album_artist", "enrichment_log", "enrichment_roots", "enrichment_timeline"}


@pytest.fixture
def shop(make_cli, empty_dsn, sql, monkeypatch):
    """The shop's CLI on a database whose own `track` table (parcel tracking) predates pgjobs."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    sql(empty_dsn, "CREATE TABLE track (id serial PRIMARY KEY, parcel text NOT NULL, seen_at timestamptz)")
    sql(empty_dsn, "INSERT INTO track (parcel) VALUES ('1Z999')")
    return make_cli(empty_dsn, "shop_app:app")


def _public_relations(sql, dsn):
    return {name for (name,) in sql(dsn, "SELECT table_name FROM information_schema.tables"
                                         " WHERE table_schema = 'public'")}


def _at(text):
    return datetime.fromisoformat(text)


def _states(sql, dsn):
    return dict(((kind, state), n) for kind, state, n in sql(
        dsn, "SELECT kind, state::text, count(*) FROM pgjobs.jobs GROUP BY 1, 2"))


def test_the_shop_runs_its_own_jobs_beside_its_own_tables(shop, sql):
    dsn = shop.dsn
    shop("migrate")
    assert _public_relations(sql, dsn) == {"track", "orders"}  # the queue installs beside, in schema pgjobs
    assert not CATALOG & _public_relations(sql, dsn)
    assert sql(dsn, "SELECT id, parcel FROM track") == [(1, "1Z999")]
    assert sql(dsn, "SELECT component FROM pgjobs.migrations GROUP BY 1 ORDER BY 1") == [("queue",), ("shop",)]

    # Orders: three through the app's own command (order + charge in one transaction), one charged
    # by the generic enqueue, one whose card is declined; the CLI refuses a kind the app lacks.
    placed = [shop.json("place-order", f"c{i}", "--total-cents", str(1000 + i)) for i in range(3)]
    (declined_id,) = sql(dsn, "INSERT INTO orders (customer, total_cents) VALUES ('cheap', 0) RETURNING id")[0]
    (late_id,) = sql(dsn, "INSERT INTO orders (customer, total_cents) VALUES ('late', 500) RETURNING id")[0]
    for order_id in (declined_id, late_id):
        shop("enqueue", "charge_card", "--payload", f'{{"order_id": {order_id}}}')
    refused = shop("enqueue", "noop", check=False)
    assert refused.returncode == 2 and "unknown job kind 'noop'" in refused.stderr
    bad = shop("enqueue", "charge_card", "--payload", '{"order_id": "forty-two"}', check=False)
    assert bad.returncode == 2 and "invalid payload for charge_card: order_id" in bad.stderr
    assert len(shop.json("jobs", "list", "--state", "queued")) == 5

    shop("worker", "--burst", "--concurrency", "10")

    orders = sql(dsn, "SELECT id, status, paid_at IS NOT NULL, receipt_sent_at FROM orders ORDER BY id")
    paid = [p["order_id"] for p in placed] + [late_id]
    assert [(o[0], o[1], o[2]) for o in orders] == sorted(
        [(i, "paid", True) for i in paid] + [(declined_id, "declined", False)])
    assert _states(sql, dsn) == {("charge_card", "succeeded"): 4, ("charge_card", "failed"): 1,
                                 ("send_receipt", "succeeded"): 4}
    # Each receipt is a child of its charge, on the kind's queue and with its declared defaults.
    receipts = shop.json("jobs", "list", "--kind", "send_receipt")
    assert {(j["queue"], j["max_attempts"], j["state"]) for j in receipts} == {("mail", 5, "succeeded")}
    assert all(j["parent_id"] is not None and j["root_id"] == j["parent_id"] for j in receipts)
    failed = shop.json("jobs", "list", "--state", "failed")
    assert [(j["kind"], j["last_error"]) for j in failed] == [
        ("charge_card", f"card declined for order {declined_id}")]
    # The SMTP limiter spaced the four mails at least 1/5 s apart (global, whatever the concurrency).
    sent = sorted(o[3] for o in orders if o[3] is not None)
    assert len(sent) == 4
    assert min(b - a for a, b in zip(sent, sent[1:])) >= timedelta(seconds=0.19)

    assert not CATALOG & _public_relations(sql, dsn)
    assert sql(dsn, "SELECT id, parcel FROM track") == [(1, "1Z999")]


def test_the_shop_nightly_job_is_listed_and_a_missed_night_runs_once(shop, sql):
    dsn = shop.dsn
    shop("migrate")
    (listed,) = shop.json("schedules")
    assert {k: listed[k] for k in ("app", "name", "cron", "kind", "queue", "last_slot", "due")} == {
        "app": "shop", "name": "expire_unpaid", "cron": "0 3 * * *", "kind": "expire_unpaid",
        "queue": "maintenance", "last_slot": None, "due": None}
    next_run = datetime.fromisoformat(listed["next_run"])
    assert (next_run.hour, next_run.minute, next_run.utcoffset()) == (3, 0, timedelta(0))
    table = shop("schedules").stdout
    assert "expire_unpaid" in table and "0 3 * * *" in table

    shop("worker", "--burst")  # records the schedule: a new one starts with its next slot
    assert _states(sql, dsn) == {}
    # Two nights passed while no worker ran, and an unpaid order is ten days old.
    sql(dsn, "UPDATE pgjobs.schedules SET since = now() - interval '3 days',"
             " last_slot = date_trunc('day', now()) - interval '2 days' + interval '3 hours'")
    sql(dsn, "INSERT INTO orders (customer, total_cents, created_at) VALUES"
             " ('old', 100, now() - interval '10 days'), ('new', 100, now())")
    (due,) = shop.json("schedules")
    assert due["due"] is not None and _at(due["due"]) > _at(due["last_slot"])

    shop("worker", "--burst")  # the newest missed night only, once
    shop("worker", "--burst")
    assert _states(sql, dsn) == {("expire_unpaid", "succeeded"): 1}
    assert sql(dsn, "SELECT customer, status FROM orders ORDER BY id") == [("old", "expired"), ("new", "new")]
    (after,) = shop.json("schedules")
    assert _at(after["last_slot"]) == _at(due["due"]) and after["due"] is None
    (job_id,) = sql(dsn, "SELECT id FROM pgjobs.jobs")[0]
    assert after["last_job_id"] == job_id
