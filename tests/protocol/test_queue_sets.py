"""membership(): set-speed answers for long queue lists, the same answers as the list."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsmq.protocol import queue_sets
from wsmq.protocol.queue_sets import MAX_SETS, SCAN_BELOW, membership

names = st.text(alphabet="abcxyz0_-", min_size=1, max_size=4)


@given(st.lists(names, max_size=60), names)
def test_answers_like_the_tuple(allowed: list[str], probe: str) -> None:
    t = tuple(allowed)
    assert (probe in membership(t)) == (probe in t)
    for name in t:
        assert name in membership(t)


def test_long_tuples_get_one_cached_set_short_ones_none() -> None:
    short = tuple(f"s{i}" for i in range(SCAN_BELOW - 1))
    assert membership(short) is short
    long = tuple(f"q{i}" for i in range(10_000))
    first = membership(long)
    assert isinstance(first, frozenset) and membership(long) is first
    equal_copy = tuple(list(long))  # another object: its own entry, same answers
    assert membership(equal_copy) is not first and "q9999" in membership(equal_copy)


def test_other_collections_are_used_as_given() -> None:
    as_list = [f"q{i}" for i in range(100)]
    assert membership(as_list) is as_list  # mutable: never cached
    as_set = frozenset(as_list)
    assert membership(as_set) is as_set


def test_cache_is_bounded_and_keeps_recent_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_sets, "_sets", {})
    lists = [tuple(f"l{n}-{i}" for i in range(SCAN_BELOW)) for n in range(MAX_SETS + 10)]
    hot = lists[0]
    for t in lists:
        membership(t)
        membership(hot)  # used all along: never the least recent
    assert len(queue_sets._sets) == MAX_SETS
    assert id(hot) in queue_sets._sets and id(lists[1]) not in queue_sets._sets
