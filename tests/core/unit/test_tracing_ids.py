"""pgjobs.tracing's derived ids, and the rule that nothing else in the core imports OpenTelemetry."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pgjobs
from pgjobs.tracing import job_span_id, trace_id

PACKAGE = Path(pgjobs.__file__).parent


def test_ids_are_a_pure_function_of_the_database_and_the_job():
    assert trace_id("7716305389376963104/shop", 42) == trace_id("7716305389376963104/shop", 42)
    assert trace_id("7716305389376963104/shop", 42) != trace_id("7716305389376963104/shop", 43)
    assert trace_id("7716305389376963104/shop", 42) != trace_id("7716305389376963104/other", 42)
    assert job_span_id("7716305389376963104/shop", 42) != job_span_id("7716305389376963104/other", 42)
    ids = {trace_id("db", n) for n in range(10_000)}
    spans = {job_span_id("db", n) for n in range(10_000)}
    assert len(ids) == len(spans) == 10_000
    assert all(0 < t < 2**128 for t in ids) and all(0 < s < 2**64 for s in spans)
    assert max(ids).bit_length() == 128 and max(spans).bit_length() == 64  # the whole width is used


def test_only_pgjobs_tracing_imports_opentelemetry():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "opentelemetry" for n in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert sorted(set(offenders)) == ["tracing.py"]


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
    return subprocess.run([sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, timeout=60)


def test_a_worker_without_tracing_loads_nothing_of_opentelemetry():
    done = _python("import sys, pgjobs, pgjobs.cli, pgjobs.cli.worker, pgjobs.queue.worker, pgjobs.metrics\n"
                   "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_pgjobs_otel_without_the_extra_is_one_line_before_connecting():
    # opentelemetry made unimportable, as in an install without the extra; the DSN is never dialled
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from pgjobs.cli import main\n"
            "sys.argv = ['pgjobs', 'worker', '--burst']\n"
            "main()")
    done = _python(code, PGJOBS_OTEL="true", PGJOBS_DSN="postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "pgjobs: error: PGJOBS_OTEL needs OpenTelemetry: pip install 'pgjobs[otel]'"]
