"""What a handler gets: JobContext while it runs, JobTransaction inside its completion transaction.

Children exist only through JobTransaction.enqueue_child(_later): the insert takes parent_id and
root_id from the parent's row (read in the insert, or as the claim returned it: a root never
changes) in the same transaction that records the parent's outcome, so a child is never without
its root, and a parent fenced out of its lease spawns nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgjobs.queue.errors import QueueError
from pgjobs.queue.limits import LimiterWaits, attempt_waits
from pgjobs.queue.jobs import Enqueued, Job, JobSpec, Q, RescuedJob, bulk_params, copyable, payload_text
from pgjobs.queue.outcomes import CopyInto, Rows

if TYPE_CHECKING:
    from pgjobs.queue.limits import RateLimits


@dataclass
class JobContext:
    job: Job
    pool: AsyncConnectionPool  # for reads before the completion transaction
    limits: RateLimits
    worker_id: str
    validated: Any = None  # the kind's payload model instance, when the kind has a model
    state: Any = None  # what the app's lifespan yielded (shared clients, settings)
    # This attempt's waits for rate limiters: counting starts when the context is made, in the
    # attempt's own task (pgjobs.queue.limits.attempt_waits).
    limiter_waits: LimiterWaits = field(default_factory=attempt_waits, repr=False)

    @property
    def limiter_wait(self) -> float:
        """Seconds this attempt has waited so far for rate limiters (all its calls, summed)."""
        return self.limiter_waits.seconds

    @property
    def payload(self) -> Any:
        """The validated payload model, else the job's JSON (decoded only if read)."""
        return self.job.payload if self.validated is None else self.validated


_CHILD_COPY_TYPES = ["int8", "int8", "text", "text", "text", "int4", "int4", "int4", "int4"]  # payload as JSON text


class Deferred:
    """Writes deferred to the end of a completion transaction, batched across a group's jobs:
    children (one COPY, or one set-based insert when some have a dedupe key or a schedule) and
    append-only rows (one COPY per CopyInto target). Not in pipeline mode (COPY cannot be)."""

    __slots__ = ("children", "rows")

    def __init__(self) -> None:
        self.children: list[tuple[Job | RescuedJob, JobSpec]] = []
        self.rows: dict[CopyInto, list[Sequence[object]]] = {}

    def __bool__(self) -> bool:
        return bool(self.children or self.rows)

    def add_rows(self, rows: Rows) -> None:
        for target, values in rows:
            if type(target) is not CopyInto:
                raise TypeError(f"rows take (CopyInto, values) pairs, not {type(target).__name__}")
            self.rows.setdefault(target, []).append(values)

    async def flush(self, conn: psycopg.AsyncConnection) -> None:
        children, self.children = self.children, []
        rows, self.rows = self.rows, {}
        if children:
            await _write_children(conn, children)
        for target, values in rows.items():
            await _copy_rows(conn, target, values)


class JobTransaction:
    """The completion transaction of one job attempt (a savepoint within a group commit), or of
    the rescuer's record of a lost one (`job` is then a RescuedJob)."""

    def __init__(self, conn: psycopg.AsyncConnection, job: Job | RescuedJob,
                 deferred: Deferred | None = None,
                 before_statement: Callable[[], Awaitable[None]] | None = None) -> None:
        self.conn = conn
        self.job = job
        self.deferred = deferred if deferred is not None else Deferred()
        self._before_statement = before_statement  # the group commit's: enter pipeline mode

    async def execute(self, query: str, params: Mapping[str, Any] | tuple | None = None) -> psycopg.AsyncCursor:
        if self._before_statement:
            await self._before_statement()
        return await self.conn.execute(query, params)

    def enqueue_child_later(self, kind: str, payload: Mapping[str, Any] | None = None, **options: Any) -> None:
        """Like enqueue_child, batched with the group's other deferred inserts; returns nothing
        (use enqueue_child when you need the id or the dedupe answer)."""
        spec = JobSpec(kind=kind, payload=payload if payload is not None else {}, **options)
        self.deferred.children.append((self.job, spec))

    def copy_later(self, copy_statement: str, row: Sequence[object], *, types: Sequence[str] | None = None) -> None:
        """An append-only row: every row the group queues for the same `COPY table (columns) FROM
        STDIN` statement goes in with one COPY (the cheapest insert PostgreSQL has), still inside
        this transaction. `types` (PostgreSQL type names, one per column, e.g. "int8", "text[]")
        spares psycopg a type lookup per value."""
        self.deferred.add_rows([(CopyInto(copy_statement, None if types is None else tuple(types)), row)])

    def copy_rows_later(self, rows: Rows) -> None:
        """copy_later for `(CopyInto, values)` pairs, as an outcome's `rows` carries them."""
        self.deferred.add_rows(rows)

    async def enqueue_child(self, kind: str, payload: Mapping[str, Any] | None = None, **options: Any) -> Enqueued:
        spec = JobSpec(kind=kind, payload=payload if payload is not None else {}, **options)
        params = spec.params() | {"parent_id": self.job.id}
        if self._before_statement:
            await self._before_statement()
        for _ in range(5):
            cur = await self.conn.execute(Q["enqueue_child"], params)
            rows = await cur.fetchall()
            if rows:
                job_id, root_id, created, _ = rows[0]
                return Enqueued(job_id, root_id, created)
            exists = await (await self.conn.execute(Q["get_job"], {"id": self.job.id})).fetchone()
            if exists is None:
                raise QueueError(f"parent job {self.job.id} does not exist")
        raise QueueError(f"could not settle dedupe key {spec.dedupe_key!r}")


