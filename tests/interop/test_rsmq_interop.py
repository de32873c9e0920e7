"""wsmq and the real npm ``rsmq@0.12.4`` on one private Redis: each reads what the other writes.

One Node.js helper process per test (``interop/rsmq_ops.js``) answers JSON requests on a pipe, so
a test makes many RSMQ calls for the price of one process start.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio

from wsmq.cli import main
from wsmq.queue import Message, QueueError, Queues
from wsmq.realtime.listener import RealtimeListener

pytestmark = pytest.mark.interop

HELPER = Path(__file__).resolve().parents[2] / "interop" / "rsmq_ops.js"
TIMEOUT = 20.0  # generous: the machine may be busy; a hang still fails

# Bodies that must arrive byte for byte: non-ASCII, astral-plane emoji (surrogate pairs in JS),
# combining marks, JSON-looking text, control characters, an empty string and a large one.
BODIES = [
    "hello",
    "héllo wörld ñ",
    "日本語のテキスト",
    "emoji 😀👍🏽🇫🇷 👨‍👩‍👧",
    "e\u0301 combining",
    '{"a": [1, 2, "x\\"y"], "b": null}',
    "line1\nline2\r\n\ttab \\ backslash",
    "nul \x00 and \x7f and \x1b[0m",
    "",
    "ü" * 5000,
]


class NodeError(Exception):
    """An RSMQ call in Node failed; ``name`` is RSMQ's error name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class NodeRsmq:
    """The Node.js helper: ``await node.call("sendMessage", qname=..., message=...)``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, node_modules: Path, redis_url: str, ns: str = "rsmq") -> NodeRsmq:
        url = urlsplit(redis_url)
        db = int(url.path.strip("/") or 0)
        config = {"host": url.hostname, "port": url.port, "ns": ns, "db": db}
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(HELPER),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=2**22,
        )
        node = cls(proc)
        assert await node.call("ping") == "pong"
        return node

    async def request(self, req: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req).encode() + b"\n")
        async with asyncio.timeout(TIMEOUT):
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node helper exited with {await self.proc.wait()}")
        return json.loads(line)

    async def call(self, op: str, *, realtime: bool = False, **args: Any) -> Any:
        answer = await self.request({"op": op, "args": args, "realtime": realtime})
        if "error" in answer:
            raise NodeError(answer["error"]["name"], answer["error"]["message"])
        return answer["ok"]

    async def batch(self, ops: list[dict[str, Any]]) -> list[Any]:
        """Run many calls in one exchange; failed ones come back as ``NodeError`` values."""
        answers = await self.request(ops)
        return [
            NodeError(a["error"]["name"], a["error"]["message"]) if "error" in a else a["ok"]
            for a in answers
        ]

    async def close(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def node(node_modules: Path, redis_url: str) -> AsyncIterator[NodeRsmq]:
    helper = await NodeRsmq.start(node_modules, redis_url)
    try:
        yield helper
    finally:
        await helper.close()


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(redis_url, ns="rsmq", realtime=True)
    try:
        yield q
    finally:
        await q.close()


def js_sent(msg_id: str) -> float:
    return int(msg_id[:10], 36) / 1000


def assert_same_message(py: Message, js: dict[str, Any]) -> None:
    assert py.id == js["id"]
    assert py.message == js["message"]
    assert py.rc == js["rc"]
    assert py.fr == js["fr"]
    assert float(py.sent) == pytest.approx(js["sent"], abs=1e-3)


async def test_node_sends_wsmq_receives_bodies_identical(
    node: NodeRsmq, queues: Queues, redis_url: str
) -> None:
    await node.call("createQueue", qname="n2p", maxsize=-1)
    sends = [{"op": "sendMessage", "args": {"qname": "n2p", "message": b}} for b in BODIES]
    ids = await node.batch(sends)
    assert all(isinstance(i, str) and len(i) == 32 for i in ids)

    got = await queues.receive_messages("n2p", len(BODIES) + 5, vt=60)
    assert [m.id for m in got] == ids  # FIFO, the same ids
    assert [m.message for m in got] == BODIES
    for m in got:
        assert m.rc == 1
        assert m.sent == pytest.approx(js_sent(m.id), abs=1e-3)
    # What Node stored is exactly the UTF-8 encoding of the JS string.
    raw = redis.asyncio.Redis.from_url(redis_url)
    try:
        stored = await raw.hmget("rsmq:n2p:Q", ids)
    finally:
        await raw.aclose()
    assert stored == [b.encode("utf-8") for b in BODIES]


async def test_wsmq_sends_node_receives_bodies_identical(node: NodeRsmq, queues: Queues) -> None:
    await queues.create_queue("p2n", maxsize=-1)
    ids = [await queues.send_message("p2n", b) for b in BODIES]
    got = await node.batch(
        [{"op": "receiveMessage", "args": {"qname": "p2n", "vt": 60}} for _ in BODIES]
    )
    assert [m["id"] for m in got] == ids
    assert [m["message"] for m in got] == BODIES
    assert all(m["rc"] == 1 and m["sent"] == pytest.approx(js_sent(m["id"])) for m in got)
    assert await node.call("receiveMessage", qname="p2n") == {}  # all hidden now


async def test_ids_are_accepted_by_both_sides(node: NodeRsmq, queues: Queues) -> None:
    await queues.create_queue("ids")
    py_ids = [await queues.send_message("ids", f"py{i}") for i in range(3)]
    js_ids = await node.batch(
        [{"op": "sendMessage", "args": {"qname": "ids", "message": f"js{i}"}} for i in range(3)]
    )
    # Node deletes wsmq ids (never received and received), wsmq deletes Node ids.
    await queues.receive_message("ids", vt=60)
    assert await node.call("deleteMessage", qname="ids", id=py_ids[0]) == 1
    assert await node.call("deleteMessage", qname="ids", id=py_ids[1]) == 1
    assert await node.call("deleteMessage", qname="ids", id=py_ids[1]) == 0
    assert await queues.delete_message("ids", js_ids[0]) is True
    assert await queues.delete_message("ids", js_ids[0]) is False
    assert await queues.delete_messages("ids", [js_ids[1], js_ids[2], py_ids[2]]) == 3
    attrs = await queues.get_queue_attributes("ids")
    assert attrs.msgs == 0 and attrs.totalsent == 6
    assert (await node.call("getQueueAttributes", qname="ids"))["msgs"] == 0


async def test_attributes_and_totals_agree(node: NodeRsmq, queues: Queues) -> None:
    await node.call("createQueue", qname="attrs", vt=45, delay=0, maxsize=2048)
    for i in range(3):
        await queues.send_message("attrs", f"p{i}")
        await node.call("sendMessage", qname="attrs", message=f"n{i}")
    await queues.receive_messages("attrs", 2, vt=100)
    await node.call("receiveMessage", qname="attrs", vt=100)
    await node.call("popMessage", qname="attrs")
    await queues.send_message("attrs", "delayed", delay=500)
    # Everything left is invisible for a while, so RSMQ's second-resolution hiddenmsgs and
    # wsmq's millisecond one agree here.
    await queues.receive_messages("attrs", 10, vt=100)

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        js = await node.call("getQueueAttributes", qname="attrs")
        py = await queues.get_queue_attributes("attrs")
        return js, {k: getattr(py, k) for k in js}

    js, py = await both()
    assert js == py
    assert js["totalsent"] == 7 and js["msgs"] == 6 and js["hiddenmsgs"] == 6
    assert js["vt"] == 45 and js["maxsize"] == 2048

    # Changes made by one side are read by the other.
    await node.call("setQueueAttributes", qname="attrs", vt=1234, delay=7, maxsize=-1)
    js, py = await both()
    assert js == py and (py["vt"], py["delay"], py["maxsize"]) == (1234, 7, -1)
    await queues.set_queue_attributes("attrs", vt=5, delay=0, maxsize=65536)
    js, py = await both()
    assert js == py and (js["vt"], js["delay"], js["maxsize"]) == (5, 0, 65536)


async def test_hiddenmsgs_deviation_is_only_rsmqs_second_rounding(
    node: NodeRsmq, queues: Queues
) -> None:
    """wsmq counts hidden messages to the ms; RSMQ counts this second's visible ones too."""
    await queues.create_queue("hid")
    await queues.send_message("hid", "visible now")
    js = await node.call("getQueueAttributes", qname="hid")
    py = await queues.get_queue_attributes("hid")
    assert py.hiddenmsgs == 0
    assert js["hiddenmsgs"] in (0, 1)  # 1 while Redis TIME is still in the send's second
    assert js["msgs"] == py.msgs == 1


