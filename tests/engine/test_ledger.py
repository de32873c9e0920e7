"""The per-queue ledger, alone (no Redis, no event loop): hypothesis drives it as the consumer does.

A stateful machine adds and removes subscriptions, receives batches within the measured room,
takes batches to write, finishes writes (whole or short), acks, and stops; after every step the
invariants hold: no id is held by two subscriptions, every received id is in exactly one place
(an outbox, held, a legacy write in progress, released, deleted, acked), windows and byte bounds
are respected, and the byte accounting matches the outboxes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wsmq.engine.ledger import MESSAGE_OVERHEAD, QueueLedger, Subscription, plan_round_robin
from wsmq.queue import Message


class Peer:
    """A subscriber whose window is ``cap`` minus what it holds unacked (v1) or ``cap`` (legacy)."""

    def __init__(self, ack_mode: bool, cap: int) -> None:
        self.ack_mode = ack_mode
        self.cap = cap
        self.sub: Subscription | None = None

    def window(self) -> int:
        held = self.sub.unacked if self.sub is not None and self.ack_mode else 0
        return self.cap - held

    async def deliver(self, msg: Message) -> bool:  # never awaited here: the ledger is sync
        raise AssertionError("the ledger never writes")


def message(n: int, size: int) -> Message:
    return Message(id=f"id{n}", message="x" * size, rc=1, fr=0, sent=0.0)


def cost(msgs: Sequence[Message]) -> int:
    return sum(len(m.message) + MESSAGE_OVERHEAD for m in msgs)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = QueueLedger()
        self.all_subs: list[Subscription] = []  # removed ones included (writes may outlive them)
        self.writing: dict[Subscription, list[Message]] = {}
        self.received: list[str] = []
        self.released: list[str] = []
        self.deleted: list[str] = []
        self.acked: list[str] = []
        self.next_id = 0
        self.room: int | None = None
        self.before: dict[Subscription, tuple[int, int, int]] = {}

    def _drain_refused(self) -> None:
        self.released.extend(self.ledger.to_release)
        self.ledger.to_release.clear()

    @rule(
        ack_mode=st.booleans(),
        cap=st.integers(0, 6),
        max_bytes=st.none() | st.integers(100, 2000),
    )
    def subscribe(self, ack_mode: bool, cap: int, max_bytes: int | None) -> None:
        peer = Peer(ack_mode, cap)
        sub = Subscription("q", peer, lambda: None, max_bytes)
        peer.sub = sub
        self.ledger.add(sub)
        self.all_subs.append(sub)

    @precondition(lambda self: self.ledger.subs)
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        # As DeliveryEngine.unsubscribe: closed, outbox released, then the held ids released.
        sub = data.draw(st.sampled_from(self.ledger.subs))
        sub.closed = True
        self.released.extend(self.ledger.remove(sub))
        self.released.extend(sub.take_held())

    @rule()
    def measure(self) -> None:
        self.room = self.ledger.room()
        self.before = {s: (len(s.outbox), s.outbox_bytes, s.free()) for s in self.ledger.subs}

    @precondition(lambda self: self.room is not None)
    @rule(sizes=st.lists(st.integers(0, 400), max_size=12))
    def receive(self, sizes: list[int]) -> None:
        # What the room measured, received in one round trip (subscriptions may have left since).
        room, before, self.room = self.room or 0, self.before, None
        msgs = []
        for size in sizes[:room]:
            msgs.append(message(self.next_id, size))
            self.next_id += 1
        self.received.extend(m.id for m in msgs)
        empty = {sub for sub in before if not sub.outbox}
        touched = self.ledger.hand_out(msgs)
        self._drain_refused()
        new = {m.id for m in msgs}
        gots = []
        for sub, (_, bytes0, free0) in before.items():
            got = sum(m.id in new for m in sub.outbox)
            gots.append((got, free0))
            assert got <= free0  # within its window (and its byte room)
            if sub.max_outbox_bytes is not None and bytes0 >= sub.max_outbox_bytes:
                assert got == 0
            assert (sub in touched) == (sub in empty and got > 0)
        # Round robin: a subscription that got less than its free window got no less than
        # any other minus one.
        for got_i, free_i in gots:
            if got_i < free_i:
                assert all(got_j <= got_i + 1 for got_j, _ in gots)

    @precondition(lambda self: any(s.outbox and s not in self.writing for s in self.all_subs))
    @rule(data=st.data(), limit=st.integers(1, 4), closing=st.booleans())
    def take_batch(self, data: st.DataObject, limit: int, closing: bool) -> None:
        sub = data.draw(
            st.sampled_from([s for s in self.all_subs if s.outbox and s not in self.writing])
        )
        batch = self.ledger.take_batch(sub, limit, closing)
        self._drain_refused()
        if batch:
            sub.delivering = len(batch)
            self.writing[sub] = batch

    @precondition(lambda self: self.writing)
    @rule(data=st.data())
    def finish_write(self, data: st.DataObject) -> None:
        sub = data.draw(st.sampled_from(list(self.writing)))
        batch = self.writing.pop(sub)
        written = data.draw(st.integers(0, len(batch)))
        sub.delivering = 0
        failed = self.ledger.written(sub, batch, written)
        if not sub.ack_mode:
            self.deleted.extend(m.id for m in batch[:written])
            assert list(failed) == [m.id for m in batch[written:]]
        self.released.extend(failed)
        if written < len(batch):
            assert sub.broken

    @precondition(lambda self: self.ledger.subs)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        sub = data.draw(st.sampled_from(self.ledger.subs))
        candidates = [*sub.held, "unknown", *self.received[-3:]]
        ids = data.draw(st.lists(st.sampled_from(candidates), max_size=5))
        held_before = set(sub.held)
        flags = self.ledger.ack(sub, ids)
        seen: set[str] = set()
        for msg_id, flag in zip(ids, flags, strict=True):
            assert flag == (msg_id in held_before and msg_id not in seen)
            if flag:
                self.acked.append(msg_id)
            seen.add(msg_id)

    @rule()
    def stop(self) -> None:
        # As DeliveryEngine.stop: the writers finish their write, then everything left is released.
        for sub, batch in self.writing.items():
            assert not self.ledger.written(sub, batch, len(batch))
            if not sub.ack_mode:
                self.deleted.extend(m.id for m in batch)
        self.writing.clear()
        leftovers = self.ledger.leftovers()
        for sub in self.ledger.subs:
            assert not sub.outbox and sub.outbox_bytes == 0 and sub.unacked == 0
        assert not self.ledger.unsettled and not self.ledger.owner
        settled = self.released + leftovers + self.deleted + self.acked
        assert Counter(settled) == Counter(self.received)
        self.ledger = QueueLedger()
        self.all_subs.clear()
        self.received, self.released, self.deleted, self.acked = [], [], [], []
        self.room, self.before = None, {}

    @invariant()
    def no_id_is_held_twice(self) -> None:
        held = Counter(i for s in self.all_subs for i in s.held)
        assert all(n == 1 for n in held.values())
        for msg_id, sub in self.ledger.owner.items():
            assert msg_id in sub.held
        for sub in self.ledger.subs:
            assert all(self.ledger.owner.get(i) is sub for i in sub.held)

    @invariant()
    def every_id_is_in_exactly_one_place(self) -> None:
        legacy_writing = [m.id for s, b in self.writing.items() if not s.ack_mode for m in b]
        places = Counter(
            [m.id for s in self.all_subs for m in s.outbox]
            + [i for s in self.all_subs for i in s.held]
            + legacy_writing
            + self.released
            + self.deleted
            + self.acked
        )
        assert places == Counter(self.received)
        in_flight = {m.id for s in self.all_subs for m in s.outbox}
        in_flight |= {m.id for b in self.writing.values() for m in b}
        assert set(self.ledger.unsettled) == in_flight

    @invariant()
    def windows_and_bytes_hold(self) -> None:
        for sub in self.ledger.subs:
            peer = sub.subscriber
            assert isinstance(peer, Peer)
            assert sub.outbox_bytes == cost(sub.outbox)
            if sub.closed or sub.broken:
                continue
            if peer.ack_mode:
                assert sub.unacked + len(sub.outbox) <= peer.cap
            else:
                assert len(sub.outbox) + sub.delivering <= peer.cap


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLedger = LedgerMachine.TestCase


@given(
    windows=st.lists(st.integers(-2, 6), max_size=6),
    count=st.integers(0, 40),
    start=st.integers(0, 10),
)
def test_round_robin_fills_windows_fairly(windows: list[int], count: int, start: int) -> None:
    plan, nxt = plan_round_robin(windows, count, start)
    got = Counter(plan)
    assert len(plan) == min(count, sum(max(0, w) for w in windows))
    for i, w in enumerate(windows):
        assert got[i] <= max(0, w)
    for i, w in enumerate(windows):
        if got[i] < w:  # not full: nobody got more than one more than it
            assert all(got[j] <= got[i] + 1 for j in range(len(windows)))
    assert 0 <= nxt < max(1, len(windows))


def test_a_message_back_after_its_vt_moves_to_its_new_holder() -> None:
    ledger = QueueLedger()
    a_peer, b_peer = Peer(True, 1), Peer(True, 1)
    a, b = Subscription("q", a_peer, lambda: None), Subscription("q", b_peer, lambda: None)
    a_peer.sub, b_peer.sub = a, b
    ledger.add(a)
    assert ledger.room() == 1
    ledger.hand_out([message(1, 3)])
    assert ledger.take_batch(a, 1, False)
    ledger.add(b)
    assert ledger.room() == 1  # a is full: only b has room
    ledger.hand_out([message(1, 3)])  # the same id again: a's vt expired
    assert ledger.take_batch(b, 1, False)
    assert a.held == () and b.held == ("id1",) and ledger.owner == {"id1": b}
    assert ledger.ack(a, ["id1"]) == [False] and ledger.ack(b, ["id1"]) == [True]
