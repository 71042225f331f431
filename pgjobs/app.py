"""Apps: what a team declares on the queue, and what `pgjobs --app module:attr` loads.

An `App` holds job kinds (`@app.task`), each with its defaults (queue, priority, attempts, backoff,
timeout) and a payload model taken from the handler's type hints; its migrations (a component of
the ledger); its rate limits; its periodic jobs (`@app.periodic`); resources its handlers share
(`@app.lifespan`); an `on_error` hook; CLI commands; and pages for `pgjobs dashboard`
(`app.add_dashboard`: every app gets the queue's pages, an app may add its own). A worker runs exactly the kinds of its app,
so a kind it does not know waits, queued, for a worker that does. The enrichment chain is an app
declared with nothing but this module.

    app = App("shop", migrations="shop/sql")

    @app.task("send_receipt", queue="mail", max_attempts=5, timeout=30)
    async def send_receipt(ctx, order_id: int) -> None: ...

    send_receipt.enqueue(conn, order_id=42)      # in the caller's transaction
"""

from __future__ import annotations

import importlib
import inspect
import typing
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from pgjobs.errors import ConfigError, validation_message
from pgjobs.migrations import Component
from pgjobs.queue.context import JobContext, JobTransaction
from pgjobs.queue.errors import PayloadError
from pgjobs.queue.jobs import Enqueued, Job, JobSpec, enqueue, enqueue_async
from pgjobs.queue.periodic import Cron, Schedule
from pgjobs.queue.registry import Handler, LeaseExpiredHook, NoopPayload, Registry, run_noop
from pgjobs.settings import parse_rate_limits

# Options a Task fills into every JobSpec it makes; None leaves JobSpec's own default.
_SPEC_OPTIONS = ("queue", "priority", "max_attempts", "backoff_base_ms", "backoff_cap_ms")
# Options an enqueue may override per call (besides those).
_CALL_OPTIONS = _SPEC_OPTIONS + ("delay", "run_at", "dedupe_key")


@dataclass(frozen=True)
class WorkerResources:
    """What an app's lifespan gets when a worker starts: the worker's pool, limiters and settings."""

    pool: Any  # psycopg_pool.AsyncConnectionPool
    limits: Any  # pgjobs.queue.RateLimits
    settings: Any  # pgjobs.settings.Settings
    dsn: str = field(repr=False)