async def test_queue_created_by_one_is_used_by_the_other(node: NodeRsmq, queues: Queues) -> None:
    await node.call("createQueue", qname="fromnode", vt=5, maxsize=1024)
    await queues.create_queue("frompy", vt=7, delay=0, maxsize=-1)
    assert sorted(await queues.list_queues()) == ["fromnode", "frompy"]
    assert sorted(await node.call("listQueues")) == ["fromnode", "frompy"]

    with pytest.raises(QueueError) as exc:
        await queues.create_queue("fromnode")
    assert exc.value.name == "queueExists"
    with pytest.raises(NodeError) as nexc:
        await node.call("createQueue", qname="frompy")
    assert nexc.value.name == "queueExists"

    # A Node-created queue is fully usable from wsmq and the reverse.
    msg_id = await queues.send_message("fromnode", "to a node queue")
    m = await queues.receive_message("fromnode")
    assert m is not None and m.id == msg_id
    big = "x" * 70_000  # above 64 KiB: fine on a maxsize -1 queue
    big_id = await node.call("sendMessage", qname="frompy", message=big)
    got = await queues.pop_message("frompy")
    assert got is not None and got.id == big_id and got.message == big

    # Deleted by one, gone for the other.
    assert await node.call("deleteQueue", qname="frompy") == 1
    assert not await queues.queue_exists("frompy")
    await queues.delete_queue("fromnode")
    assert await node.call("listQueues") == []
    with pytest.raises(NodeError) as nexc:
        await node.call("sendMessage", qname="fromnode", message="x")
    assert nexc.value.name == "queueNotFound"


