"""Property tests: id format and ordering, and RSMQ's validation rules."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from wsmq.queue import InvalidFormat, InvalidValue, MissingParameter
from wsmq.queue import validation as v
from wsmq.queue.ids import ID_RE, make_id, random_suffix, sent_ms, to_base36
from wsmq.queue.scripts import SCRIPTS

# Redis TIME from 1973 to 2085 gives 10 base36 digits.
SECONDS = st.integers(min_value=110_000_000, max_value=3_600_000_000)
USECS = st.integers(min_value=0, max_value=999_999)
# No per-example deadline: the machine is shared and a slow example is not a failure here.
FAST = settings(deadline=None, max_examples=60)
QNAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


@FAST
@given(SECONDS, USECS)
def test_id_format(sec: int, usec: int) -> None:
    msg_id = make_id(sec, usec)
    assert ID_RE.match(msg_id)
    assert re.fullmatch(r"[a-zA-Z0-9:]{32}", msg_id)  # RSMQ's own id check accepts it
    assert sent_ms(msg_id) == (sec * 1_000_000 + usec) / 1000


@FAST
@given(SECONDS, USECS, st.integers(min_value=1, max_value=10**12))
def test_id_prefix_order_follows_time(sec: int, usec: int, later_by: int) -> None:
    t1 = sec * 1_000_000 + usec
    t2 = t1 + later_by  # still < 36**10: 10 base36 digits
    a, b = make_id(0, t1), make_id(0, t2)
    assert a[:10] <= b[:10]
    assert (a[:10] < b[:10]) == (t1 < t2)


def test_random_suffix_alphabet_and_spread() -> None:
    suffixes = {random_suffix() for _ in range(2000)}
    assert len(suffixes) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9]{22}", s) for s in suffixes)
    assert set("".join(suffixes)) == set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    )


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_lua_base36_matches_python(sync_redis: redis.Redis) -> None:
    """The id's time part is computed in Lua: check it against Python for many values."""
    prelude = SCRIPTS["send"].source.split("\n-- Send one message")[0]
    script = sync_redis.register_script(
        prelude + "\nlocal out = {} for i = 1, #ARGV do out[i] = wsmq_base36(tonumber(ARGV[i])) end"
        " return out"
    )

    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.tuples(SECONDS, USECS), min_size=1, max_size=50))
    def check(times: list[tuple[int, int]]) -> None:
        numbers = [s * 1_000_000 + u for s, u in times]
        assert script(args=numbers) == [to_base36(n) for n in numbers]

    check()


@FAST
@given(st.text(alphabet=QNAME_CHARS, min_size=1, max_size=160))
def test_valid_qnames_accepted(name: str) -> None:
    assert v.validate_qname(name) == name


@FAST
@given(st.text(min_size=1, max_size=200))
def test_invalid_qnames_rejected(name: str) -> None:
    if re.fullmatch(r"[a-zA-Z0-9_-]{1,160}", name):
        assert v.validate_qname(name) == name
    else:
        with pytest.raises(InvalidFormat, match=r"^Invalid qname format$"):
            v.validate_qname(name)


def test_qname_edge_cases() -> None:
    with pytest.raises(MissingParameter, match=r"^No qname supplied$"):
        v.validate_qname("")
    with pytest.raises(MissingParameter):
        v.validate_qname(None)
    with pytest.raises(InvalidFormat):
        v.validate_qname("a" * 161)
    with pytest.raises(InvalidFormat):
        v.validate_qname("abc\n")  # Python's `$` would accept this, JS's does not
    assert v.validate_qname("a" * 160) == "a" * 160


@FAST
@given(st.integers(min_value=0, max_value=9_999_999))
def test_vt_and_delay_in_range(value: int) -> None:
    assert v.validate_vt(value) == value
    assert v.validate_delay(str(value)) == value
    assert v.validate_vt(value + 0.9) == value  # parseInt truncates


@FAST
@given(st.integers().filter(lambda n: n < 0 or n > 9_999_999))
def test_vt_and_delay_out_of_range(value: int) -> None:
    with pytest.raises(InvalidValue, match=r"^vt must be between 0 and 9999999$"):
        v.validate_vt(value)
    with pytest.raises(InvalidValue, match=r"^delay must be between 0 and 9999999$") as err:
        v.validate_delay(str(value))
    assert err.value.name == "invalidValue"


@FAST
@given(st.one_of(st.integers(min_value=1024, max_value=65536), st.just(-1)))
def test_maxsize_accepted(value: int) -> None:
    assert v.validate_maxsize(value) == value


@FAST
@given(st.integers().filter(lambda n: n != -1 and not 1024 <= n <= 65536))
def test_maxsize_rejected(value: int) -> None:
    with pytest.raises(InvalidValue, match=r"^maxsize must be between 1024 and 65536$"):
        v.validate_maxsize(value)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("12abc", 12),
        ("  42", 42),
        ("+7", 7),
        ("-3x", -3),
        ("abc", None),
        ("", None),
        ("0x10", 0),
        (1.9, 1),
        (-0.5, 0),
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        (None, None),
        (1e21, 1),
        ([], None),
    ],
)
def test_js_parse_int(value: object, parsed: int | None) -> None:
    assert v.js_parse_int(value) == parsed


@pytest.mark.parametrize(
    ("text", "units"),
    [("", 0), ("abc", 3), ("é", 1), ("€", 1), ("😀", 2), ("a😀b", 4), ("\U0010ffff", 2)],
)
def test_utf16_length_is_js_string_length(text: str, units: int) -> None:
    assert v.utf16_length(text) == units
