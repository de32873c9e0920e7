"""``merge_in_send_order``: hand-offs held during a receive take their place in send order
(the engine-level test is ``tests/engine/test_delivery.py``, hand-off section)."""

from __future__ import annotations

from wsmq.engine.consumer import merge_in_send_order
from wsmq.queue.ids import make_id
from wsmq.queue.models import Message


def _msg(sec: int, body: str) -> Message:
    return Message(
        id=make_id(1_700_000_000 + sec, 0, body * 22), message=body, rc=1, fr=0, sent=0.0
    )


def test_merge_puts_each_hand_off_before_the_first_later_message() -> None:
    a, b, c, late = _msg(100, "a"), _msg(200, "b"), _msg(300, "c"), _msg(50, "r")
    # received: a late redelivery first (score order), then b and c; hand-offs sent at 150, 400
    h1, h2 = _msg(150, "x"), _msg(400, "y")
    merged = merge_in_send_order([late, a, c], [h2, h1])
    assert [m.message for m in merged] == ["r", "a", "x", "c", "y"]
    assert merge_in_send_order([], [h1]) == [h1]
    assert [m.message for m in merge_in_send_order([a, b], [])] == ["a", "b"]
