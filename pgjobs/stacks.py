"""What a running worker is waiting on: `kill -USR1 <pid>` logs one line per asyncio task with
the chain of coroutines it awaits, outermost first (`pgjobs worker` installs the handler).

asyncio's own Task.get_stack() stops at a suspended task's outermost coroutine; this follows each
coroutine's `cr_await` down to the future it waits for, which is where a hang is.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

log = logging.getLogger("pgjobs.stacks")


def awaiting(task: asyncio.Task) -> list[str]:
    """`file:line in function` for each coroutine (or generator) from the task's outermost inwards,
    then what the innermost one awaits when that is not a coroutine (a Future, say)."""
    chain: list[str] = []
    current: Any = task.get_coro()
    while current is not None:
        frame = getattr(current, "cr_frame", None) or getattr(current, "gi_frame", None)
        if frame is None:  # a Future or other awaitable: the end of the chain
            if not hasattr(current, "cr_code") and not hasattr(current, "gi_code"):
                chain.append(f"awaiting {type(current).__name__}")
            break
        chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        current = getattr(current, "cr_await", None) or getattr(current, "gi_yieldfrom", None)
    return chain


def log_tasks() -> None:
    """Log every task of the running loop (call on the loop's thread)."""
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    log.warning("%d asyncio task(s) running", len(tasks))
    for task in tasks:
        log.warning("task %s", task.get_name(), extra={"awaits": " -> ".join(awaiting(task))})


def install(loop: asyncio.AbstractEventLoop) -> None:
    """SIGUSR1 logs the loop's tasks (the signal's default would end the process)."""
    loop.add_signal_handler(signal.SIGUSR1, log_tasks)