async def test_maxsize_counts_utf16_units_like_rsmq(node: NodeRsmq, queues: Queues) -> None:
    await queues.create_queue("size", maxsize=1024)
    cases = {
        "a" * 1024: True,
        "a" * 1025: False,
        "é" * 1024: True,  # 2048 UTF-8 bytes, 1024 UTF-16 units
        "😀" * 512: True,  # 512 code points, 1024 UTF-16 units, 2048 bytes
        "😀" * 512 + "a": False,  # 1025 units although only 513 code points
    }
    for body, fits in cases.items():
        js_len = await node.call("length", message=body)
        try:
            await node.call("sendMessage", qname="size", message=body)
            node_ok = True
        except NodeError as err:
            assert err.name == "messageTooLong"
            node_ok = False
        try:
            await queues.send_message("size", body)
            py_ok = True
        except QueueError as err:
            assert err.name == "messageTooLong" and str(err) == "Message too long"
            py_ok = False
        assert (node_ok, py_ok) == (fits, fits), f"{len(body)} code points, {js_len} JS units"


async def test_receive_on_one_side_visibility_and_delete_on_the_other(
    node: NodeRsmq, queues: Queues
) -> None:
    await queues.create_queue("vis")
    first = await queues.send_message("vis", "one")
    js = await node.call("receiveMessage", qname="vis", vt=60)
    assert js["id"] == first and js["rc"] == 1
    assert await queues.receive_message("vis") is None  # hidden for 60 s
    assert await queues.change_message_visibility("vis", first, 0) is True
    py = await queues.receive_message("vis", vt=60)
    assert py is not None and py.id == first and py.rc == 2 and py.fr == js["fr"]
    assert await node.call("receiveMessage", qname="vis") == {}
    assert await node.call("changeMessageVisibility", qname="vis", id=first, vt=0) == 1
    js2 = await node.call("receiveMessage", qname="vis", vt=60)
    assert js2["rc"] == 3 and js2["fr"] == js["fr"]
    # Node received it; wsmq deletes it (the consumer acked on another node).
    assert await queues.delete_message("vis", first) is True
    assert await node.call("changeMessageVisibility", qname="vis", id=first, vt=0) == 0
    assert await queues.change_message_visibility("vis", first, 0) is False
    # Node's fake id and wsmq's: neither side knows it.
    fake = "a" * 32
    assert await node.call("changeMessageVisibility", qname="vis", id=fake, vt=5) == 0
    assert await queues.change_message_visibility("vis", fake, 5) is False
    attrs = await queues.get_queue_attributes("vis")
    assert attrs.msgs == 0 and attrs.totalrecv == 3


