"""Run by test_rate_limits in separate processes: take tokens until a deadline, print grant times."""

import asyncio
import json
import sys
import time

from pgjobs.database import open_pool
from pgjobs.queue import RateLimits


async def main(dsn: str, start: float, seconds: float) -> None:
    pool = await open_pool(dsn, max_size=1)
    limits = RateLimits(pool, {"api": 0.2})  # 5 per second
    await asyncio.sleep(max(0.0, start - time.time()))  # all processes begin together
    grants = []
    while time.time() < start + seconds:
        async with limits.slot("api"):
            grants.append(time.time())
    await pool.close()
    print(json.dumps(grants))


asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
