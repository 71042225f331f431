"""OpenTelemetry (pgjobs.tracing) with the real SDK: one trace per root's family, one span per attempt,
parent links that follow the lineage, failures marked — and two workers that agree without talking."""

from __future__ import annotations

import asyncio

import psycopg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from pgjobs.database import open_pool
from pgjobs.queue import Complete, RateLimits, Registry, Worker, enqueue
from pgjobs.tracing import instrument, job_span_id, trace_id

FAST_RETRY = {"backoff_base_ms": 1, "backoff_cap_ms": 5}


def _family_registry(user_tracers: list) -> Registry:
    """album → 2 artists (each → 1 image), a cover that fails once, a lyrics job that always fails."""
    registry = Registry()

    async def album(ctx):
        async def write(tx):
            for n in range(2):
                await tx.enqueue_child("artist", {"n": n})
            await tx.enqueue_child("cover", {}, **FAST_RETRY)
            await tx.enqueue_child("lyrics", {}, max_attempts=2, **FAST_RETRY)
        return Complete(write)

    async def artist(ctx):
        async def write(tx):
            await tx.enqueue_child("image", {"artist": ctx.job.payload["n"]})
        return Complete(write)

    def image(ctx):  # sync: runs in a thread, and the user's own span still nests under the attempt
        with user_tracers[0].start_as_current_span("download"):
            return None

    async def cover(ctx):
        if ctx.job.attempt == 1:
            raise ValueError("cover art archive said 502")

    async def lyrics(ctx):
        raise LookupError("no lyrics anywhere")

    for kind, handler in (("album", album), ("artist", artist), ("image", image), ("cover", cover),
                          ("lyrics", lyrics)):
        registry.register(kind, handler)
    return registry


def _tracing():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_a_family_is_one_trace_whose_spans_follow_the_lineage_whichever_worker_runs_them(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        root = enqueue(conn, "album", {"title": "Kind of Blue"}).id
        other_root = enqueue(conn, "album", {"title": "Blue Train"}).id
    hosts = [_tracing(), _tracing()]  # two "hosts": their own providers and exporters, nothing shared
    user_tracers = [hosts[0][0].get_tracer("user-code")]
    pool = await open_pool(fresh_dsn, max_size=4)
    try:
        workers = [Worker(pool, _family_registry(user_tracers), conninfo=fresh_dsn, limits=RateLimits(pool, {}),
                          concurrency=4, burst=True, burst_waits_for_scheduled=True) for _ in hosts]
        tracers = [await instrument(worker, provider) for worker, (provider, _) in zip(workers, hosts)]
        await asyncio.wait_for(asyncio.gather(*(w.run() for w in workers)), 60)
    finally:
        await pool.close()
    # the image handler used host 0's provider; it may have run on either worker, so merge hosts' spans
    spans = [span for _, exporter in hosts for span in exporter.get_finished_spans()]
    with psycopg.connect(fresh_dsn) as conn:
        jobs = {row[0]: row[1:] for row in conn.execute(
            "SELECT id, root_id, parent_id, kind, attempt, state::text FROM pgjobs.jobs")}
        identity = conn.execute("SELECT system_identifier::text || '/' || current_database() "
                                "FROM pg_control_system()").fetchone()[0]
    assert {t.identity for t in tracers} == {identity}
    attempts = [s for s in spans if s.name.startswith("pgjobs.run ")]
    user_spans = [s for s in spans if s.name == "download"]
    assert len(jobs) == 14 and sum(j[3] for j in jobs.values()) == len(attempts) == 18  # one span per attempt

    by_job: dict[int, list] = {}
    for span in attempts:
        by_job.setdefault(span.attributes["pgjobs.job.id"], []).append(span)
    for job_id, (root_id, parent_id, kind, attempt_count, state) in jobs.items():
        runs = sorted(by_job[job_id], key=lambda s: s.attributes["pgjobs.job.attempt"])
        assert [s.attributes["pgjobs.job.attempt"] for s in runs] == list(range(1, attempt_count + 1))
        first = runs[0]
        assert {s.context.trace_id for s in runs} == {trace_id(identity, root_id)}
        assert first.name == f"pgjobs.run {kind}" and first.kind.name == "CONSUMER"
        assert first.context.span_id == job_span_id(identity, job_id)
        if parent_id is None:
            assert first.parent is None  # the root's first attempt is the trace's root
        else:  # parented on the parent job's first attempt: the lineage, as a tree
            assert first.parent.span_id == by_job[parent_id][0].context.span_id == job_span_id(identity, parent_id)
            assert first.attributes["pgjobs.job.parent_id"] == parent_id
        for retry in runs[1:]:  # retries hang under the job's first attempt
            assert retry.parent.span_id == first.context.span_id
        assert first.attributes["pgjobs.job.root_id"] == root_id
        assert first.attributes["pgjobs.job.queue"] == "default"

    def outcome(kind: str) -> list[tuple]:
        return sorted((s.attributes["pgjobs.job.root_id"], s.attributes["pgjobs.job.attempt"],
                       s.attributes["pgjobs.outcome"], s.status.status_code, s.attributes.get("error.type"))
                      for s in attempts if s.attributes["pgjobs.job.kind"] == kind)

    for r in (root, other_root):
        assert [o for o in outcome("cover") if o[0] == r] == [
            (r, 1, "retry", StatusCode.ERROR, "ValueError"), (r, 2, "complete", StatusCode.UNSET, None)]
        assert [o for o in outcome("lyrics") if o[0] == r] == [
            (r, 1, "retry", StatusCode.ERROR, "LookupError"), (r, 2, "failed", StatusCode.ERROR, "LookupError")]
    failed = next(s for s in attempts if s.attributes["pgjobs.outcome"] == "failed")
    assert failed.status.description == "LookupError: no lyrics anywhere"
    (event,) = failed.events
    assert event.name == "exception" and "raise LookupError" in event.attributes["exception.stacktrace"]
    assert {s.attributes["pgjobs.outcome"] for s in attempts if s.attributes["pgjobs.job.kind"] != "lyrics"} - {
        "retry"} == {"complete"}

    # two roots, two traces; the user's span inside a sync handler is a child of that attempt's span
    assert {s.context.trace_id for s in attempts} == {trace_id(identity, root), trace_id(identity, other_root)}
    assert len(user_spans) == 4
    image_spans = {s.context.span_id: s for s in attempts if s.attributes["pgjobs.job.kind"] == "image"}
    for span in user_spans:
        assert span.parent.span_id in image_spans
        assert span.context.trace_id == image_spans[span.parent.span_id].context.trace_id