async def test_pop_message_across(node: NodeRsmq, queues: Queues) -> None:
    await node.call("createQueue", qname="pop")
    py_id = await queues.send_message("pop", "from wsmq")
    js = await node.call("popMessage", qname="pop")
    assert js["id"] == py_id and js["message"] == "from wsmq" and js["rc"] == 1
    assert await queues.pop_message("pop") is None

    js_id = await node.call("sendMessage", qname="pop", message="from node ✓")
    await node.call("receiveMessage", qname="pop", vt=0)  # rc 1, fr set, still visible
    py = await queues.pop_message("pop")
    assert py is not None and py.id == js_id and py.message == "from node ✓" and py.rc == 2
    assert await node.call("popMessage", qname="pop") == {}
    js_attrs = await node.call("getQueueAttributes", qname="pop")
    assert js_attrs["msgs"] == 0 and js_attrs["totalrecv"] == 3 and js_attrs["totalsent"] == 2


async def test_node_realtime_publish_wakes_wsmq_listener(
    node: NodeRsmq, queues: Queues, redis_url: str
) -> None:
    await queues.create_queue("rt1")
    await queues.create_queue("rt_other")
    listener = RealtimeListener(redis_url, "rsmq")
    seen: asyncio.Queue[str] = asyncio.Queue()
    listener.set_callback(seen.put_nowait)
    try:
        assert await listener.subscribe("rt1") is True
        # The listener reports a queue once when its subscription is confirmed (so nothing
        # published before is missed); that report came with the confirmation: drop it.
        while not seen.empty():
            assert seen.get_nowait() == "rt1"
        await node.batch(
            [
                {"op": "sendMessage", "args": {"qname": q, "message": "wake up"}, "realtime": True}
                for q in ("rt_other", "rt1", "rt1")
            ]
        )
        # rt_other (not subscribed, published first) is never reported; the two rt1 sends are
        # one or two wake-ups: the listener reports a queue once per read of its connection.
        async with asyncio.timeout(TIMEOUT):
            assert await seen.get() == "rt1"
        while not seen.empty():
            assert seen.get_nowait() == "rt1"
        got = await queues.receive_messages("rt1", 5)
        assert [m.message for m in got] == ["wake up", "wake up"]
    finally:
        await listener.close()


async def test_wsmq_realtime_publish_seen_by_node_subscriber(
    node: NodeRsmq, queues: Queues
) -> None:
    await node.call("createQueue", qname="rt2")
    assert queues.realtime_channel("rt2") == "rsmq:rt:rt2"
    await node.call("subscribe", channel="rsmq:rt:rt2")
    await queues.send_message("rt2", "a")
    await queues.send_message("rt2", "b", delay=100)  # hidden ones count too, as in RSMQ
    await node.call("sendMessage", qname="rt2", message="c", realtime=True)
    got = await node.call("nextMessages", count=3, timeoutMs=5000)
    # Same payload from both: ZCARD of the queue after the send.
    assert got == [{"channel": "rsmq:rt:rt2", "message": str(n)} for n in (1, 2, 3)]


async def test_dlq_and_ttl_fields_do_not_break_rsmq(node: NodeRsmq, queues: Queues) -> None:
    await queues.create_queue("dead")
    await queues.create_queue(
        "work", vt=30, max_receive_count=2, dead_letter_queue="dead", message_ttl=3600
    )
    js = await node.call("getQueueAttributes", qname="work")
    assert (js["vt"], js["delay"], js["maxsize"], js["msgs"]) == (30, 0, 65536, 0)

    msg_id = await node.call("sendMessage", qname="work", message="poison")
    for rc in (1, 2):
        got = await node.call("receiveMessage", qname="work", vt=0)
        assert got["id"] == msg_id and got["rc"] == rc
    # Node's setQueueAttributes keeps wsmq's extra fields.
    await node.call("setQueueAttributes", qname="work", vt=10)
    attrs = await queues.get_queue_attributes("work")
    assert attrs.vt == 10
    assert (attrs.max_receive_count, attrs.dead_letter_queue, attrs.message_ttl) == (
        2,
        "dead",
        3600,
    )
    # Received twice already: wsmq moves it to the dead-letter queue instead of a third delivery,
    # and Node reads it there with its id, body and receive count intact.
    assert await queues.receive_message("work") is None
    dead = await node.call("receiveMessage", qname="dead")
    assert dead["id"] == msg_id and dead["message"] == "poison" and dead["rc"] == 3
    assert await node.call("deleteMessage", qname="dead", id=msg_id) == 1

    # A normal message on the extended queue still round-trips both ways.
    ok_id = await queues.send_message("work", "fine")
    got = await node.call("receiveMessage", qname="work")
    assert got["id"] == ok_id and got["message"] == "fine"
    assert await node.call("deleteMessage", qname="work", id=ok_id) == 1
    js = await node.call("getQueueAttributes", qname="work")
    assert js["msgs"] == 0 and js["totalsent"] == 2