async def _write_children(conn: psycopg.AsyncConnection, children: list[tuple[Job | RescuedJob, JobSpec]]) -> None:
    parents, specs = zip(*children)
    if copyable(specs):
        async with conn.cursor().copy(Q["copy_children"]) as copy:
            copy.set_types(_CHILD_COPY_TYPES)
            for parent, s in children:
                await copy.write_row((parent.root_id, parent.id, s.kind, s.queue, payload_text(s), s.priority,
                                      s.max_attempts, s.backoff_base_ms, s.backoff_cap_ms))
        for queue in {s.queue for s in specs}:
            await conn.execute(Q["notify_queue"], {"queue": queue})
    else:  # dedupe keys or schedules: one set-based insert (parents' root_id read from their rows)
        params = {"parent_ids": [p.id for p in parents]} | bulk_params(list(specs))
        await conn.execute(Q["enqueue_children"], params)


async def _copy_rows(conn: psycopg.AsyncConnection, target: CopyInto, rows: list[Sequence[object]]) -> None:
    types = target.types
    if types and "text[]" in types:
        rows, types = _text_arrays_as_literals(rows, types)
    async with conn.cursor() as cur:
        async with cur.copy(target.statement) as copy:
            if types:
                copy.set_types(types)
            for row in rows:
                await copy.write_row(row)


def _text_arrays_as_literals(rows: list, types: tuple[str, ...]) -> tuple[list, tuple[str, ...]]:
    """COPY rows with their text[] values as array literals and those columns typed text (COPY
    reads the literal into the text[] column): psycopg dumps a list one element at a time in
    Python, and through its C row formatter a Python dumper costs ~2 µs a value (an audit row
    with two text[] values: 6.4 -> 3.3 µs a row, conversion included, measured). Any value that
    is not a plain list of str (None elements, nesting) sends the rows as they are, to psycopg's
    own dumper."""
    columns = [i for i, t in enumerate(types) if t == "text[]"]
    out = []
    for row in rows:
        row = list(row)
        for i in columns:
            if row[i] is not None:
                literal = _array_literal(row[i])
                if literal is None:
                    return rows, types
                row[i] = literal
        out.append(row)
    return out, tuple("text" if t == "text[]" else t for t in types)


# Audit rows repeat a few arrays (sources, fields enriched): each is rendered once (bounded cache).
_LITERALS: dict[tuple, str | None] = {}


def _array_literal(items: Any) -> str | None:
    """`items` as a PostgreSQL array literal, every element quoted; None unless a list of str."""
    if type(items) is not list:
        return None
    try:
        key = tuple(items)
        return _LITERALS[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable element: not a str
        return None
    if len(_LITERALS) >= 1024:
        _LITERALS.clear()
    literal = _LITERALS[key] = _render_array(items)
    return literal


def _render_array(items: list) -> str | None:
    if not items:
        return "{}"
    try:
        body = "\0".join(items)  # NUL cannot occur in PostgreSQL text: a safe separator
    except TypeError:  # an element that is not a str
        return None
    if body.count("\0") != len(items) - 1:  # an element holds a NUL: let psycopg raise its error
        return None
    if '"' in body or "\\" in body:
        body = body.replace("\\", "\\\\").replace('"', '\\"')
    return '{"' + body.replace("\0", '","') + '"}'
