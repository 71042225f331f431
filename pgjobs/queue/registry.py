"""Handlers registered by job kind, and the built-in `noop` kind.

A handler is `async def run(ctx) -> Outcome | None` (None means Complete()); a plain `def` runs in
a thread. With `payload_model`, the payload is validated first and a payload that fails fails the
job terminally. `on_lease_expired(tx, rescued_job)` runs inside the rescuer's transaction when a
job of this kind lost its worker, so the domain can record the lost attempt atomically with the re-queue.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

from pgjobs.queue.context import JobContext, JobTransaction
from pgjobs.queue.jobs import RescuedJob
from pgjobs.queue.outcomes import Outcome

Run = Callable[[JobContext], Awaitable[Outcome | None]] | Callable[[JobContext], Outcome | None]
LeaseExpiredHook = Callable[[JobTransaction, RescuedJob], Awaitable[None]]


@dataclass(frozen=True)
class Handler:
    kind: str
    run: Run
    payload_model: type[BaseModel] | None = None
    on_lease_expired: LeaseExpiredHook | None = None
    # False: the worker hands the raw payload over and the handler validates it (and can audit
    # the failure); the model still validates `pgjobs enqueue` input.
    validate_payload: bool = True
    timeout: float | None = None  # seconds; the handler is cancelled and the attempt fails with `timeout`
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.run))


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(
        self,
        kind: str,
        run: Run,
        *,
        payload_model: type[BaseModel] | None = None,
        on_lease_expired: LeaseExpiredHook | None = None,
        validate_payload: bool = True,
    ) -> Handler:
        return self.add(Handler(kind, run, payload_model, on_lease_expired, validate_payload))

    def add(self, handler: Handler) -> Handler:
        if handler.kind in self._handlers:
            raise ValueError(f"a handler for kind {handler.kind!r} is already registered")
        self._handlers[handler.kind] = handler
        return handler

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, kind: str) -> bool:
        return kind in self._handlers


class NoopPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sleep_ms: int = Field(default=0, ge=0, le=3_600_000)


async def run_noop(ctx: JobContext) -> None:
    """Does nothing, or sleeps `sleep_ms` (smoke tests, benchmarks, crash drills)."""
    if ctx.payload.sleep_ms:
        await asyncio.sleep(ctx.payload.sleep_ms / 1000)


def default_registry() -> Registry:
    registry = Registry()
    registry.register("noop", run_noop, payload_model=NoopPayload)
    return registry