async def test_custom_namespace_and_database_both_sides(node_modules: Path, redis_url: str) -> None:
    db3 = redis_url.rsplit("/", 1)[0] + "/3"
    helper = await NodeRsmq.start(node_modules, db3, ns="custom")
    q = Queues.from_url(db3, ns="custom")
    try:
        await helper.call("createQueue", qname="nsq")
        assert await q.list_queues() == ["nsq"]
        msg_id = await q.send_message("nsq", "namespaced")
        got = await helper.call("receiveMessage", qname="nsq")
        assert got["id"] == msg_id
        for url, ns in ((db3, "rsmq"), (redis_url, "custom")):
            other = Queues.from_url(url, ns=ns)
            try:
                assert await other.list_queues() == []
            finally:
                await other.close()
    finally:
        await q.close()
        await helper.close()


async def test_rsmq_worker_consumes_what_wsmq_sends(node: NodeRsmq, queues: Queues) -> None:
    """The original product's consumer (npm rsmq-worker 0.5.2, which bundles rsmq 0.7)."""
    await queues.create_queue("legacy")
    bodies = ["first", "zweite ü", "третий 😀"]
    ids = [await queues.send_message("legacy", b) for b in bodies]
    got = await node.call("worker", qname="legacy", count=3, timeoutMs=8000)
    assert got == [{"id": i, "message": b} for i, b in zip(ids, bodies, strict=True)]
    attrs = await queues.get_queue_attributes("legacy")
    assert (attrs.msgs, attrs.totalrecv, attrs.totalsent) == (0, 3, 3)


