"""The app API: what @app.task infers from a handler, what a Task enqueues, how --app loads."""

from __future__ import annotations

import asyncio
import sys
import types

import pytest
from pydantic import BaseModel

from pgjobs import App, ConfigError, JobContext
from pgjobs.app import builtin_app, load_app
from pgjobs.queue import PayloadError


class Receipt(BaseModel):
    order_id: int
    note: str = ""


def _ctx(payload=None, validated=None, state=None) -> JobContext:
    from pgjobs.queue.jobs import Job

    job = Job(1, 1, None, "k", "default", "{}", 0, None, 1, 0, 3, 2000, 600000, None, None)
    if payload is not None:
        job._decoded = payload
    return JobContext(job, None, None, "w", validated, state)


def test_keyword_fields_become_the_payload_model_and_reach_the_handler():
    app = App("shop")
    seen = {}

    @app.task("send_receipt", queue="mail", max_attempts=5, timeout=30)
    async def send_receipt(ctx, order_id: int, note: str = "thanks") -> None:
        seen.update(ctx=ctx, order_id=order_id, note=note)

    handler = app.registry().get("send_receipt")
    assert handler.timeout == 30 and handler.payload_model is send_receipt.payload_model
    model = handler.payload_model.model_validate({"order_id": "42"})
    ctx = _ctx(validated=model)
    asyncio.run(handler.run(ctx))
    assert seen == {"ctx": ctx, "order_id": 42, "note": "thanks"}
    with pytest.raises(Exception):
        handler.payload_model.model_validate({"order_id": 1, "surprise": True})  # extra fields refused


def test_one_model_parameter_is_the_payload_and_ctx_is_optional():
    app = App("shop")

    @app.task()
    def receipt(payload: Receipt) -> str:  # a plain def, no ctx
        return f"{payload.order_id}:{payload.note}"

    handler = app.registry().get("receipt")
    assert handler.payload_model is Receipt and not handler.is_async
    assert handler.run(_ctx(validated=Receipt(order_id=7, note="x"))) == "7:x"


def test_a_handler_taking_only_ctx_reads_the_payload_itself():
    app = App("shop")

    @app.task("raw", payload_model=Receipt, validate_payload=False)
    async def raw(ctx):
        return ctx.payload

    handler = app.registry().get("raw")
    assert handler.payload_model is Receipt and handler.validate_payload is False
    assert asyncio.run(handler.run(_ctx(payload={"anything": 1}))) == {"anything": 1}


def test_task_specs_carry_the_kinds_defaults_and_per_call_options():
    app = App("shop")

    @app.task("send_receipt", queue="mail", priority=-1, max_attempts=5)
    async def send_receipt(ctx, order_id: int) -> None: ...

    spec = send_receipt.spec(order_id=42)
    assert (spec.kind, spec.queue, spec.priority, spec.max_attempts, spec.payload) == (
        "send_receipt", "mail", -1, 5, {"order_id": 42})
    later = send_receipt.options(delay=30, dedupe_key="order:42").spec(order_id=42)
    assert (later.delay, later.dedupe_key, later.queue) == (30, "order:42", "mail")
    assert send_receipt.spec(order_id=42).delay == 0  # options() returned a copy
    with pytest.raises(PayloadError, match="order_id"):
        send_receipt.spec(order_id="not a number")
    with pytest.raises(TypeError, match="bogus"):
        send_receipt.options(bogus=1)


def test_app_queues_rate_limits_and_kinds():
    app = App("shop", rate_limits={"smtp": "10/s", "partner": "60/min"})
    app.task("a", queue="mail")(lambda ctx: None)
    app.task("b")(lambda ctx: None)
    assert app.queues == ["default", "mail"]
    assert app.intervals() == {"smtp": 0.1, "partner": 1.0}
    assert app.intervals({"smtp": 1.0}) == {"smtp": 1.0, "partner": 1.0}
    assert app.registry().kinds() == ["a", "b"]
    with pytest.raises(ConfigError, match="declared twice"):
        app.task("a")(lambda ctx: None)
    with pytest.raises(ConfigError, match="bad rate limit"):
        App("x", rate_limits={"smtp": "ten per second"})


def test_periodic_goes_above_task_and_checks_its_payload_now():
    app = App("shop")

    @app.periodic("0 3 * * *", payload={"order_id": 1})
    @app.task("nightly")
    async def nightly(ctx, order_id: int) -> None: ...

    assert app.periodics["nightly"].cron == "0 3 * * *"
    with pytest.raises(PayloadError):
        app.periodic("* * * * *", name="other", payload={"order_id": "x"})(nightly)
    with pytest.raises(ConfigError, match="above @app.task"):
        app.periodic("* * * * *")(lambda ctx: None)


def test_include_serves_another_apps_kinds_and_components(tmp_path):
    base = App("base", migrations=tmp_path, rate_limits={"smtp": "1/s"})
    base.task("ping")(lambda ctx: None)
    app = App("shop", include=[base])
    assert app.registry().kinds() == ["ping"]
    assert [c.name for c in app.components] == ["base"] and app.intervals() == {"smtp": 1.0}


@pytest.mark.parametrize("reference, message", [
    ("nomodule", "expected module:attribute"),
    ("pgjobs_no_such_module:app", "cannot import"),
    ("os:nothing_here", "has no attribute"),
    ("os:sep", "not a pgjobs.App"),
])
def test_load_app_errors_are_one_line_config_errors(reference, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_app(reference)
    assert "\n" not in str(caught.value)


def test_load_app_takes_an_app_or_a_factory(monkeypatch):
    module = types.ModuleType("pgjobs_test_factory_app")
    module.app = builtin_app()
    module.make = lambda: module.app
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert load_app(f"{module.__name__}:app") is module.app
    assert load_app(f"{module.__name__}:make") is module.app
    assert builtin_app().registry().kinds() == ["noop"]
