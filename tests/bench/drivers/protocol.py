"""The driver side of the bench protocol: arguments in, one JSON result line out, shared helpers.

Every Python driver (pgjobs, pgqueuer, procrastinate) is a script run by the harness in its own
interpreter: `python X_driver.py WORKLOAD --dsn URL --n N [--set key=value ...]`. It prints its
result as ONE line `BENCH-RESULT {json}` on stdout (peers may print their own noise around it).
This module must import with nothing but the standard library and psycopg, because it runs in
both the project venv and the bench venv.

Result keys every driver fills (the harness reads these, then verifies against the database):
  seconds / rate          the measured interval and jobs per second over it
  enqueue_seconds / enqueue_rate   for runs that bulk-enqueue first
  executed                job ids whose handler ran, one entry per run (the exactly-once input)
  cpu_seconds             CPU of this process over the measured interval
  latencies_ms            wake-up runs only: enqueue -> handler start, per measured sample
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

RESULT_MARK = "BENCH-RESULT "

# The enrichment_log-shaped audit row each audited job writes (into bench_enrichment_log). The harness creates the table
# (benchkit.schema); drivers only insert. psycopg placeholders; asyncpg/node drivers renumber.
LOG_COLUMNS = (
    "entity_type", "entity_id", "operation", "sources", "status", "reason", "fields_enriched",
    "data_quality_before", "data_quality_after", "duration_ms", "api_call_count", "metadata",
    "job_id", "parent_job_id", "is_root_job", "attempt", "triggered_by",
)
LOG_INSERT = (
    f"INSERT INTO bench_enrichment_log ({', '.join(LOG_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in LOG_COLUMNS)})"
)
LOG_COPY = f"COPY bench_enrichment_log ({', '.join(LOG_COLUMNS)}) FROM STDIN"
# Per-column types for COPY (psycopg then skips a type lookup per value); jsonb goes in as JSON text.
LOG_COPY_TYPES = ("text", "text", "text", "text[]", "text", "text", "text[]", "text", "text", "int4", "int4",
                  "text", "int8", "int8", "bool", "int4", "text")
LOG_INSERT_DOLLAR = (
    f"INSERT INTO bench_enrichment_log ({', '.join(LOG_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(LOG_COLUMNS) + 1))})"
)


def log_values(job_id: int, root_id: int | None, seq: int, duration_ms: int, *, attempt: int = 1,
               encode: Callable[[Any], str] | None = json.dumps, uuid_type: bool = False) -> tuple:
    """One audit row: `root_id` None for a root job, else the root's id (flat lineage, as the seed says).

    The entity id is the uuid whose integer value is seq, as text (the form the app reads from
    its payloads) or a uuid.UUID for drivers that want one. The metadata dict is encoded with
    `encode`, the JSON encoder the system's own code would use; None passes the dict as it is."""
    metadata = {"seq": seq, "bench": True, "cache": {"source": "bench", "size": 1024, "format": "jpeg"}}
    entity = uuid.UUID(int=seq) if uuid_type else f"00000000-0000-0000-{seq >> 48:04x}-{seq & 0xFFFFFFFFFFFF:012x}"
    return (
        "ALBUM", entity, "BENCH_NOOP", ["BENCH"], "SUCCESS", "benchmark no-op",
        ["title"], "LOW", "HIGH", duration_ms, 0, metadata if encode is None else encode(metadata),
        job_id, root_id, root_id is None, attempt, "bench",
    )


@dataclass
class Args:
    workload: str
    dsn: str
    n: int
    settings: dict[str, str] = field(default_factory=dict)
    warmup: int = 200
    samples: int = 200
    spacing_ms: tuple[float, float] = (10.0, 20.0)

    def setting(self, key: str, default: int) -> int:
        return int(self.settings.get(key, default))


def parse_args(workloads: tuple[str, ...], argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=workloads)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--spacing-ms", default="10,20")
    ns = parser.parse_args(argv)
    low, high = (float(x) for x in ns.spacing_ms.split(","))
    settings = dict(item.split("=", 1) for item in ns.set)
    return Args(ns.workload, ns.dsn, ns.n, settings, ns.warmup, ns.samples, (low, high))


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_MARK + json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Stopwatch:
    """Wall and CPU time of this process over one measured interval."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.cpu_start = _cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = _cpu() - self.cpu_start


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def throughput(n: int, watch: Stopwatch) -> dict[str, float]:
    return {"n": n, "seconds": watch.seconds, "rate": n / watch.seconds, "cpu_seconds": watch.cpu_seconds}


def spacing(args: Args) -> float:
    """Seconds to wait before the next single enqueue of a wake-up run."""
    return random.uniform(*args.spacing_ms) / 1000.0


def fanout_roots(n: int) -> int:
    """N/6 roots, each spawning 5 children: N jobs in all (rounded down to whole families)."""
    return max(1, n // 6)


FANOUT_CHILDREN = 5
# The job kind each drain-like workload enqueues (fan-out roots spawn "fan.child" jobs).
DRAIN_KINDS = {"drain": "noop", "audited": "audited", "fanout": "fan.root"}


def drain_result(kind: str, roots: int, watch: Stopwatch, enqueue: Stopwatch, executed: list[int],
                 setting: dict[str, Any]) -> dict[str, Any]:
    """What every drain-like run reports: the drain's throughput over all jobs run (roots and
    their children), the bulk enqueue of the roots, the ids the handlers saw, the setting."""
    total = roots * (1 + FANOUT_CHILDREN) if kind == "fan.root" else roots
    return throughput(total, watch) | {
        "enqueue_seconds": enqueue.seconds, "enqueue_rate": roots / enqueue.seconds, "roots": roots,
        "executed": executed, "setting": setting,
    }
