"""pgjobs.testing as a user's tests use it: a kind run inline, queues drained in-process by the real
Worker, and assertions on what the user's code enqueued in its own transaction."""

import asyncio

import psycopg
import pytest

from pgjobs import testing
from pgjobs.app import App
from pgjobs.database import open_pool
from pgjobs.queue import Complete, Discard, PayloadError, QueueError, Retry

app = App("cafe", rate_limits={"till": "100/s"})
calls: list = []


@app.task("brew", queue="bar", max_attempts=4)
async def brew(ctx, cups: int, size: str = "small") -> Complete:
    calls.append((ctx.job.kind, ctx.job.attempt, ctx.job.max_attempts, cups, size, ctx.state))
    if cups > 3:
        raise Discard("too many cups")
    if cups == 0:
        raise RuntimeError("no beans")

    async def record(tx) -> None:
        await tx.execute("CREATE TABLE IF NOT EXISTS brewed (cups int)")
        await tx.execute("INSERT INTO brewed VALUES (%s)", (cups,))
        if cups > 1:
            await serve.enqueue_child(tx, cups=cups - 1)

    return Complete(record)


@app.task("serve", queue="bar")
def serve(ctx, cups: int) -> None:  # a plain def: the worker runs it in a thread
    calls.append(("serve", cups, ctx.state))


@app.task("pay")
async def pay(ctx) -> Retry | None:
    waited = await ctx.limits.acquire("till")
    calls.append(("pay", waited >= 0))
    return None


@app.lifespan
async def _lifespan(resources):
    yield {"from": "lifespan"}


@pytest.fixture(autouse=True)
def _clear_calls():
    calls.clear()


async def test_run_calls_the_handler_inline_and_returns_its_outcome():
    outcome = await testing.run(app, "brew", {"cups": 2}, state="shared")
    assert isinstance(outcome, Complete) and outcome.write is not None  # returned, not applied
    assert calls == [("brew", 1, 4, 2, "small", "shared")]  # the kind's defaults, the payload's default
    discarded = await testing.run(app, "brew", cups=9, attempt=3)
    assert isinstance(discarded, Discard) and discarded.reason == "too many cups"
    assert calls[-1][:3] == ("brew", 3, 4)
    assert isinstance(await testing.run(app, "serve", cups=1), Complete)  # a plain def too
    with pytest.raises(RuntimeError, match="no beans"):  # anything else propagates to the test
        await testing.run(app, "brew", cups=0)
    with pytest.raises(PayloadError, match="invalid payload for brew: cups"):
        await testing.run(app, "brew", {"cups": "lots"})
    with pytest.raises(QueueError, match="declares no kind 'tea'"):
        await testing.run(app, "tea")


async def test_run_with_a_pool_gives_the_handler_the_app_rate_limits(shared_dsn):
    pool = await open_pool(shared_dsn, max_size=2)
    try:
        assert isinstance(await testing.run(app, "pay", pool=pool), Complete)
    finally:
        await pool.close()
    assert calls == [("pay", True)]


def test_enqueued_sees_the_callers_transaction_and_assert_enqueued_names_what_is_there(conn):
    brew.enqueue(conn, cups=2)
    serve.enqueue(conn, cups=1)
    app.tasks["pay"].enqueue(conn)
    assert testing.enqueued(conn, queue="bar") == [("brew", {"cups": 2, "size": "small"}), ("serve", {"cups": 1})]
    assert testing.enqueued(conn, kind="pay") == [("pay", {})]
    assert testing.assert_enqueued(conn, "brew", {"cups": 2}) == [{"cups": 2, "size": "small"}]
    with pytest.raises(AssertionError, match=r"no queued brew job with payload \{'cups': 5\}") as failed:
        testing.assert_enqueued(conn, "brew", {"cups": 5})
    assert 'serve {"cups":1}' in str(failed.value)
    with pytest.raises(AssertionError):
        testing.assert_enqueued(conn, "pay", queue="bar")


async def test_drain_runs_every_runnable_job_and_what_they_spawn_with_the_real_worker(fresh_dsn):
    with psycopg.connect(fresh_dsn) as conn:
        brew.enqueue(conn, cups=3)
        brew.enqueue(conn, cups=9)
        app.tasks["pay"].enqueue(conn)
    finished = await asyncio.wait_for(testing.drain(app, fresh_dsn), 60)
    assert sorted((f.job.kind, f.state) for f in finished) == [
        ("brew", "failed"), ("brew", "succeeded"), ("pay", "succeeded"), ("serve", "succeeded")]
    assert ("serve", 2, {"from": "lifespan"}) in calls  # the app's lifespan gave ctx.state
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT cups FROM brewed").fetchall() == [(3,)]
        assert testing.enqueued(conn) == []
        assert testing.enqueued(conn, states=["succeeded"], kind="serve") == [("serve", {"cups": 2})]
    # Only the queues asked for, and a state given instead of the lifespan's.
    with psycopg.connect(fresh_dsn) as conn:
        serve.enqueue(conn, cups=7)
        app.tasks["pay"].enqueue(conn)
    finished = await testing.drain(app, fresh_dsn, queues=["bar"], state="given")
    assert [(f.job.kind, f.state) for f in finished] == [("serve", "succeeded")]
    assert calls[-1] == ("serve", 7, "given")
    with psycopg.connect(fresh_dsn) as conn:
        assert testing.enqueued(conn) == [("pay", {})]
