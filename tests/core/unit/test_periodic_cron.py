"""Cron slots (croniter) and periodic declarations: checked when the app is declared, not at 3 a.m."""

from datetime import datetime, timezone

import pytest

from pgjobs.app import App
from pgjobs.errors import ConfigError
from pgjobs.queue.periodic import Cron

UTC = timezone.utc


def test_slots_at_on_and_between_slot_boundaries():
    minutely = Cron.parse("* * * * *", what="t")
    on = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert minutely.latest(on) == on  # a moment on a slot is that slot's
    assert minutely.latest(on.replace(second=59)) == on
    assert minutely.after(on) == datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    assert minutely.between(on, on.replace(minute=3), 10) == [on.replace(minute=m) for m in (1, 2, 3)]
    assert minutely.between(on, on.replace(minute=3), 2) == [on.replace(minute=m) for m in (1, 2)]
    seconds = Cron.parse("* * * * * */10", what="t")  # 6 fields: seconds last (croniter's default)
    assert seconds.after(on) == datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    assert seconds.latest(on.replace(second=25, microsecond=5)) == on.replace(second=20)
    assert Cron.parse("@daily", what="t").after(on) == datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("cron, problem", [
    ("61 * * * *", "invalid cron"),
    ("every day", "needs 5 fields"),
    ("* * * * * * *", "needs 5 fields"),
    ("0 0 30 2 *", "never fires"),
])
def test_a_bad_cron_fails_at_declaration_naming_the_schedule(cron, problem):
    app = App("shop")
    with pytest.raises(ConfigError, match=rf"periodic job 'nightly': .*{problem}"):
        @app.periodic(cron, name="nightly")
        @app.task("sweep")
        async def sweep() -> None: ...
    assert app.periodics == {}


def test_an_app_declares_schedules_checked_at_declaration():
    app = App("shop")

    @app.periodic("0 3 * * *", payload={"days": 30})
    @app.task("expire_carts", queue="maintenance", max_attempts=2)
    async def expire_carts(days: int) -> None: ...

    (schedule,) = app.schedules()
    assert (schedule.app, schedule.name, schedule.cron.expression) == ("shop", "expire_carts", "0 3 * * *")
    assert (schedule.job.kind, schedule.job.queue, schedule.job.max_attempts, dict(schedule.job.payload)) == (
        "expire_carts", "maintenance", 2, {"days": 30})
    outer = App("outer", include=[app])
    assert outer.schedules()[0].app == "shop"  # keyed by the app that declares it


def test_two_included_apps_may_not_bring_schedules_of_the_same_name():
    def app_with_nightly(name):
        app = App(name)
        app.periodic("0 3 * * *", name="nightly")(app.task(f"{name}_sweep")(lambda: None))
        return app

    shop, billing = app_with_nightly("shop"), app_with_nightly("billing")
    with pytest.raises(ConfigError, match="periodic job named 'nightly' is already declared"):
        App("outer", include=[shop, billing])
    assert App("outer", include=[shop]).periodics["nightly"].app == "shop"
