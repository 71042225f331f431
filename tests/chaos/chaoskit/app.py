"""The chaos workload's app (`pgjobs --app chaoskit.app:app worker`): one `chaos` kind that stays in
flight `sleep_ms`, then completes with an effect row in `chaos_effects` written in its completion
transaction (which `write_sleep_ms` keeps open longer, so a partition can strike inside it).

CHAOS_WORKER names the worker process in its effect rows (the harness sets it per worker).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pgjobs.app import App
from pgjobs.queue import Complete

KIND = "chaos"
WORKER = os.environ.get("CHAOS_WORKER", "?")

app = App("chaos", migrations=Path(__file__).with_name("migrations"))


@app.task(KIND, max_attempts=25, backoff_base_ms=100, backoff_cap_ms=1000)
async def chaos(ctx, sleep_ms: int = 50, write_sleep_ms: int = 0) -> Complete:
    await asyncio.sleep(sleep_ms / 1000)

    async def effect(tx) -> None:
        await tx.execute("INSERT INTO chaos_effects (job_id, attempt, worker) VALUES (%s, %s, %s)",
                         (tx.job.id, tx.job.attempt, WORKER))
        if write_sleep_ms:
            await tx.execute("SELECT pg_sleep(%s)", (write_sleep_ms / 1000,))

    return Complete(effect)