ErrorHook = Callable[[Job, str, "str | None"], Any]  # (job, error, traceback); may be async
Lifespan = Callable[[WorkerResources], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class Periodic:
    """A schedule: one job of `kind` per cron slot (UTC), however many workers run; every worker
    runs the scheduler (pgjobs.queue.periodic), and the slot's transaction admits one of them.

    Catch-up rule: slots missed while no worker ran are not replayed one by one; the most recent
    missed slot (if any) is enqueued once when a worker starts, then the schedule goes on. A running
    worker that falls behind (a stalled process or database) enqueues each slot it passed, up to
    100. A new schedule, or one whose cron changed, starts with its next slot. Keyed by (app, name):
    two apps on one database never share a schedule."""

    name: str
    cron: str
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    app: str = ""  # the declaring app's name (kept when another app includes it)


def _takes_context(param: inspect.Parameter, hints: dict[str, Any]) -> bool:
    hint = hints.get(param.name)
    return param.name == "ctx" or (inspect.isclass(hint) and issubclass(hint, JobContext))


class Task:
    """A declared job kind: the handler, its defaults, and typed ways to enqueue it.

    `task.enqueue(conn, **payload)` (sync connection) and `await task.enqueue_async(conn, **payload)`
    join the caller's transaction; `task.options(delay=30, priority=-1)` returns the same task with
    other options for the next enqueue; `task.spec(**payload)` is a JobSpec for enqueue_many;
    `await task.enqueue_child(tx, **payload)` enqueues it as a child inside a completion write."""

    def __init__(self, kind: str, fn: Callable[..., Any], *, options: Mapping[str, Any],
                 payload_model: type[BaseModel] | None, timeout: float | None,
                 validate_payload: bool, on_lease_expired: LeaseExpiredHook | None) -> None:
        self.kind = kind
        self.fn = fn
        self.timeout = timeout
        self.validate_payload = validate_payload
        self.on_lease_expired = on_lease_expired
        self._options = {k: v for k, v in options.items() if v is not None}
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", kind)
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # a hint naming something the handler's module cannot see
            raise ConfigError(f"task {kind!r}: cannot resolve the handler's type hints ({exc})") from None
        params = list(inspect.signature(fn).parameters.values())
        self._pass_ctx = bool(params) and _takes_context(params[0], hints)
        rest = params[1:] if self._pass_ctx else params
        self._model_arg = False  # the handler takes the model instance as one argument
        if len(rest) == 1 and inspect.isclass(hints.get(rest[0].name)) and issubclass(hints[rest[0].name], BaseModel):
            payload_model, self._model_arg = hints[rest[0].name], True
        elif rest:
            fields = {p.name: (hints.get(p.name, Any), ... if p.default is p.empty else p.default) for p in rest}
            payload_model = create_model(f"{self.__name__}_payload", __config__=ConfigDict(extra="forbid"),
                                         **fields)
        self._fields = bool(rest) and not self._model_arg
        self.payload_model = payload_model
        if (self._fields or self._model_arg) and not validate_payload:
            raise ConfigError(f"task {kind!r}: validate_payload=False needs a handler that takes only ctx")

    def __repr__(self) -> str:
        return f"<Task {self.kind!r} queue={self.queue!r}>"

    @property
    def queue(self) -> str:
        return self._options.get("queue", JobSpec.__dataclass_fields__["queue"].default)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The handler itself, undecorated (for direct calls in tests)."""
        return self.fn(*args, **kwargs)

    def options(self, **overrides: Any) -> "Task":
        unknown = set(overrides) - set(_CALL_OPTIONS)
        if unknown:
            raise TypeError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
        task = object.__new__(Task)
        task.__dict__.update(self.__dict__)
        task._options = self._options | {k: v for k, v in overrides.items() if v is not None}
        return task

    def payload(self, payload: Mapping[str, Any] | BaseModel | None = None, **fields: Any) -> dict[str, Any]:
        """The payload as stored: validated by the kind's model when it has one."""
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        data = dict(payload or {}) | fields
        if self.payload_model is None:
            return data
        try:
            return self.payload_model.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            raise PayloadError(f"invalid payload for {self.kind}: {validation_message(exc)}") from None

    def spec(self, payload: Mapping[str, Any] | BaseModel | None = None, **fields: Any) -> JobSpec:
        return JobSpec(kind=self.kind, payload=self.payload(payload, **fields), **self._options)

    def enqueue(self, conn: psycopg.Connection, payload: Mapping[str, Any] | BaseModel | None = None,
                **fields: Any) -> Enqueued:
        return enqueue(conn, self.kind, self.payload(payload, **fields), **self._options)

    async def enqueue_async(self, conn: psycopg.AsyncConnection,
                            payload: Mapping[str, Any] | BaseModel | None = None, **fields: Any) -> Enqueued:
        return await enqueue_async(conn, self.kind, self.payload(payload, **fields), **self._options)

    async def enqueue_child(self, tx: JobTransaction, payload: Mapping[str, Any] | BaseModel | None = None,
                            **fields: Any) -> Enqueued:
        return await tx.enqueue_child(self.kind, self.payload(payload, **fields), **self._options)

    def handler(self) -> Handler:
        if inspect.iscoroutinefunction(self.fn):
            async def run(ctx: JobContext) -> Any:
                return await self.fn(*self._args(ctx), **self._kwargs(ctx))
        else:
            def run(ctx: JobContext) -> Any:  # the worker runs a plain def in a thread
                return self.fn(*self._args(ctx), **self._kwargs(ctx))
        return Handler(self.kind, run, self.payload_model, self.on_lease_expired, self.validate_payload,
                       timeout=self.timeout)

    def _args(self, ctx: JobContext) -> tuple:
        head = (ctx,) if self._pass_ctx else ()
        return head + (ctx.payload,) if self._model_arg else head

    def _kwargs(self, ctx: JobContext) -> dict[str, Any]:
        if not self._fields:
            return {}
        model = ctx.payload
        return {name: getattr(model, name) for name in type(model).model_fields}


class App:
    """Job kinds and everything around them; see the module docstring."""

    def __init__(self, name: str, *, migrations: str | Path | None = None,
                 rate_limits: Mapping[str, str] | None = None, include: Sequence["App"] = ()) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"app name {name!r}: use letters, digits, - and _")
        self.name = name
        self.migrations_dir = Path(migrations) if migrations is not None else None
        self.rate_limits: dict[str, float] = {}
        for limiter, rate in (rate_limits or {}).items():
            self.rate_limits |= _rate(limiter, rate)
        self.tasks: dict[str, Task] = {}
        self.periodics: dict[str, Periodic] = {}
        self.commands: list[tuple[str, Callable[..., Any]]] = []  # top-level CLI commands
        self.enqueue_commands: list[tuple[str, Callable[..., Any]]] = []  # `pgjobs enqueue NAME`
        self.command_groups: list[tuple[str, Any]] = []  # (name, typer.Typer)
        self.dashboard_extensions: list[str | Callable[[Any], None]] = []  # see add_dashboard
        self._lifespans: list[Lifespan] = []
        self.error_hooks: list[ErrorHook] = []
        self.included: list[App] = []
        for other in include:
            self.include(other)

    def __repr__(self) -> str:
        return f"<App {self.name!r}: {len(self.tasks)} kinds>"

    # --- declaring ------------------------------------------------------------------------------

    def task(self, kind: str | None = None, *, queue: str | None = None, priority: int | None = None,
             max_attempts: int | None = None, backoff_base_ms: int | None = None, backoff_cap_ms: int | None = None,
             timeout: float | None = None, payload_model: type[BaseModel] | None = None,
             validate_payload: bool = True, on_lease_expired: LeaseExpiredHook | None = None
             ) -> Callable[[Callable[..., Any]], Task]:
        """Declare a kind (named after the function unless `kind` is given). The handler may take
        `ctx` first, then either the payload's fields as keyword parameters with type hints, one
        pydantic model, or nothing (it reads ctx.payload, validated by `payload_model` if given)."""
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"task {kind!r}: timeout must be positive")

        def declare(fn: Callable[..., Any]) -> Task:
            name = kind or fn.__name__
            options = {"queue": queue, "priority": priority, "max_attempts": max_attempts,
                       "backoff_base_ms": backoff_base_ms, "backoff_cap_ms": backoff_cap_ms}
            task = Task(name, fn, options=options, payload_model=payload_model, timeout=timeout,
                        validate_payload=validate_payload, on_lease_expired=on_lease_expired)
            self._add_task(task)
            return task

        return declare

    def periodic(self, cron: str, *, name: str | None = None, payload: Mapping[str, Any] | None = None
                 ) -> Callable[[Task], Task]:
        """Enqueue the decorated task once per slot of `cron` (5 fields, or 6 with seconds last;
        UTC), with `payload`. Put it above @app.task: `@app.periodic("0 3 * * *")`. See Periodic
        for the catch-up rule; a cron croniter refuses fails here, naming the schedule."""
        def declare(task: Task) -> Task:
            if not isinstance(task, Task):
                raise ConfigError("@app.periodic goes above @app.task (it schedules a declared task)")
            schedule_name = name or task.kind
            expression = Cron.parse(cron, what=f"periodic job {schedule_name!r}").expression
            schedule = Periodic(schedule_name, expression, task.kind, dict(payload or {}), self.name)
            if schedule.name in self.periodics:
                raise ConfigError(f"a periodic job named {schedule.name!r} is already declared")
            task.payload(schedule.payload)  # a payload the kind refuses fails now, not at 3 a.m.
            self.periodics[schedule.name] = schedule
            return task

        return declare

    def lifespan(self, fn: Callable[[WorkerResources], AsyncIterator[Any]]) -> Callable[..., Any]:
        """Resources the handlers share while a worker runs (an HTTP client, settings): an async
        generator that yields them once; handlers read them as `ctx.state`."""
        self._lifespans.append(asynccontextmanager(fn))
        return fn

    def on_error(self, fn: ErrorHook) -> ErrorHook:
        """Called with (job, error, traceback) after every failed attempt (Sentry and the like)."""
        self.error_hooks.append(fn)
        return fn

    def command(self, name: str | None = None, *, enqueue: bool = False) -> Callable[[Callable], Callable]:
        """Add a typer command to `pgjobs` (or, with enqueue=True, to `pgjobs enqueue`)."""
        def declare(fn: Callable) -> Callable:
            target = self.enqueue_commands if enqueue else self.commands
            target.append((name or fn.__name__.replace("_", "-"), fn))
            return fn

        return declare

    def add_command_group(self, name: str, group: Any) -> None:
        self.command_groups.append((name, group))

    def add_dashboard(self, setup: str | Callable[[Any], None]) -> None:
        """Contribute pages to `pgjobs dashboard`. `setup(dashboard)` is called once when the dashboard
        is built, with a `pgjobs.dashboard.Dashboard` to add routes, nav entries, templates and jump
        resolvers to (see docs/dashboard.md). Give it as "module:function" to import it only then, so
        an app declares pages without needing the `dashboard` extra."""
        if isinstance(setup, str) and setup.count(":") != 1:
            raise ConfigError(f"add_dashboard({setup!r}): expected module:function")
        self.dashboard_extensions.append(setup)

    def include(self, other: "App") -> None:
        """Serve another app's kinds too (its migrations, limits and schedules come along)."""
        for task in other.tasks.values():
            self._add_task(task)
        for schedule in other.periodics.values():
            if self.periodics.get(schedule.name, schedule) != schedule:
                raise ConfigError(f"a periodic job named {schedule.name!r} is already declared")
            self.periodics[schedule.name] = schedule
        self.rate_limits = other.rate_limits | self.rate_limits
        self.dashboard_extensions = [e for e in other.dashboard_extensions
                                     if e not in self.dashboard_extensions] + self.dashboard_extensions
        self.included.append(other)

    def _add_task(self, task: Task) -> None:
        if task.kind in self.tasks:
            raise ConfigError(f"job kind {task.kind!r} is declared twice")
        self.tasks[task.kind] = task

    # --- what the CLI and the worker read -------------------------------------------------------

    @property
    def components(self) -> list[Component]:
        """Migration components, included apps first (the queue's own is always applied first)."""
        found: list[Component] = []
        for other in self.included:
            found += [c for c in other.components if c not in found]
        if self.migrations_dir is not None:
            found.append(Component(self.name, self.migrations_dir))
        return found

    @property
    def queues(self) -> list[str]:
        """The queues the app's kinds use: what a worker serves unless told otherwise."""
        return sorted({task.queue for task in self.tasks.values()}) or [JobSpec.__dataclass_fields__["queue"].default]

    def registry(self) -> Registry:
        registry = Registry()
        for task in self.tasks.values():
            registry.add(task.handler())
        return registry

    def schedules(self) -> list[Schedule]:
        """The periodic jobs as the scheduler runs them, each with the job its slots enqueue."""
        return [Schedule(p.app or self.name, p.name, Cron(p.cron), self.tasks[p.kind].spec(p.payload))
                for p in self.periodics.values()]

    def intervals(self, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
        """Seconds between calls per limiter: the app's, then PGJOBS_RATE_LIMITS over them."""
        return self.rate_limits | dict(overrides or {})

    @asynccontextmanager
    async def running(self, resources: WorkerResources) -> AsyncIterator[Any]:
        """Enter the app's lifespans (and its included apps'); yields the handlers' ctx.state."""
        lifespans = [ls for other in self.included for ls in other._lifespans] + self._lifespans
        if not lifespans:
            yield None
            return
        async with lifespans[0](resources) as state:  # one state per app: the first lifespan's
            yield state


def _rate(limiter: str, rate: str) -> dict[str, float]:
    try:
        return parse_rate_limits(f"{limiter}={rate}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def load_app(reference: str) -> App:
    """`module:attr` (attr an App, or a function returning one) -> the App; ConfigError otherwise."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--app {reference!r}: expected module:attribute, e.g. myproject.jobs:app")
    try:
        module = importlib.import_module(module_name)
    except ConfigError:  # the app's own declaration is wrong: its message says where
        raise
    except Exception as exc:  # a missing module, or one that fails while importing
        raise ConfigError(f"--app {reference!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"--app {reference!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(target, App) and callable(target):
        try:
            target = target()
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"--app {reference!r}: {attr}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(target, App):
        raise ConfigError(f"--app {reference!r}: {attr!r} is a {type(target).__name__}, not a pgjobs.App")
    return target


def builtin_app() -> App:
    """The app `pgjobs` runs when given none: the built-in `noop` kind (smoke tests, benchmarks)."""
    app = App("pgjobs")
    app.task("noop", payload_model=NoopPayload)(run_noop)
    return app


__all__ = ["App", "Periodic", "Task", "WorkerResources", "builtin_app", "load_app"]