async def test_queue_defaults_set_by_one_side_apply_on_the_other(
    node: NodeRsmq, queues: Queues, redis_url: str
) -> None:
    await node.call("createQueue", qname="dflt", vt=100)
    await node.call("setQueueAttributes", qname="dflt", delay=50)
    raw = redis.asyncio.Redis.from_url(redis_url)

    async def hidden_for_ms(msg_id: str) -> float:
        sec, usec = await raw.time()
        score = await raw.zscore("rsmq:dflt", msg_id)
        assert score is not None
        return score - (sec * 1000 + usec // 1000)

    try:
        delayed = await queues.send_message("dflt", "uses node's delay")
        assert 45_000 < await hidden_for_ms(delayed) <= 50_000
        now_id = await queues.send_message("dflt", "no delay", delay=0)
        got = await queues.receive_message("dflt")  # the queue's vt, set by Node: 100 s
        assert got is not None and got.id == now_id
        assert 95_000 < await hidden_for_ms(now_id) <= 100_000

        await queues.set_queue_attributes("dflt", vt=200, delay=0)
        js_id = await node.call("sendMessage", qname="dflt", message="node send")
        js = await node.call("receiveMessage", qname="dflt")  # wsmq's vt: 200 s
        assert js["id"] == js_id
        assert 195_000 < await hidden_for_ms(js_id) <= 200_000
    finally:
        await raw.aclose()


async def test_a_thousand_messages_across(node: NodeRsmq, queues: Queues) -> None:
    """RSMQ's own 1000-message scenario, split between the two implementations."""
    await queues.create_queue("many")
    sends = [
        {"op": "sendMessage", "args": {"qname": "many", "message": f"m{i}"}} for i in range(1000)
    ]
    ids = await node.batch(sends)
    assert len(set(ids)) == 1000

    got = await queues.receive_messages("many", 1000, vt=60)
    assert [m.id for m in got] == ids and [m.message for m in got] == [f"m{i}" for i in range(1000)]
    assert await queues.delete_messages("many", ids[::2]) == 500
    odd = ids[1::2]
    changed = await node.batch(
        [
            {"op": "changeMessageVisibility", "args": {"qname": "many", "id": i, "vt": 0}}
            for i in odd
        ]
    )
    assert changed == [1] * 500
    recv = await node.batch([{"op": "receiveMessage", "args": {"qname": "many"}} for _ in odd])
    assert [r["id"] for r in recv] == odd and {r["rc"] for r in recv} == {2}
    deleted = await node.batch(
        [{"op": "deleteMessage", "args": {"qname": "many", "id": i}} for i in odd]
    )
    assert deleted == [1] * 500
    js = await node.call("getQueueAttributes", qname="many")
    py = await queues.get_queue_attributes("many")
    assert (js["totalsent"], js["totalrecv"], js["msgs"]) == (1000, 1500, 0)
    assert (py.totalsent, py.totalrecv, py.msgs) == (1000, 1500, 0)


async def test_cli_reads_and_writes_rsmq_queues(
    node: NodeRsmq, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await node.call("createQueue", qname="cliq")
    js_id = await node.call("sendMessage", qname="cliq", message="from node ✓")

    def wsmq(*args: str) -> Any:
        # main() runs its own event loop: call it from a worker thread.
        assert main([*args, "--redis-url", redis_url, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    got = await asyncio.to_thread(wsmq, "receive", "cliq", "--delete")
    assert [(m["id"], m["message"]) for m in got["messages"]] == [(js_id, "from node ✓")]
    sent = await asyncio.to_thread(wsmq, "send", "cliq", "from the cli ✓")
    js = await node.call("popMessage", qname="cliq")
    assert (js["id"], js["message"]) == (sent["id"], "from the cli ✓")


_SNAKE = {
    "createQueue": "create_queue",
    "getQueueAttributes": "get_queue_attributes",
    "setQueueAttributes": "set_queue_attributes",
    "receiveMessage": "receive_message",
    "popMessage": "pop_message",
    "deleteQueue": "delete_queue",
}


async def call_wsmq(queues: Queues, op: str, options: dict[str, Any]) -> Any:
    """The wsmq call matching RSMQ's ``op(options)``."""
    kw = dict(options)
    qname = kw.pop("qname", "")
    if op == "sendMessage":
        return await queues.send_message(qname, kw.pop("message", None), **kw)
    if op == "deleteMessage":
        return await queues.delete_message(qname, kw.get("id", ""))
    if op == "changeMessageVisibility":
        return await queues.change_message_visibility(qname, kw["id"], kw["vt"])
    return await getattr(queues, _SNAKE[op])(qname, **kw)


async def test_error_names_and_messages_match_rsmq(node: NodeRsmq, queues: Queues) -> None:
    await queues.create_queue("errs", maxsize=1024)
    ok_id = await queues.send_message("errs", "x")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("createQueue", {"qname": "bad name"}),
        ("createQueue", {"qname": "q" * 161}),
        ("createQueue", {"qname": "errs"}),
        ("createQueue", {"qname": "n", "vt": -20}),
        ("createQueue", {"qname": "n", "vt": 10_000_000}),
        ("createQueue", {"qname": "n", "vt": "not_a_number"}),
        ("createQueue", {"qname": "n", "delay": -1}),
        ("createQueue", {"qname": "n", "maxsize": 900}),
        ("createQueue", {"qname": "n", "maxsize": -2}),
        ("createQueue", {"qname": "n", "maxsize": 66000}),
        ("getQueueAttributes", {"qname": "nope"}),
        ("setQueueAttributes", {"qname": "nope"}),
        ("setQueueAttributes", {"qname": "nope", "vt": 5}),
        ("setQueueAttributes", {"qname": "errs", "maxsize": 50}),
        ("setQueueAttributes", {"qname": "errs", "vt": -5}),
        ("sendMessage", {"qname": "nope", "message": "x"}),
        ("sendMessage", {"qname": "", "message": "x"}),
        ("sendMessage", {"qname": "errs"}),
        ("sendMessage", {"qname": "errs", "message": 5}),
        ("sendMessage", {"qname": "errs", "message": "y" * 1025}),
        ("sendMessage", {"qname": "errs", "message": "x", "delay": 10**7}),
        ("receiveMessage", {"qname": "nope"}),
        ("receiveMessage", {"qname": "errs", "vt": -1}),
        ("popMessage", {"qname": "nope"}),
        ("deleteMessage", {"qname": "errs"}),
        ("deleteMessage", {"qname": "errs", "id": "short"}),
        ("changeMessageVisibility", {"qname": "nope", "id": ok_id, "vt": 1}),
        ("changeMessageVisibility", {"qname": "errs", "id": ok_id, "vt": 10**7}),
        ("deleteQueue", {"qname": "nope"}),
    ]
    answers = await node.batch([{"op": op, "args": args} for op, args in cases])
    for (op, args), js in zip(cases, answers, strict=True):
        assert isinstance(js, NodeError), f"rsmq {op}({args}) did not fail: {js!r}"
        with pytest.raises(QueueError) as exc:
            await call_wsmq(queues, op, args)
        assert (exc.value.name, str(exc.value)) == (js.name, js.message), f"{op}({args})"
    assert (await queues.get_queue_attributes("errs")).msgs == 1  # nothing was written


async def test_loose_numbers_are_parsed_like_rsmq(node: NodeRsmq, queues: Queues) -> None:
    """RSMQ parses numbers with JavaScript's parseInt: 1.9 -> 1, "7abc" -> 7."""
    loose: dict[str, Any] = {"vt": 1.9, "delay": "7abc", "maxsize": "2048.5"}
    await node.call("createQueue", qname="loose_js", **loose)
    await queues.create_queue("loose_py", **loose)
    js = await node.call("getQueueAttributes", qname="loose_js")
    py = await queues.get_queue_attributes("loose_py")
    assert (js["vt"], js["delay"], js["maxsize"]) == (py.vt, py.delay, py.maxsize) == (1, 7, 2048)


async def test_delivery_helpers_see_node_messages(node: NodeRsmq, queues: Queues) -> None:
    """What the gateway's fallback poll and timer use for publishers that do not notify."""
    await node.call("createQueue", qname="poll")
    await node.call("createQueue", qname="idle")
    now_id = await node.call("sendMessage", qname="poll", message="now")
    later_id = await node.call("sendMessage", qname="poll", message="later", delay=30)
    assert await queues.visible_counts(["poll", "idle"]) == {"poll": 1, "idle": 0}
    first = await queues.next_visible_at("poll")
    assert first is not None and first == pytest.approx(js_sent(now_id), abs=1)
    got = await queues.receive_message("poll", vt=60)
    assert got is not None and got.id == now_id
    assert await queues.visible_counts(["poll"]) == {"poll": 0}
    # Now the earliest score is the delayed message's: 30 s after its send.
    assert await queues.next_visible_at("poll") == pytest.approx(js_sent(later_id) + 30_000, abs=1)
    assert await queues.next_visible_at("idle") is None


async def test_wsmq_batch_send_is_plain_rsmq_for_node(node: NodeRsmq, queues: Queues) -> None:
    await queues.create_queue("batch", maxsize=1024)
    await node.call("subscribe", channel="rsmq:rt:batch")
    bodies = [f"b{i} ✓😀" for i in range(50)]
    ids = await queues.send_messages("batch", bodies)
    assert len(set(ids)) == 50
    # One notification for the batch, RSMQ's payload: the queue size.
    assert await node.call("nextMessages", count=1) == [
        {"channel": "rsmq:rt:batch", "message": "50"}
    ]
    # All or nothing: one message too long (in UTF-16 units, as RSMQ) stores none of them.
    with pytest.raises(QueueError) as exc:
        await queues.send_messages("batch", ["fine", "😀" * 513])
    assert exc.value.name == "messageTooLong"
    got = await node.batch(
        [{"op": "receiveMessage", "args": {"qname": "batch"}} for _ in range(51)]
    )
    assert [g["id"] for g in got[:50]] == ids and [g["message"] for g in got[:50]] == bodies
    assert got[50] == {}
    deleted = await node.batch(
        [{"op": "deleteMessage", "args": {"qname": "batch", "id": i}} for i in ids]
    )
    assert deleted == [1] * 50
    js = await node.call("getQueueAttributes", qname="batch")
    assert (js["msgs"], js["totalsent"], js["totalrecv"]) == (0, 50, 50)
