"""A copier process that SIGKILLs itself right after its k-th member copy landed in Redis.

    python -m tests.groups.copier_proc URL KILL_AFTER BATCH_SIZE VT

Member copies run one at a time (``member_concurrency=1``), so the kill point is exact: the
first ``KILL_AFTER`` (batch, member) copies are stored, the batch in hand is neither finished
nor deleted from the group.  Exits 0 without being killed if it copies fewer than that.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from wsmq.engine.group_copier import GroupCopier


async def main(url: str, kill_after: int, batch_size: int, vt: int) -> None:
    done = 0

    def member_copied(group: str, member: str, statuses: list[str]) -> None:
        nonlocal done
        done += 1
        print(f"{member} {' '.join(statuses)}", flush=True)
        if done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    copier = GroupCopier.from_url(
        url,
        realtime=False,
        batch_size=batch_size,
        vt=vt,
        member_concurrency=1,
        on_member_copied=member_copied,
    )
    try:
        await copier.run_once()
    finally:
        await copier.stop()


if __name__ == "__main__":
    url, kill_after, batch_size, vt = sys.argv[1:5]
    asyncio.run(main(url, int(kill_after), int(batch_size), int(vt)))
