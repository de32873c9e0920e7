"""KeyedLocks: one key's holders exclude each other, other keys go on, idle keys are forgotten."""

from __future__ import annotations

import asyncio

from wsmq.engine.keyed_locks import KeyedLocks


async def test_same_key_in_order_other_keys_concurrently() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    release_a1 = asyncio.Event()
    b_inside = asyncio.Event()

    async def holder(key: str, name: str, wait: asyncio.Event | None = None) -> None:
        async with locks.hold(key):
            order.append(f"{name} in")
            if name == "b":
                b_inside.set()
            if wait is not None:
                await wait.wait()
            order.append(f"{name} out")

    a1 = asyncio.create_task(holder("a", "a1", release_a1))
    await asyncio.sleep(0)
    a2 = asyncio.create_task(holder("a", "a2"))
    b = asyncio.create_task(holder("b", "b"))
    async with asyncio.timeout(5):
        await b_inside.wait()  # "b" did not wait for "a"'s holder
        assert "a2 in" not in order  # "a2" waits for "a1"
        assert len(locks) >= 1
        release_a1.set()
        await asyncio.gather(a1, a2, b)
    assert order.index("a1 out") < order.index("a2 in")
    assert len(locks) == 0  # nobody holds or waits: nothing kept


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    locks = KeyedLocks()
    release = asyncio.Event()

    async def hold() -> None:
        async with locks.hold("q"):
            await release.wait()

    first = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(waiter, return_exceptions=True)
        assert len(locks) == 1
        release.set()
        await first
    assert len(locks) == 0
