"""The one queue-name rule: RSMQ's pattern minus reserved names, applied by every layer."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from wsmq.auth import InvalidUserData
from wsmq.auth.users import validate_queue_names
from wsmq.protocol import wire as p
from wsmq.protocol.names import QNAME_RULE, RESERVED_QNAMES, is_valid_qname
from wsmq.queue import InvalidFormat, Queues


def test_the_rule() -> None:
    assert RESERVED_QNAMES == {"QUEUES"}
    assert is_valid_qname("queues") and is_valid_qname("QUEUES_") and is_valid_qname("a" * 160)
    for bad in ("QUEUES", "", "a:b", "a" * 161, None, 5):
        assert not is_valid_qname(bad)
    assert "QUEUES" in QNAME_RULE and "1-160" in QNAME_RULE


async def test_queue_layer_refuses_the_registry_key_and_leaves_it_intact(
    queues: Queues, raw: Redis
) -> None:
    await queues.create_queue("q1")
    for op in (
        lambda: queues.create_queue("QUEUES"),
        lambda: queues.send_message("QUEUES", "x"),
        lambda: queues.receive_message("QUEUES"),
        lambda: queues.visible_counts(["q1", "QUEUES"]),
    ):
        with pytest.raises(InvalidFormat) as err:
            await op()
        assert err.value.name == "invalidFormat"
        assert err.value.message.startswith("Invalid qname format: QUEUES is reserved")
        assert QNAME_RULE in err.value.message
    assert await raw.type("rsmq:QUEUES") == "set"
    assert await queues.list_queues() == ["q1"]
    # RSMQ's own message, byte for byte, for names breaking its pattern.
    with pytest.raises(InvalidFormat, match=r"^Invalid qname format$"):
        await queues.create_queue("a b")


def test_protocol_refuses_reserved_names_with_the_rule() -> None:
    for frame in ("/subscribe/QUEUES", "/unsubscribe/QUEUES", "/send/QUEUES hi"):
        with pytest.raises(p.ProtocolError) as err:
            p.parse_frame(frame)
        assert err.value.code == p.ErrorCode.INVALID_QUEUE
        assert "QUEUES is reserved" in err.value.message
    assert not p.is_valid_qname("QUEUES") and p.is_valid_qname("queues")


def test_user_store_refuses_reserved_names_in_queue_lists() -> None:
    with pytest.raises(InvalidUserData, match="QUEUES"):
        validate_queue_names("a,QUEUES", "queues")
    assert validate_queue_names("a,queues") == ("a", "queues")
