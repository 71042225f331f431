"""A small shop built on pgjobs as a user's app is (tests/core/e2e/test_shop_app.py runs it through
`pgjobs --app shop_app:app`): its own `orders` table (migrations/), a card charge that enqueues the
receipt in the same transaction as the order's new status, a receipt mailer held to a global SMTP
rate, and a nightly periodic job that expires unpaid orders.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import typer

from pgjobs.app import App
from pgjobs.cli.common import cli, print_json
from pgjobs.queue import Complete, Discard

SMTP_RATE = "5/s"  # the mail provider's limit, across every worker

app = App("shop", migrations=Path(__file__).parent / "migrations", rate_limits={"smtp": SMTP_RATE})


@app.task("charge_card", queue="payments", max_attempts=3)
async def charge_card(ctx, order_id: int) -> Complete:
    """Charge the order's card (a declined card: total <= 0); on success, the receipt follows."""
    async with ctx.pool.connection() as conn:
        cur = await conn.execute("SELECT total_cents FROM orders WHERE id = %s", (order_id,))
        row = await cur.fetchone()
    if row is None:
        raise Discard(f"no order {order_id}")
    if row[0] <= 0:
        async def declined(tx) -> None:
            await tx.execute("UPDATE orders SET status = 'declined' WHERE id = %s", (order_id,))
        raise Discard(f"card declined for order {order_id}", write=declined)

    async def paid(tx) -> None:
        await tx.execute("UPDATE orders SET status = 'paid', paid_at = now() WHERE id = %s", (order_id,))
        await send_receipt.enqueue_child(tx, order_id=order_id)

    return Complete(paid)


@app.task("send_receipt", queue="mail", max_attempts=5, timeout=30)
async def send_receipt(ctx, order_id: int) -> Complete:
    await ctx.limits.acquire("smtp")  # one slot per mail sent
    sent_at = datetime.now(timezone.utc)  # "sent" now: the test checks the spacing of these

    async def sent(tx) -> None:
        await tx.execute("UPDATE orders SET receipt_sent_at = %s WHERE id = %s", (sent_at, order_id))

    return Complete(sent)


@app.periodic("0 3 * * *", payload={"older_than_days": 7})
@app.task("expire_unpaid", queue="maintenance")
async def expire_unpaid(ctx, older_than_days: int) -> Complete:
    async def expire(tx) -> None:
        await tx.execute("UPDATE orders SET status = 'expired' WHERE status = 'new'"
                         " AND created_at < now() - make_interval(days => %s)", (older_than_days,))

    return Complete(expire)


@app.command("place-order")
def place_order(ctx: typer.Context, customer: str = typer.Argument(...),
                total_cents: int = typer.Option(..., "--total-cents"),
                json_output: bool = typer.Option(False, "--json")) -> None:
    """Insert an order and enqueue its charge in the same transaction (both or neither)."""
    with cli(ctx).connect() as conn:
        (order_id,) = conn.execute("INSERT INTO orders (customer, total_cents) VALUES (%s, %s) RETURNING id",
                                   (customer, total_cents)).fetchone()
        job = charge_card.enqueue(conn, order_id=order_id)
    if json_output:
        print_json({"order_id": order_id, "job_id": job.id})
    else:
        typer.echo(f"order {order_id} placed; charge_card job {job.id}")
