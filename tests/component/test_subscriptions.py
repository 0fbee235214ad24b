"""A pub/sub listener stops when asked, whenever it is asked: redis-py swallows a
cancellation that arrives while it connects (redis-py issue #2551), and a gateway whose
port was taken shut down at that moment and hung (sluice.subscriptions.stop_listener)."""

from __future__ import annotations

import asyncio

import pytest

from sluice.subscriptions import listen, stop_listener

ENDED_WITHIN_S = 10.0


# Every half millisecond of the connection, where one cancellation is easily lost, then later.
@pytest.mark.parametrize("after_s", [step / 2000 for step in range(21)] + [0.05, 0.5])
def test_a_listener_stopped_at_any_moment_of_its_connection_ends(
    isolated_redis_url: str, after_s: float
) -> None:
    async def run() -> bool:
        task = asyncio.create_task(
            listen(isolated_redis_url, "sluice:test:stop", print, lambda: None, "test")
        )
        await asyncio.sleep(after_s)
        stopper = asyncio.create_task(stop_listener(task))
        await asyncio.wait({stopper}, timeout=ENDED_WITHIN_S)  # the stopper is not cancelled
        ended = task.done()
        while not task.done():  # a failed test still ends its listener
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        await asyncio.wait({stopper}, timeout=1)
        return ended

    assert asyncio.run(run())
