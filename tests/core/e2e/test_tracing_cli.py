"""`PGJOBS_OTEL=true pgjobs worker`: a real worker process sends its attempts' spans to the
TracerProvider the app configured (here an SDK provider writing JSON lines to a file)."""

from __future__ import annotations

import json
import os

import pytest

APP = '''
import json, os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from pgjobs import App, Complete

class LinesExporter(SpanExporter):
    def export(self, spans):
        with open(os.environ["SPANS_FILE"], "a") as out:
            for s in spans:
                out.write(json.dumps({"name": s.name, "trace": s.context.trace_id, "span": s.context.span_id,
                                      "parent": s.parent.span_id if s.parent else None,
                                      "status": s.status.status_code.name, "attrs": dict(s.attributes)}) + "\\n")
        return SpanExportResult.SUCCESS

if os.environ.get("SPANS_FILE"):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(LinesExporter()))
    trace.set_tracer_provider(provider)

app = App("traced")

@app.task("order", max_attempts=3)
async def order(ctx) -> Complete:
    async def write(tx):
        await tx.enqueue_child("receipt", {}, backoff_base_ms=1, backoff_cap_ms=5)
    return Complete(write)

@app.task("receipt", max_attempts=3)
async def receipt(ctx) -> None:
    if ctx.job.attempt == 1:
        raise ConnectionError("smtp went away")
'''


@pytest.fixture
def traced_cli(make_cli, fresh_dsn, tmp_path, monkeypatch):
    (tmp_path / "traced_app.py").write_text(APP)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    return make_cli(fresh_dsn, "traced_app:app")


def test_a_worker_with_pgjobs_otel_exports_one_trace_for_the_family(traced_cli, sql, fresh_dsn, tmp_path):
    spans_file = tmp_path / "spans.jsonl"
    root = traced_cli.json("enqueue", "order")["id"]
    env = traced_cli.env(PGJOBS_OTEL="true", SPANS_FILE=str(spans_file))
    ran = traced_cli("worker", "--burst", "--wait-scheduled", env=env)
    assert ran.returncode == 0, ran.stderr
    started = next(line for line in ran.logs() if line["msg"] == "worker started")
    assert started["tracing"] == "otel"
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    (child,) = sql(fresh_dsn, "SELECT id FROM pgjobs.jobs WHERE parent_id = %s", (root,))[0]
    by_attempt = {(s["attrs"]["pgjobs.job.id"], s["attrs"]["pgjobs.job.attempt"]): s for s in spans}
    assert sorted(by_attempt) == [(root, 1), (child, 1), (child, 2)]
    assert len({s["trace"] for s in spans}) == 1
    assert by_attempt[(root, 1)]["parent"] is None
    assert by_attempt[(child, 1)]["parent"] == by_attempt[(root, 1)]["span"]
    assert by_attempt[(child, 2)]["parent"] == by_attempt[(child, 1)]["span"]
    assert [by_attempt[(child, n)]["status"] for n in (1, 2)] == ["ERROR", "UNSET"]
    assert by_attempt[(child, 1)]["attrs"]["error.type"] == "ConnectionError"
    assert by_attempt[(root, 1)]["name"] == "pgjobs.run order"


def test_pgjobs_otel_without_a_configured_sdk_provider_is_one_line_and_exit_2(traced_cli):
    traced_cli.json("enqueue", "order")
    ran = traced_cli("worker", "--burst", env=traced_cli.env(PGJOBS_OTEL="true"), check=False)  # no provider set
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr
    assert "PGJOBS_OTEL needs the OpenTelemetry SDK's TracerProvider" in ran.stderr
