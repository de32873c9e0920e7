"""wsmq.engine.flag.Flag: the one-waiter event of consumers and ack pipelines."""

from __future__ import annotations

import asyncio

from wsmq.engine.flag import Flag


async def test_wait_returns_at_once_when_set_and_after_set_otherwise() -> None:
    flag = Flag()
    assert not flag.is_set()
    flag.set()
    async with asyncio.timeout(1):
        await flag.wait()
        await flag.waiter()
    flag.clear()
    waiter = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    flag.set()
    async with asyncio.timeout(1):
        await waiter
    assert flag.is_set()


async def test_a_cancelled_wait_leaves_the_flag_usable() -> None:
    flag = Flag()
    try:
        async with asyncio.timeout(0.01):
            await flag.waiter()
    except TimeoutError:
        pass
    flag.set()  # the cancelled future is not touched again
    async with asyncio.timeout(1):
        await flag.wait()
    flag.clear()
    later = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    flag.set()
    async with asyncio.timeout(1):
        await later
